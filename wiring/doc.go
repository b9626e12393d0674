// Package wiring assembles the catalog from its parts with google/wire: one provider set per
// file (database.go, kafka.go, observability.go, application.go, readmodel.go, rebuild.go,
// ops.go, console.go, relay.go, projector.go, and cli.go for the CLI's tools), the processes of
// the commands in processes.go, injectors in wire.go, generated code in wire_gen.go. It is the only package besides cmd that
// sees every layer.
package wiring
