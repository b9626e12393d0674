// Package httpport is the REST port of the catalog: it turns HTTP requests into application
// commands and queries and turns their results, and the domain's errors, into HTTP responses.
//
// It is the only place that knows HTTP status codes. The application and the domain report
// failures as sentinel errors; this package maps them to RFC 9457 problem documents so that
// every other port (gRPC, CLI) can map the same errors its own way.
//
// The public contract (docs/ARCHITECTURE.md, "Public contract") is written down in openapi.yaml, embedded in the
// binary and served at GET /openapi.yaml. Tests compare the document with the routes the
// router really registers, so the two cannot drift apart.
package httpport
