// Package bench holds the catalog's end-to-end performance benchmarks (`make bench`): the
// write API against a raw pgx baseline, the outbox relay draining a pre-filled outbox into the
// embedded and the real Kafka broker against raw producers, commit-to-Kafka latency under an
// open-loop write load, the projector and rebuild against raw bulk loads, commit-to-searchable,
// and the same on the embedded broker and search engine.
//
// Every benchmark runs a fixed workload independent of b.N (run them with -benchtime 1x),
// reports its figures with b.ReportMetric and prints a human-readable summary line with the
// target and PASS/MISS. Targets are reported, never asserted: a missed target does not fail
// the run. Benchmarks that need a server that is absent skip outside CI (see internal/testenv).
package bench
