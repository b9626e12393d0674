package grpcport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	grpcport "github.com/marketplace/catalog/ports/grpc"
)

// The application's service is what production wires in; keep it assignable.
var _ grpcport.OperationsService = (*ops.Service)(nil)

// fakeOps answers with what the test set and records what it was asked.
type fakeOps struct {
	mu        sync.Mutex
	status    ops.Status
	statusErr error
	gotTh     []ops.Thresholds
	progress  []ops.VerifyProgress
	report    ops.VerifyReport
	verifyErr error
	gotReq    []ops.VerifyRequest
}

func (f *fakeOps) Status(_ context.Context, th ops.Thresholds) (ops.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gotTh = append(f.gotTh, th)
	if err := th.Validate(); err != nil {
		return ops.Status{}, err
	}
	st := f.status
	st.Thresholds = th
	return st, f.statusErr
}

func (f *fakeOps) Verify(_ context.Context, req ops.VerifyRequest, progress func(ops.VerifyProgress)) (ops.VerifyReport, error) {
	f.mu.Lock()
	f.gotReq = append(f.gotReq, req)
	steps, rep, err := f.progress, f.report, f.verifyErr
	f.mu.Unlock()
	if err := req.Validate(); err != nil {
		return ops.VerifyReport{}, err
	}
	for _, p := range steps {
		progress(p)
	}
	return rep, err
}

type opsHarness struct {
	client operationsv1.OperationsClient
	logs   *syncBuffer
	mu     sync.Mutex
	calls  []string
}

// startOps serves a fake rebuild service plus the Operations service registered through
// Deps.Register, as the wiring does, over an in-memory connection.
func startOps(t *testing.T, svc grpcport.OperationsService) *opsHarness {
	t.Helper()
	h := &opsHarness{logs: &syncBuffer{}}
	operations, err := grpcport.NewOperations(svc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcport.NewServer(grpcport.Config{}, &fakeService{}, grpcport.Deps{
		Log: slog.New(slog.NewTextHandler(h.logs, nil)),
		Observe: func(method string, code codes.Code, _ time.Duration) {
			h.mu.Lock()
			h.calls = append(h.calls, method+" "+code.String())
			h.mu.Unlock()
		},
		Register: []func(grpc.ServiceRegistrar){operations.Register},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.client = operationsv1.NewOperationsClient(serveBufconn(t, srv))
	return h
}

// serveBufconn serves srv over an in-memory connection until the test ends and returns a
// client connection to it.
func serveBufconn(t *testing.T, srv *grpcport.Server) *grpc.ClientConn {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		<-served
	})
	return conn
}

func sampleStatus() ops.Status {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fin := now.Add(-time.Hour)
	return ops.Status{
		CheckedAt: now,
		Healthy:   false,
		Problems: []ops.Problem{
			{Severity: ops.SeverityError, Check: ops.CheckDLQ, Message: "dlq: 2 messages"},
			{Severity: ops.SeverityWarning, Check: ops.CheckRebuildFailed, Message: "rebuild failed"},
		},
		Outbox: ops.OutboxSection{OutboxStats: ops.OutboxStats{Backlog: 3, OldestAge: 2 * time.Second, OldestCreatedAt: now.Add(-2 * time.Second),
			TableBytes: 8192, Lanes: []ops.OutboxLane{
				{Lane: 0, Backlog: 3, OldestAge: 2 * time.Second, RelayStarted: true, RelayedTransactionID: "777", RelayedOffset: 12, RelayedAt: now},
				{Lane: 1},
			}}},
		Projector: ops.ProjectorSection{GroupLag: ops.GroupLag{Group: "g", Topic: "product.events", State: "Stable", Members: 2, Lag: 4,
			Records: 100, Committed: true, Partitions: []ops.PartitionLag{{Partition: 0, Start: 0, End: 60, Committed: 56, Lag: 4, StalledFor: 45 * time.Second},
				{Partition: 1, Start: 10, End: 40, Committed: -1, Lag: 0}}}},
		ReadModel: ops.ReadModelSection{Alias: "ps", AliasExists: true, Index: "ps_v1_x", IndexKnown: true, IndexMappingVersion: 1,
			CodeMappingVersion: 2, LiveDocuments: 90, Tombstones: 5, Indices: 2},
		Products:     ops.ProductsSection{ProductCounts: ops.ProductCounts{Live: 91, Total: 96}},
		Counts:       ops.CountComparison{Compared: true, Drift: 1, Allowed: 10},
		DLQ:          ops.DLQSection{Topic: "dlq.product.events", DLQCounts: ops.DLQCounts{Depth: 5, Handled: 3, Unhandled: 2}},
		Rebuild:      ops.RebuildSection{Last: &readmodel.Snapshot{ID: "r1", Phase: readmodel.PhaseFailed, StartedAt: now.Add(-2 * time.Hour), FinishedAt: &fin, Error: "boom", ToIndex: "ps_v2_y"}},
		Transactions: ops.TransactionsSection{Long: []ops.LongTransaction{{PID: 42, Database: "catalog", User: "app", State: "idle in transaction", Started: now.Add(-10 * time.Minute), QueryStarted: now.Add(-9 * time.Minute), BackendType: "client backend", Age: 10 * time.Minute, HoldsBackOutbox: true}}},
	}
}

func TestGetStatusMapsTheStatus(t *testing.T) {
	f := &fakeOps{status: sampleStatus()}
	h := startOps(t, f)
	resp, err := h.client.GetStatus(ctxT(t), &operationsv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHealthy() || len(resp.GetProblems()) != 2 || resp.GetProblems()[0].GetSeverity() != operationsv1.Severity_SEVERITY_ERROR ||
		resp.GetProblems()[0].GetCheck() != "dlq_unhandled" || resp.GetProblems()[1].GetSeverity() != operationsv1.Severity_SEVERITY_WARNING {
		t.Errorf("verdict: %v %v", resp.GetHealthy(), resp.GetProblems())
	}
	o := resp.GetOutbox()
	if o.GetBacklog() != 3 || o.GetOldestAge().AsDuration() != 2*time.Second || o.GetTableBytes() != 8192 || len(o.GetLanes()) != 2 ||
		o.GetLanes()[0].GetRelayedTransactionId() != "777" || o.GetLanes()[0].GetRelayedOffset() != 12 || o.GetLanes()[1].GetOldestAge() != nil ||
		o.GetLanes()[1].GetRelayedAt() != nil || o.GetReadError() != "" {
		t.Errorf("outbox: %v", o)
	}
	p := resp.GetProjector()
	if p.GetTotalLag() != 4 || p.GetMembers() != 2 || p.GetState() != "Stable" || len(p.GetPartitions()) != 2 ||
		p.GetPartitions()[1].GetCommittedOffset() != -1 || p.GetPartitions()[0].GetLag() != 4 || !p.GetHasCommittedOffsets() ||
		p.GetPartitions()[0].GetStalledFor().AsDuration() != 45*time.Second || p.GetPartitions()[1].GetStalledFor() != nil {
		t.Errorf("projector: %v", p)
	}
	rm := resp.GetReadModel()
	if rm.GetIndex() != "ps_v1_x" || rm.GetIndexMappingVersion() != 1 || rm.GetCodeMappingVersion() != 2 || rm.GetLiveDocuments() != 90 ||
		!rm.GetCountCompared() || rm.GetCountDrift() != 1 || rm.GetAllowedCountDrift() != 10 {
		t.Errorf("read model: %v", rm)
	}
	if d := resp.GetDlq(); resp.GetProducts().GetLive() != 91 || d.GetReadError() != "" || d.GetTopic() != "dlq.product.events" ||
		d.GetDepth() != 5 || d.GetHandled() != 3 || d.GetUnhandled() != 2 {
		t.Errorf("products %v dlq %v", resp.GetProducts(), resp.GetDlq())
	}
	lr := resp.GetLastRebuild()
	if !lr.GetFound() || lr.GetPhase() != "failed" || lr.GetError() != "boom" || lr.GetFinishedAt() == nil || lr.GetToIndex() != "ps_v2_y" {
		t.Errorf("last rebuild: %v", lr)
	}
	tx := resp.GetTransactions().GetLong()
	if len(tx) != 1 || tx[0].GetPid() != 42 || !tx[0].GetHoldsBackOutbox() || tx[0].GetAge().AsDuration() != 10*time.Minute ||
		tx[0].GetBackendType() != "client backend" || tx[0].GetQueryStartedAt().AsTime().IsZero() {
		t.Errorf("transactions: %v", tx)
	}
	th := resp.GetThresholds()
	if th.GetMaxOutboxAge().AsDuration() != time.Minute || th.GetMaxLag() != 10_000 || th.GetMaxCountDriftRatio() != 0.001 ||
		th.GetMaxCountDriftDocs() != 10 || th.GetMaxTxAge().AsDuration() != 5*time.Minute || th.GetMaxStall().AsDuration() != 30*time.Second {
		t.Errorf("default thresholds: %v", th)
	}
}

// Unset thresholds take the defaults; set ones, zero included, are passed as they are.
func TestGetStatusThresholds(t *testing.T) {
	f := &fakeOps{status: sampleStatus()}
	h := startOps(t, f)
	zero, ratio := int64(0), 0.05
	if _, err := h.client.GetStatus(ctxT(t), &operationsv1.GetStatusRequest{MaxLag: &zero, MaxCountDriftRatio: &ratio, MaxCountDriftDocs: &zero,
		MaxOutboxAge: durationpb.New(5 * time.Second), MaxStall: durationpb.New(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	want := ops.Thresholds{MaxOutboxAge: 5 * time.Second, MaxLag: 0, MaxCountDriftRatio: 0.05, MaxCountDriftDocs: 0, MaxTxAge: ops.DefaultMaxTxAge,
		MaxStall: 3 * time.Second}
	if got := f.gotTh[0]; got != want {
		t.Errorf("thresholds %+v, want %+v", got, want)
	}
	neg := int64(-1)
	for _, req := range []*operationsv1.GetStatusRequest{
		{MaxLag: &neg},
		{MaxTxAge: durationpb.New(-time.Second)},
		{MaxStall: durationpb.New(-time.Second)},
		{MaxOutboxAge: &durationpb.Duration{Seconds: 1, Nanos: -5}}, // malformed
	} {
		_, err := h.client.GetStatus(ctxT(t), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want INVALID_ARGUMENT", req, err)
		}
	}
}

func TestGetStatusUnexpectedErrorIsInternal(t *testing.T) {
	h := startOps(t, &fakeOps{statusErr: errors.New("secret host db.internal:5432 refused")})
	_, err := h.client.GetStatus(ctxT(t), &operationsv1.GetStatusRequest{})
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "db.internal") {
		t.Fatalf("err = %v, want a generic INTERNAL", err)
	}
	if !strings.Contains(h.logs.String(), "db.internal") {
		t.Errorf("the cause is not in the server log:\n%s", h.logs.String())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 1 || h.calls[0] != "/catalog.operations.v1.Operations/GetStatus Internal" {
		t.Errorf("observed %v", h.calls)
	}
}

func TestVerifyStreamsProgressThenTheReport(t *testing.T) {
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fakeOps{
		progress: []ops.VerifyProgress{
			{Phase: ops.PhaseScan, Products: 10, Documents: 9, ProductsTotal: 20, Candidates: 1, Elapsed: time.Second},
			{Phase: ops.PhaseSettle, Products: 20, Documents: 19, ProductsTotal: 20, Candidates: 2, Elapsed: 2 * time.Second},
			{Phase: ops.PhaseRecheck, Products: 20, Documents: 19, ProductsTotal: 20, Candidates: 2, Elapsed: 5 * time.Second},
		},
		report: ops.VerifyReport{Alias: "ps", Index: "ps_v1_x", StartedAt: started, Duration: 5 * time.Second, Settle: 3 * time.Second,
			Products: 20, Documents: 19, Candidates: 2, Categories: []ops.CategoryReport{
				{Category: ops.CategoryMissing, Count: 1, Samples: []ops.Difference{{ID: "a", Category: ops.CategoryMissing, InDatabase: true, DatabaseVersion: 3}}},
				{Category: ops.CategoryStale},
				{Category: ops.CategoryPhantom},
				{Category: ops.CategoryResurrected, Count: 1, Samples: []ops.Difference{{ID: "b", Category: ops.CategoryResurrected, InDatabase: true,
					DatabaseVersion: 4, DatabaseDeleted: true, InIndex: true, IndexVersion: 3}}},
				{Category: ops.CategoryAhead},
			}},
	}
	h := startOps(t, f)
	stream, err := h.client.Verify(ctxT(t), &operationsv1.VerifyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	var rep *operationsv1.VerifyReport
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev := msg.GetEvent().(type) {
		case *operationsv1.VerifyResponse_Progress:
			if rep != nil {
				t.Fatal("progress after the report")
			}
			phases = append(phases, ev.Progress.GetPhase().String())
		case *operationsv1.VerifyResponse_Report:
			rep = ev.Report
		}
	}
	if fmt.Sprint(phases) != "[VERIFY_PHASE_SCAN VERIFY_PHASE_SETTLE VERIFY_PHASE_RECHECK]" {
		t.Errorf("phases %v", phases)
	}
	if rep == nil || rep.GetConsistent() || rep.GetProducts() != 20 || rep.GetIndex() != "ps_v1_x" || len(rep.GetCategories()) != 5 ||
		rep.GetSettle().AsDuration() != 3*time.Second || !rep.GetStartedAt().AsTime().Equal(started) {
		t.Fatalf("report %v", rep)
	}
	res := rep.GetCategories()[3]
	if res.GetCategory() != operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_RESURRECTED || res.GetCount() != 1 ||
		res.GetSamples()[0].GetId() != "b" || !res.GetSamples()[0].GetDatabaseDeleted() || res.GetSamples()[0].GetIndexVersion() != 3 {
		t.Errorf("resurrected: %v", res)
	}
	if got := f.gotReq[0]; got != ops.DefaultVerifyRequest() {
		t.Errorf("request %+v, want the defaults", got)
	}

	samples := int32(0)
	stream, err = h.client.Verify(ctxT(t), &operationsv1.VerifyRequest{Settle: durationpb.New(0), Samples: &samples})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	if got := f.gotReq[1]; got != (ops.VerifyRequest{}) {
		t.Errorf("explicit zero settle and samples: %+v", got)
	}
}

func verifyErr(t *testing.T, h *opsHarness, req *operationsv1.VerifyRequest) error {
	t.Helper()
	stream, err := h.client.Verify(ctxT(t), req)
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func reasonOf(err error) (domain, reason string) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetDomain(), info.GetReason()
		}
	}
	return "", ""
}

func TestVerifyErrors(t *testing.T) {
	cases := []struct {
		name           string
		err            error
		req            *operationsv1.VerifyRequest
		code           codes.Code
		domain, reason string
	}{
		{"no alias", fmt.Errorf("verify: %w", rebuild.ErrNoAlias), &operationsv1.VerifyRequest{}, codes.FailedPrecondition, grpcport.ErrorDomain, grpcport.ReasonNoAlias},
		{"already running", fmt.Errorf("verify: %w", ops.ErrVerifyRunning), &operationsv1.VerifyRequest{}, codes.FailedPrecondition,
			grpcport.OperationsErrorDomain, grpcport.ReasonVerifyRunning},
		{"settle too long", nil, &operationsv1.VerifyRequest{Settle: durationpb.New(time.Hour)}, codes.InvalidArgument, "", ""},
		{"malformed settle", nil, &operationsv1.VerifyRequest{Settle: &durationpb.Duration{Seconds: -1, Nanos: 5}}, codes.InvalidArgument, "", ""},
		{"unexpected", errors.New("search cluster exploded"), &operationsv1.VerifyRequest{}, codes.Internal, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startOps(t, &fakeOps{verifyErr: tc.err})
			err := verifyErr(t, h, tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			if domain, reason := reasonOf(err); domain != tc.domain || reason != tc.reason {
				t.Errorf("error info %q/%q, want %q/%q", domain, reason, tc.domain, tc.reason)
			}
		})
	}
}

func TestNewOperationsNeedsAService(t *testing.T) {
	if _, err := grpcport.NewOperations(nil); err == nil {
		t.Fatal("nil service accepted")
	}
}
