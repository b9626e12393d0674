// Package grpcport is the gRPC admin port of the catalog: the ProjectionAdmin service that
// rebuilds the search read model and manages its indices (docs/ARCHITECTURE.md, "Rebuild", "Public contract"), plus the
// standard health and reflection services so that grpcurl and load balancers work without a
// copy of the .proto files.
//
// It is the only place that knows gRPC status codes. The application reports failures as
// sentinel errors; this package maps them to codes (and google.rpc.ErrorInfo reasons that
// clients can branch on) in one function, mapError, so a handler cannot leak an unmapped
// error as UNKNOWN or a cause the client should not see.
package grpcport
