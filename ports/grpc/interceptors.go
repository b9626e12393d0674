package grpcport

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The port's interceptor does five things for every call, in this order from the inside:
// recover a panic as INTERNAL, map the application's error to a status (mapError), refuse a
// call without the admin token (before any of the above runs), log one line, and report to
// Deps.Observe. They are one interceptor rather than a chain so that the
// log line carries the cause of an INTERNAL error, which the client never sees.

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	var resp any
	err := s.authorize(ctx, info.FullMethod)
	if err == nil {
		err = s.guard(ctx, info.FullMethod, func() (err error) {
			resp, err = handler(ctx, req)
			return err
		})
	}
	s.finish(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := s.authorize(ss.Context(), info.FullMethod)
	if err == nil {
		err = s.guard(ss.Context(), info.FullMethod, func() error { return handler(srv, ss) })
	}
	s.finish(ss.Context(), info.FullMethod, start, err)
	return err
}

// guard runs a handler, turns a panic into INTERNAL (one bad request must not take down the
// process that may be running a rebuild) and maps the returned error, logging the cause of
// anything unexpected.
func (s *Server) guard(ctx context.Context, method string, call func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "grpc handler panicked", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, internalMessage)
		}
	}()
	cause := call()
	mapped, internal := mapError(cause)
	if internal {
		s.log.ErrorContext(ctx, "grpc call failed", "method", method, "err", cause)
	}
	return mapped
}

// finish writes the access log line and reports the call to the metrics hook. Health checks
// and reflection are polled constantly by balancers and tools, so their successes log at
// debug level only.
func (s *Server) finish(ctx context.Context, method string, start time.Time, err error) {
	d := time.Since(start)
	code := status.Code(err)
	if s.observe != nil {
		s.observe(method, code, d)
	}
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	case codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied:
		level = slog.LevelWarn
	case codes.OK:
		if strings.HasPrefix(method, "/grpc.health.") || strings.HasPrefix(method, "/grpc.reflection.") {
			level = slog.LevelDebug
		}
	}
	attrs := []any{"method", method, "code", code.String(), "duration", d}
	if p, ok := peer.FromContext(ctx); ok && code == codes.Unauthenticated {
		// Who knocked without the token: worth a look when it repeats.
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if err != nil && code != codes.Internal {
		attrs = append(attrs, "detail", status.Convert(err).Message())
	}
	s.log.Log(ctx, level, "grpc call", attrs...)
}
