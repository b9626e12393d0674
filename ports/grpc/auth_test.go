package grpcport_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/ports/adminauth"
	grpcport "github.com/marketplace/catalog/ports/grpc"
)

const testToken = "admin-token-for-tests-0123456789"

// countingService answers every use case at once and counts the calls that reached it.
type countingService struct{ calls atomic.Int64 }

func (c *countingService) Start(context.Context, readmodel.Source) (readmodel.Snapshot, error) {
	c.calls.Add(1)
	return readmodel.Snapshot{}, readmodel.ErrAlreadyRunning
}
func (c *countingService) Get(context.Context, string) (readmodel.Snapshot, error) {
	c.calls.Add(1)
	return readmodel.Snapshot{}, readmodel.ErrNotFound
}
func (c *countingService) Cancel(context.Context, string) (readmodel.Snapshot, error) {
	c.calls.Add(1)
	return readmodel.Snapshot{}, readmodel.ErrNotFound
}
func (c *countingService) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	c.calls.Add(1)
	return nil, nil
}
func (c *countingService) RollbackAlias(context.Context) (rebuild.Rollback, error) {
	c.calls.Add(1)
	return rebuild.Rollback{}, rebuild.ErrNoAlias
}
func (c *countingService) RunnerLost(readmodel.Snapshot) bool { return false }
func (c *countingService) PruneIndices(context.Context, int) ([]string, error) {
	c.calls.Add(1)
	return nil, nil
}
func (c *countingService) Status(context.Context, ops.Thresholds) (ops.Status, error) {
	c.calls.Add(1)
	return ops.Status{}, nil
}
func (c *countingService) Verify(context.Context, ops.VerifyRequest, func(ops.VerifyProgress)) (ops.VerifyReport, error) {
	c.calls.Add(1)
	return ops.VerifyReport{}, nil
}

// startWithToken serves both admin services with the admin token required.
func startWithToken(t *testing.T) (*grpc.ClientConn, *countingService, *syncBuffer) {
	t.Helper()
	svc, logs := &countingService{}, &syncBuffer{}
	v, err := adminauth.NewVerifier(testToken)
	if err != nil {
		t.Fatal(err)
	}
	operations, err := grpcport.NewOperations(svc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcport.NewServer(grpcport.Config{WatchPollInterval: 5 * time.Millisecond}, svc, grpcport.Deps{
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Register: []func(grpc.ServiceRegistrar){operations.Register},
		Auth:     v,
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveBufconn(t, srv), svc, logs
}

// callEvery calls every method of both admin services (unary and streaming alike, with empty
// requests) and returns each one's status code.
func callEvery(t *testing.T, conn *grpc.ClientConn, md metadata.MD) map[string]codes.Code {
	t.Helper()
	out := map[string]codes.Code{}
	for _, sd := range []grpc.ServiceDesc{projectionv1.ProjectionAdmin_ServiceDesc, operationsv1.Operations_ServiceDesc} {
		for _, m := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + m.MethodName
			ctx := metadata.NewOutgoingContext(ctxT(t), md)
			out[full] = status.Code(conn.Invoke(ctx, full, &emptypb.Empty{}, &emptypb.Empty{}))
		}
		for _, s := range sd.Streams {
			full := "/" + sd.ServiceName + "/" + s.StreamName
			ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctxT(t), md), 2*time.Second)
			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: s.ServerStreams, ClientStreams: s.ClientStreams}, full)
			if err == nil {
				if err = stream.SendMsg(&emptypb.Empty{}); err == nil {
					_ = stream.CloseSend()
					err = stream.RecvMsg(&emptypb.Empty{})
				}
			}
			cancel()
			out[full] = status.Code(err)
		}
	}
	if len(out) < 9 {
		t.Fatalf("only %d admin methods found: %v", len(out), out)
	}
	return out
}

// TestEveryAdminCallNeedsTheToken: with ADMIN_TOKEN set, every method of ProjectionAdmin and
// Operations (including any added later: the list comes from the service descriptors) is
// refused UNAUTHENTICATED without the token or with a wrong one, before its handler runs,
// with one message that says nothing about the token; with it, the call reaches the handler.
// Health and reflection stay open.
func TestEveryAdminCallNeedsTheToken(t *testing.T) {
	conn, svc, logs := startWithToken(t)
	for name, md := range map[string]metadata.MD{
		"no token":      nil,
		"wrong token":   metadata.Pairs("authorization", "Bearer wrong-"+testToken),
		"token prefix":  metadata.Pairs("authorization", "Bearer "+testToken[:10]),
		"not bearer":    metadata.Pairs("authorization", "Basic "+testToken),
		"bare token":    metadata.Pairs("authorization", testToken),
		"two tokens":    metadata.Pairs("authorization", "Bearer "+testToken, "authorization", "Bearer x"),
		"other header":  metadata.Pairs("x-admin-token", testToken),
		"empty bearer":  metadata.Pairs("authorization", "Bearer "),
		"token in path": metadata.Pairs("authorization", "Bearer", "token", testToken),
	} {
		for method, code := range callEvery(t, conn, md) {
			if code != codes.Unauthenticated {
				t.Errorf("%s, %s: %s, want Unauthenticated", name, method, code)
			}
		}
	}
	if n := svc.calls.Load(); n != 0 {
		t.Fatalf("%d refused calls reached the use cases", n)
	}
	err := conn.Invoke(metadata.NewOutgoingContext(ctxT(t), metadata.Pairs("authorization", "Bearer wrong")),
		"/catalog.projection.v1.ProjectionAdmin/ListIndices", &emptypb.Empty{}, &emptypb.Empty{})
	if st := status.Convert(err); st.Message() != adminauth.ErrUnauthenticated.Error() || len(st.Details()) != 0 {
		t.Errorf("refusal %q %v: want the one generic message", st.Message(), st.Details())
	}

	for _, md := range []metadata.MD{metadata.Pairs("authorization", "Bearer "+testToken), metadata.Pairs("authorization", "bearer "+testToken)} {
		for method, code := range callEvery(t, conn, md) {
			if code == codes.Unauthenticated || code == codes.Unimplemented {
				t.Errorf("with the token, %s: %s", method, code)
			}
		}
	}
	if svc.calls.Load() == 0 {
		t.Fatal("no call with the token reached the use cases")
	}

	if resp, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxT(t))
	if err == nil {
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Errorf("reflection without a token: %v", err)
	}
	if l := logs.String(); strings.Contains(l, testToken) || !strings.Contains(l, "code=Unauthenticated") || !strings.Contains(l, "level=WARN") {
		t.Errorf("logs must show refused calls at WARN, never the token:\n%s", l)
	}
}

func TestVerifierComparesTheWholeToken(t *testing.T) {
	if _, err := adminauth.NewVerifier(""); err == nil {
		t.Fatal("an empty token accepted")
	}
	v, err := adminauth.NewVerifier(testToken)
	if err != nil {
		t.Fatal(err)
	}
	for value, ok := range map[string]bool{
		"Bearer " + testToken: true, "BEARER " + testToken: true, "  Bearer  " + testToken + " ": true,
		"Bearer " + testToken + "x": false, "Bearer " + testToken[1:]: false, testToken: false, "": false, "Bearer": false,
	} {
		if got := v.CheckAuthorization(value) == nil; got != ok {
			t.Errorf("CheckAuthorization(%q) = %v, want %v", value, got, ok)
		}
	}
	if !v.Check(testToken) || v.Check(strings.ToUpper(testToken)) {
		t.Error("Check must match the token exactly")
	}
}
