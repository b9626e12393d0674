// Package ops holds the operator's use cases (the runbook's "operational checks"
// made executable), one file per use case, each a handler decorated with logging and
// metrics like the product commands:
//
//   - GetStatus (status.go): one look at the pipeline's health (outbox backlog, relay
//     positions, projector lag, alias and mapping, counts, DLQ depth, the last rebuild, long
//     transactions, the clusters) judged against thresholds;
//   - VerifyReadModel (verify.go): a full comparison of the system of record with the read
//     model behind the alias;
//   - the DLQ tooling: ListDLQ, ShowDLQ, ReplayDLQ (with its dry run), ResolveDLQ and
//     ListDLQAudit (dlq_*.go), every replay and resolution deliberate and audited.
//
// Service and DLQService group them for the ports that offer several (the gRPC admin port,
// the console, the CLI). Status and Verify run inside the service process and are asked for
// over the gRPC admin port: the embedded read model holds its data directory exclusively,
// so a CLI cannot open it itself.
//
// The ports the use cases drive are declared in ports.go, next to their only user;
// PostgreSQL, Kafka and the read model adapters implement them. The read model port is a
// subset of application/rebuild.Target, so every rebuild target (Elasticsearch, Bleve)
// serves both.
package ops
