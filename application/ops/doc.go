// Package ops holds the operator's use cases (the runbook's "operational checks"
// made executable): Status, one look at the pipeline's health (outbox backlog, relay
// positions, projector lag, alias and mapping, counts, DLQ depth, the last rebuild, long
// transactions) judged against thresholds, and Verify, a full comparison of the system of
// record with the read model behind the alias. The DLQ tooling (list, show, deliberate
// replay with an audit entry) lives here too (DLQService).
//
// Both run inside the service process and are asked for over the gRPC admin port: the
// embedded read model holds its data directory exclusively, so a CLI cannot open it itself.
//
// The ports the use cases drive are declared here, next to their only user; PostgreSQL,
// Kafka and the read model adapters implement them. The read model port is a subset of
// application/rebuild.Target, so every rebuild target (Elasticsearch, Bleve) serves both.
package ops
