package grpcport_test

import (
	"bytes"
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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	grpcport "github.com/marketplace/catalog/ports/grpc"
)

// The application's service is what production wires in; keep it assignable.
var _ grpcport.RebuildService = (*rebuild.Service)(nil)

// fakeService answers with whatever the test set; a nil func fails the test's call loudly.
type fakeService struct {
	mu       sync.Mutex
	start    func(readmodel.Source) (readmodel.Snapshot, error)
	get      func(id string) (readmodel.Snapshot, error)
	cancel   func(id string) (readmodel.Snapshot, error)
	list     func() ([]rebuild.IndexInfo, error)
	rollback func() (rebuild.Rollback, error)
	prune    func(keep int) ([]string, error)
	lost     func(readmodel.Snapshot) bool
	gets     []string
}

func (f *fakeService) Start(_ context.Context, src readmodel.Source) (readmodel.Snapshot, error) {
	return f.start(src)
}

func (f *fakeService) Get(_ context.Context, id string) (readmodel.Snapshot, error) {
	f.mu.Lock()
	f.gets = append(f.gets, id)
	f.mu.Unlock()
	return f.get(id)
}

func (f *fakeService) Cancel(_ context.Context, id string) (readmodel.Snapshot, error) {
	return f.cancel(id)
}

func (f *fakeService) ListIndices(context.Context) ([]rebuild.IndexInfo, error) { return f.list() }

func (f *fakeService) RollbackAlias(context.Context) (rebuild.Rollback, error) {
	return f.rollback()
}

func (f *fakeService) RunnerLost(s readmodel.Snapshot) bool { return f.lost != nil && f.lost(s) }

func (f *fakeService) PruneIndices(_ context.Context, keep int) ([]string, error) {
	return f.prune(keep)
}

type observation struct {
	method string
	code   codes.Code
}

type harness struct {
	conn    *grpc.ClientConn
	client  projectionv1.ProjectionAdminClient
	logs    *syncBuffer
	stop    context.CancelFunc
	served  chan error
	mu      sync.Mutex
	observe []observation
}

func (h *harness) observations() []observation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]observation(nil), h.observe...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start serves svc over an in-memory connection and returns a client for it.
func start(t *testing.T, svc grpcport.RebuildService, cfg grpcport.Config) *harness {
	t.Helper()
	h := &harness{logs: &syncBuffer{}, served: make(chan error, 1)}
	if cfg.WatchPollInterval == 0 {
		cfg.WatchPollInterval = 5 * time.Millisecond
	}
	srv, err := grpcport.NewServer(cfg, svc, grpcport.Deps{
		Log: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observe: func(method string, code codes.Code, _ time.Duration) {
			h.mu.Lock()
			h.observe = append(h.observe, observation{method, code})
			h.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.served <- srv.Serve(ctx, ln) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	h.conn, h.client = conn, projectionv1.NewProjectionAdminClient(conn)
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		select {
		case err := <-h.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return h
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func snapshot(id string, phase readmodel.Phase, done, total int64, at time.Duration) readmodel.Snapshot {
	starts := map[readmodel.Phase]time.Time{readmodel.PhasePending: t0}
	seq := []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill, readmodel.PhaseCatchUp,
		readmodel.PhaseValidate, readmodel.PhaseSwitch, readmodel.PhaseDrain}
	for i, p := range seq {
		if phase == readmodel.PhasePending {
			break
		}
		starts[p] = t0.Add(time.Duration(i+1) * time.Second)
		if p == phase {
			break
		}
	}
	s := readmodel.Snapshot{ID: id, Source: readmodel.SourceDatabase, Phase: phase, FromIndex: "ps_v1_old", ToIndex: "ps_v1_new",
		DocsDone: done, DocsTotal: total, StartedAt: t0, UpdatedAt: t0.Add(at), PhaseStarts: starts}
	if phase.Terminal() {
		fin := t0.Add(at)
		s.FinishedAt = &fin
		s.PhaseStarts[phase] = fin
	}
	return s
}

func TestStartRebuildMapsSourceAndRecord(t *testing.T) {
	var got []readmodel.Source
	svc := &fakeService{start: func(src readmodel.Source) (readmodel.Snapshot, error) {
		got = append(got, src)
		s := snapshot("r1", readmodel.PhaseFill, 40, 100, 13*time.Second)
		s.Source = src
		return s, nil
	}}
	h := start(t, svc, grpcport.Config{})
	for _, tc := range []struct {
		in   projectionv1.RebuildSource
		want readmodel.Source
	}{
		{projectionv1.RebuildSource_REBUILD_SOURCE_UNSPECIFIED, readmodel.SourceDatabase},
		{projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE, readmodel.SourceDatabase},
		{projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA, readmodel.SourceKafka},
	} {
		r, err := h.client.StartRebuild(ctxT(t), &projectionv1.StartRebuildRequest{Source: tc.in})
		if err != nil {
			t.Fatalf("StartRebuild(%v): %v", tc.in, err)
		}
		if got[len(got)-1] != tc.want {
			t.Errorf("source %v reached the service as %q, want %q", tc.in, got[len(got)-1], tc.want)
		}
		if r.GetId() != "r1" || r.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_FILL ||
			r.GetDocsDone() != 40 || r.GetDocsTotal() != 100 || r.GetFromIndex() != "ps_v1_old" || r.GetToIndex() != "ps_v1_new" {
			t.Errorf("record = %v", r)
		}
		if r.GetSource() == projectionv1.RebuildSource_REBUILD_SOURCE_UNSPECIFIED {
			t.Errorf("response source is UNSPECIFIED")
		}
		if !r.GetStartedAt().AsTime().Equal(t0) || !r.GetUpdatedAt().AsTime().Equal(t0.Add(13*time.Second)) || r.GetFinishedAt() != nil {
			t.Errorf("times = %v %v %v", r.GetStartedAt(), r.GetUpdatedAt(), r.GetFinishedAt())
		}
		// pending, create_index, capture_offsets, fill: each lasts until the next began,
		// the one in progress has no duration yet.
		pt := r.GetPhaseTimings()
		wantPhases := []projectionv1.RebuildPhase{
			projectionv1.RebuildPhase_REBUILD_PHASE_PENDING, projectionv1.RebuildPhase_REBUILD_PHASE_CREATE_INDEX,
			projectionv1.RebuildPhase_REBUILD_PHASE_CAPTURE_OFFSETS, projectionv1.RebuildPhase_REBUILD_PHASE_FILL,
		}
		if len(pt) != len(wantPhases) {
			t.Fatalf("phase timings = %v", pt)
		}
		for i, p := range wantPhases {
			if pt[i].GetPhase() != p {
				t.Errorf("timing %d phase = %v, want %v", i, pt[i].GetPhase(), p)
			}
		}
		if pt[0].GetDuration().AsDuration() != time.Second || pt[3].GetDuration() != nil {
			t.Errorf("durations = %v, %v", pt[0].GetDuration(), pt[3].GetDuration())
		}
	}
}

func TestStartRebuildUnknownSourceIsInvalidArgument(t *testing.T) {
	svc := &fakeService{start: func(readmodel.Source) (readmodel.Snapshot, error) {
		t.Error("service called for an invalid source")
		return readmodel.Snapshot{}, nil
	}}
	h := start(t, svc, grpcport.Config{})
	_, err := h.client.StartRebuild(ctxT(t), &projectionv1.StartRebuildRequest{Source: 42})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}

func errorInfo(t *testing.T, err error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func TestSecondRebuildIsFailedPreconditionWithReason(t *testing.T) {
	running := snapshot("r-running", readmodel.PhaseFill, 10, 100, 5*time.Second)
	svc := &fakeService{
		start: func(readmodel.Source) (readmodel.Snapshot, error) {
			return readmodel.Snapshot{}, fmt.Errorf("start rebuild: %w", readmodel.ErrAlreadyRunning)
		},
		get: func(string) (readmodel.Snapshot, error) { return running, nil },
	}
	h := start(t, svc, grpcport.Config{})
	_, err := h.client.StartRebuild(ctxT(t), &projectionv1.StartRebuildRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("code = %v (%v), want FailedPrecondition", status.Code(err), err)
	}
	info := errorInfo(t, err)
	if info == nil || info.GetReason() != grpcport.ReasonAlreadyRunning || info.GetDomain() != grpcport.ErrorDomain {
		t.Fatalf("ErrorInfo = %v", info)
	}
	if info.GetMetadata()["rebuild_id"] != "r-running" || info.GetMetadata()["phase"] != "fill" {
		t.Errorf("metadata = %v, want the running rebuild", info.GetMetadata())
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"invalid", fmt.Errorf("x: %w", readmodel.ErrInvalid), codes.InvalidArgument, ""},
		{"already running", fmt.Errorf("rollback: %w", readmodel.ErrAlreadyRunning), codes.FailedPrecondition, grpcport.ReasonAlreadyRunning},
		{"not found", fmt.Errorf("get: %w", readmodel.ErrNotFound), codes.NotFound, grpcport.ReasonNotFound},
		{"finished", fmt.Errorf("cancel: %w", readmodel.ErrFinished), codes.FailedPrecondition, grpcport.ReasonFinished},
		{"no previous index", fmt.Errorf("rollback: %w", rebuild.ErrNoPreviousIndex), codes.FailedPrecondition, grpcport.ReasonNoPreviousIndex},
		{"no alias", fmt.Errorf("rollback: %w", rebuild.ErrNoAlias), codes.FailedPrecondition, grpcport.ReasonNoAlias},
		{"validation", fmt.Errorf("v: %w", readmodel.ErrValidation), codes.FailedPrecondition, grpcport.ReasonValidationFailed},
		{"alias moved", fmt.Errorf("switch: %w", readmodel.ErrAliasMoved), codes.Aborted, grpcport.ReasonAliasMoved},
		{"lock lost", fmt.Errorf("rollback: %w", readmodel.ErrLockLost), codes.Aborted, grpcport.ReasonLockLost},
		{"rollback mapping outdated", fmt.Errorf("rollback: %w", rebuild.ErrRollbackMappingOutdated), codes.FailedPrecondition, grpcport.ReasonRollbackMappingOutdated},
		{"rollback position unknown", fmt.Errorf("rollback: %w", rebuild.ErrRollbackPositionUnknown), codes.FailedPrecondition, grpcport.ReasonRollbackPositionUnknown},
		{"rollback events not retained", fmt.Errorf("rollback: %w: %w", rebuild.ErrRollbackNotRetained, rebuild.ErrNotRetained), codes.FailedPrecondition, grpcport.ReasonRollbackNotRetained},
		{"canceled", fmt.Errorf("q: %w", context.Canceled), codes.Canceled, ""},
		{"deadline", fmt.Errorf("q: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ""},
		{"other", errors.New("dial tcp 10.0.0.7:5432: password=hunter2 refused"), codes.Internal, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fail := func() error { return tc.err }
			svc := &fakeService{
				start:    func(readmodel.Source) (readmodel.Snapshot, error) { return readmodel.Snapshot{}, fail() },
				get:      func(string) (readmodel.Snapshot, error) { return readmodel.Snapshot{}, fail() },
				cancel:   func(string) (readmodel.Snapshot, error) { return readmodel.Snapshot{}, fail() },
				list:     func() ([]rebuild.IndexInfo, error) { return nil, fail() },
				rollback: func() (rebuild.Rollback, error) { return rebuild.Rollback{}, fail() },
				prune:    func(int) ([]string, error) { return nil, fail() },
			}
			h := start(t, svc, grpcport.Config{})
			ctx := ctxT(t)
			calls := map[string]func() error{
				"StartRebuild": func() error {
					_, err := h.client.StartRebuild(ctx, &projectionv1.StartRebuildRequest{})
					return err
				},
				"GetRebuild": func() error {
					_, err := h.client.GetRebuild(ctx, &projectionv1.GetRebuildRequest{Id: "x"})
					return err
				},
				"WatchRebuild": func() error {
					st, err := h.client.WatchRebuild(ctx, &projectionv1.WatchRebuildRequest{Id: "x"})
					if err != nil {
						return err
					}
					_, err = st.Recv()
					return err
				},
				"CancelRebuild": func() error {
					_, err := h.client.CancelRebuild(ctx, &projectionv1.CancelRebuildRequest{Id: "x"})
					return err
				},
				"ListIndices": func() error {
					_, err := h.client.ListIndices(ctx, &projectionv1.ListIndicesRequest{})
					return err
				},
				"RollbackAlias": func() error {
					_, err := h.client.RollbackAlias(ctx, &projectionv1.RollbackAliasRequest{})
					return err
				},
				"PruneIndices": func() error {
					_, err := h.client.PruneIndices(ctx, &projectionv1.PruneIndicesRequest{Keep: 2})
					return err
				},
			}
			for name, call := range calls {
				err := call()
				if status.Code(err) != tc.code {
					t.Errorf("%s: code = %v (%v), want %v", name, status.Code(err), err, tc.code)
					continue
				}
				info := errorInfo(t, err)
				if tc.reason == "" && info != nil {
					t.Errorf("%s: unexpected ErrorInfo %v", name, info)
				}
				if tc.reason != "" && (info == nil || info.GetReason() != tc.reason || info.GetDomain() != grpcport.ErrorDomain) {
					t.Errorf("%s: ErrorInfo = %v, want reason %s", name, info, tc.reason)
				}
				if tc.code == codes.Internal && strings.Contains(status.Convert(err).Message(), "hunter2") {
					t.Errorf("%s: internal cause leaked to the client: %q", name, status.Convert(err).Message())
				}
			}
			if tc.code == codes.Internal && !strings.Contains(h.logs.String(), "hunter2") {
				t.Errorf("the cause of an internal error was not logged:\n%s", h.logs.String())
			}
		})
	}
}

// TestNotFoundCarriesNoErrorChain: an unknown id is NOT_FOUND with an ErrorInfo naming it,
// and the message says what was asked for, not which layers of the server it passed.
func TestNotFoundCarriesNoErrorChain(t *testing.T) {
	svc := &fakeService{
		get: func(id string) (readmodel.Snapshot, error) {
			return readmodel.Snapshot{}, fmt.Errorf("get rebuild %s: rebuild store: get %s: %w", id, id, readmodel.ErrNotFound)
		},
		cancel: func(id string) (readmodel.Snapshot, error) {
			return readmodel.Snapshot{}, fmt.Errorf("rebuild store: request cancel %s: %w", id, readmodel.ErrNotFound)
		},
	}
	h := start(t, svc, grpcport.Config{})
	_, getErr := h.client.GetRebuild(ctxT(t), &projectionv1.GetRebuildRequest{Id: "nope"})
	_, cancelErr := h.client.CancelRebuild(ctxT(t), &projectionv1.CancelRebuildRequest{Id: "nope"})
	_, newestErr := h.client.GetRebuild(ctxT(t), &projectionv1.GetRebuildRequest{})
	for _, c := range []struct {
		err     error
		message string
		id      string
	}{{getErr, `no rebuild has id "nope"`, "nope"}, {cancelErr, `no rebuild has id "nope"`, "nope"}, {newestErr, "no rebuild has run yet", ""}} {
		st := status.Convert(c.err)
		if st.Code() != codes.NotFound || st.Message() != c.message {
			t.Errorf("status = %v %q, want NotFound %q", st.Code(), st.Message(), c.message)
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info.GetReason() != grpcport.ReasonNotFound || info.GetMetadata()["rebuild_id"] != c.id {
			t.Errorf("ErrorInfo = %v, want reason %s with rebuild_id %q", info, grpcport.ReasonNotFound, c.id)
		}
	}
}

func TestGetRebuildEmptyIDMeansNewest(t *testing.T) {
	svc := &fakeService{get: func(id string) (readmodel.Snapshot, error) {
		if id != "" {
			return readmodel.Snapshot{}, readmodel.ErrNotFound
		}
		return snapshot("newest", readmodel.PhaseSucceeded, 100, 100, time.Minute), nil
	}}
	h := start(t, svc, grpcport.Config{})
	r, err := h.client.GetRebuild(ctxT(t), &projectionv1.GetRebuildRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetId() != "newest" || r.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED ||
		!r.GetFinishedAt().AsTime().Equal(t0.Add(time.Minute)) {
		t.Errorf("record = %v", r)
	}
	if _, err := h.client.GetRebuild(ctxT(t), &projectionv1.GetRebuildRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown id: %v, want NotFound", err)
	}
}

func TestCancelRebuild(t *testing.T) {
	var cancelled []string
	svc := &fakeService{cancel: func(id string) (readmodel.Snapshot, error) {
		cancelled = append(cancelled, id)
		return snapshot(id, readmodel.PhaseCatchUp, 5, 5, 9*time.Second), nil
	}}
	h := start(t, svc, grpcport.Config{})
	if _, err := h.client.CancelRebuild(ctxT(t), &projectionv1.CancelRebuildRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty id: %v, want InvalidArgument", err)
	}
	r, err := h.client.CancelRebuild(ctxT(t), &projectionv1.CancelRebuildRequest{Id: "r7"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetId() != "r7" || len(cancelled) != 1 || cancelled[0] != "r7" {
		t.Errorf("record = %v, cancelled = %v", r, cancelled)
	}
}

func TestListIndices(t *testing.T) {
	created := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	svc := &fakeService{list: func() ([]rebuild.IndexInfo, error) {
		return []rebuild.IndexInfo{
			{Name: "ps_v2_20260203_040506", MappingVersion: 2, Created: created, Live: 90, Tombstones: 10, Aliased: true},
			{Name: "ps_v1_20260101_000000", MappingVersion: 1, Created: created.AddDate(0, -1, 0), Live: 80},
		}, nil
	}}
	h := start(t, svc, grpcport.Config{})
	resp, err := h.client.ListIndices(ctxT(t), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ix := resp.GetIndices()
	if len(ix) != 2 {
		t.Fatalf("indices = %v", ix)
	}
	if ix[0].GetName() != "ps_v2_20260203_040506" || ix[0].GetMappingVersion() != 2 || ix[0].GetLiveDocs() != 90 ||
		ix[0].GetTombstones() != 10 || !ix[0].GetAliased() || !ix[0].GetCreated().AsTime().Equal(created) {
		t.Errorf("index 0 = %v", ix[0])
	}
	if ix[1].GetAliased() || ix[1].GetMappingVersion() != 1 {
		t.Errorf("index 1 = %v", ix[1])
	}
}

func TestRollbackAlias(t *testing.T) {
	svc := &fakeService{rollback: func() (rebuild.Rollback, error) {
		return rebuild.Rollback{From: "ps_v2", To: "ps_v1", Since: rebuild.Offsets{0: 7, 1: 9}, CaughtUp: 12, Drained: 3}, nil
	}}
	h := start(t, svc, grpcport.Config{})
	resp, err := h.client.RollbackAlias(ctxT(t), &projectionv1.RollbackAliasRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetFrom() != "ps_v2" || resp.GetTo() != "ps_v1" || resp.GetCaughtUp() != 12 || resp.GetDrained() != 3 ||
		len(resp.GetSince()) != 2 || resp.GetSince()[1] != 9 {
		t.Errorf("resp = %v", resp)
	}
}

func TestPruneIndices(t *testing.T) {
	var keeps []int
	svc := &fakeService{prune: func(keep int) ([]string, error) {
		keeps = append(keeps, keep)
		return []string{"ps_v1_a", "ps_v1_b"}, nil
	}}
	h := start(t, svc, grpcport.Config{})
	if _, err := h.client.PruneIndices(ctxT(t), &projectionv1.PruneIndicesRequest{Keep: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("keep -1: %v, want InvalidArgument", err)
	}
	resp, err := h.client.PruneIndices(ctxT(t), &projectionv1.PruneIndicesRequest{Keep: 0})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(resp.GetDeleted(), ",") != "ps_v1_a,ps_v1_b" || len(keeps) != 1 || keeps[0] != 0 {
		t.Errorf("deleted = %v, keeps = %v", resp.GetDeleted(), keeps)
	}
}

// script makes Get return the snapshots in order, then the last one for ever.
func script(snaps ...readmodel.Snapshot) func(string) (readmodel.Snapshot, error) {
	var mu sync.Mutex
	i := 0
	return func(string) (readmodel.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		s := snaps[min(i, len(snaps)-1)]
		i++
		return s, nil
	}
}

func TestWatchRebuildStreamsChangesAndEndsAtTerminalPhase(t *testing.T) {
	fill := snapshot("r1", readmodel.PhaseFill, 0, 1000, 3*time.Second)
	half := snapshot("r1", readmodel.PhaseFill, 500, 1000, 8*time.Second)
	half.Rate = 100 // the runner's recent rate: the record's figure is what every watcher shows
	catchUp := snapshot("r1", readmodel.PhaseCatchUp, 1000, 1000, 12*time.Second)
	catchUp.EventsDone, catchUp.EventsTotal, catchUp.Rate = 30, 90, 20
	svc := &fakeService{get: script(
		snapshot("r1", readmodel.PhasePending, 0, 0, 0),
		fill, fill, fill, // unchanged records are not sent again
		half,
		catchUp,
		snapshot("r1", readmodel.PhaseValidate, 1000, 1000, 15*time.Second),
		snapshot("r1", readmodel.PhaseSucceeded, 1000, 1000, 20*time.Second),
		snapshot("r1", readmodel.PhaseSucceeded, 1000, 1000, 99*time.Second), // never read
	)}
	h := start(t, svc, grpcport.Config{})
	stream, err := h.client.WatchRebuild(ctxT(t), &projectionv1.WatchRebuildRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*projectionv1.RebuildProgress
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d messages: %v", len(got), err)
		}
		got = append(got, p)
	}
	want := []projectionv1.RebuildPhase{
		projectionv1.RebuildPhase_REBUILD_PHASE_PENDING, projectionv1.RebuildPhase_REBUILD_PHASE_FILL,
		projectionv1.RebuildPhase_REBUILD_PHASE_FILL, projectionv1.RebuildPhase_REBUILD_PHASE_CATCH_UP,
		projectionv1.RebuildPhase_REBUILD_PHASE_VALIDATE, projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages (%v), want %d", len(got), got, len(want))
	}
	for i, p := range got {
		if p.GetPhase() != want[i] || p.GetRebuild().GetPhase() != want[i] {
			t.Errorf("message %d phase = %v, want %v", i, p.GetPhase(), want[i])
		}
	}
	mid := got[2]
	if mid.GetDocsDone() != 500 || mid.GetDocsTotal() != 1000 || mid.GetRateDocsPerSecond() != 100 {
		t.Errorf("progress = %v", mid)
	}
	if mid.GetEta().AsDuration() != 5*time.Second || !mid.GetEstimatedCompletion().AsTime().Equal(t0.Add(13*time.Second)) ||
		mid.GetRebuild().GetRateUnit() != "documents" || mid.GetRebuild().GetRatePerSecond() != 100 {
		t.Errorf("eta = %v ending %v, rate %v %s; want 5s ending at +13s, 100 documents/s", mid.GetEta().AsDuration(),
			mid.GetEstimatedCompletion().AsTime(), mid.GetRebuild().GetRatePerSecond(), mid.GetRebuild().GetRateUnit())
	}
	if cu := got[3]; cu.GetRateEventsPerSecond() != 20 || cu.GetRateDocsPerSecond() != 0 || cu.GetEventsDone() != 30 ||
		cu.GetEventsTotal() != 90 || cu.GetEta().AsDuration() != 3*time.Second {
		t.Errorf("catch-up progress = %v, want 30 of 90 events at 20/s, 3s left", cu)
	}
	if got[4].GetEta() != nil || got[0].GetRateDocsPerSecond() != 0 || got[1].GetEta() != nil {
		t.Errorf("eta outside the fill or without a rate, or rate before it: %v / %v / %v", got[4], got[0], got[1])
	}
	// The empty id resolved to the newest rebuild once; later reads follow that id.
	svc.mu.Lock()
	gets := svc.gets
	svc.mu.Unlock()
	if gets[0] != "" || gets[1] != "r1" {
		t.Errorf("Get ids = %v, want \"\" then r1", gets)
	}
}

// TestRebuildRunnerLiveness: records carry their runner and heartbeat, and the service's
// verdict on the runner; a watcher hears of a runner that stopped beating, but not of every
// heartbeat of a live one.
func TestRebuildRunnerLiveness(t *testing.T) {
	beat := func(at time.Duration, lost bool) readmodel.Snapshot {
		s := snapshot("r1", readmodel.PhaseFill, 10, 100, 3*time.Second)
		s.Owner, s.HeartbeatAt = "host-a/1/abc", t0.Add(at)
		if lost {
			s.Owner = "host-a/1/abc lost" // the fake's RunnerLost answers from the owner
		}
		return s
	}
	done := snapshot("r1", readmodel.PhaseFailed, 10, 100, 30*time.Second)
	svc := &fakeService{
		get:  script(beat(4*time.Second, false), beat(5*time.Second, false), beat(6*time.Second, false), beat(6*time.Second, true), done),
		lost: func(s readmodel.Snapshot) bool { return strings.HasSuffix(s.Owner, " lost") },
	}
	h := start(t, svc, grpcport.Config{})
	stream, err := h.client.WatchRebuild(ctxT(t), &projectionv1.WatchRebuildRequest{Id: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []*projectionv1.Rebuild
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.GetRebuild())
	}
	if len(got) != 3 {
		t.Fatalf("got %d messages, want 3 (first, runner lost, failed): %v", len(got), got)
	}
	if got[0].GetRunner() != "host-a/1/abc" || !got[0].GetHeartbeatAt().AsTime().Equal(t0.Add(4*time.Second)) || got[0].GetRunnerLost() {
		t.Errorf("first message %v", got[0])
	}
	if !got[1].GetRunnerLost() {
		t.Errorf("second message does not say the runner is lost: %v", got[1])
	}
}

func TestWatchRebuildNotFound(t *testing.T) {
	svc := &fakeService{get: func(string) (readmodel.Snapshot, error) { return readmodel.Snapshot{}, readmodel.ErrNotFound }}
	h := start(t, svc, grpcport.Config{})
	stream, err := h.client.WatchRebuild(ctxT(t), &projectionv1.WatchRebuildRequest{Id: "nope"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

func TestWatchRebuildRidesOutTransientReadErrors(t *testing.T) {
	var mu sync.Mutex
	n := 0
	svc := &fakeService{get: func(string) (readmodel.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch {
		case n == 1:
			return snapshot("r1", readmodel.PhaseFill, 1, 10, time.Second*4), nil
		case n < 5:
			return readmodel.Snapshot{}, errors.New("connection reset")
		}
		return snapshot("r1", readmodel.PhaseFailed, 1, 10, time.Second*5), nil
	}}
	h := start(t, svc, grpcport.Config{})
	stream, err := h.client.WatchRebuild(ctxT(t), &projectionv1.WatchRebuildRequest{Id: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	var last *projectionv1.RebuildProgress
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		last = p
	}
	if last.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_FAILED {
		t.Errorf("last phase = %v", last.GetPhase())
	}
}

func TestWatchEndsWithUnavailableOnShutdown(t *testing.T) {
	svc := &fakeService{get: func(string) (readmodel.Snapshot, error) {
		return snapshot("r1", readmodel.PhaseFill, 1, 10, time.Second*4), nil
	}}
	h := start(t, svc, grpcport.Config{ShutdownTimeout: 5 * time.Second})
	stream, err := h.client.WatchRebuild(ctxT(t), &projectionv1.WatchRebuildRequest{Id: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	h.stop()
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	select {
	case err := <-h.served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.served <- nil // for the cleanup
	case <-time.After(4 * time.Second):
		t.Fatal("an open watch held the graceful stop")
	}
	if time.Since(began) > 4*time.Second {
		t.Errorf("shutdown took %s", time.Since(began))
	}
}

func TestPanicBecomesInternalAndIsObserved(t *testing.T) {
	svc := &fakeService{list: func() ([]rebuild.IndexInfo, error) { panic("boom") }}
	h := start(t, svc, grpcport.Config{})
	_, err := h.client.ListIndices(ctxT(t), &projectionv1.ListIndicesRequest{})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want a generic Internal", err)
	}
	if !strings.Contains(h.logs.String(), "boom") {
		t.Errorf("the panic was not logged:\n%s", h.logs.String())
	}
	// The server survives it.
	svc.list = func() ([]rebuild.IndexInfo, error) { return nil, nil }
	if _, err := h.client.ListIndices(ctxT(t), &projectionv1.ListIndicesRequest{}); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	obs := h.observations()
	wantMethod := "/catalog.projection.v1.ProjectionAdmin/ListIndices"
	if len(obs) != 2 || obs[0] != (observation{wantMethod, codes.Internal}) || obs[1] != (observation{wantMethod, codes.OK}) {
		t.Errorf("observations = %v", obs)
	}
	if !strings.Contains(h.logs.String(), "method="+wantMethod) || !strings.Contains(h.logs.String(), "code=Internal") {
		t.Errorf("no access log line:\n%s", h.logs.String())
	}
}

func TestHealthServing(t *testing.T) {
	h := start(t, &fakeService{}, grpcport.Config{})
	hc := healthpb.NewHealthClient(h.conn)
	for _, svc := range []string{"", "catalog.projection.v1.ProjectionAdmin"} {
		resp, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, resp.GetStatus())
		}
	}
}

func TestReflectionListsServices(t *testing.T) {
	h := start(t, &fakeService{}, grpcport.Config{})
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		names[s.GetName()] = true
	}
	for _, want := range []string{"catalog.projection.v1.ProjectionAdmin", "grpc.health.v1.Health"} {
		if !names[want] {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	// grpcurl describes a method by resolving its file; that must work too.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "catalog.projection.v1.ProjectionAdmin"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("no file descriptor for the service: %v", resp)
	}
	_ = stream.CloseSend()
}

func TestNewServerRejectsBadInput(t *testing.T) {
	if _, err := grpcport.NewServer(grpcport.Config{}, nil, grpcport.Deps{}); err == nil {
		t.Error("nil service accepted")
	}
	_, err := grpcport.NewServer(grpcport.Config{Addr: "no-port", ShutdownTimeout: -1}, &fakeService{}, grpcport.Deps{})
	if err == nil || !strings.Contains(err.Error(), "addr") || !strings.Contains(err.Error(), "shutdown timeout") {
		t.Errorf("err = %v, want both problems reported", err)
	}
}

func TestRunListensAndStopsOnCancel(t *testing.T) {
	srv, err := grpcport.NewServer(grpcport.Config{Addr: "127.0.0.1:0"}, &fakeService{}, grpcport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// A port that is taken is reported, not retried for ever.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	srv2, err := grpcport.NewServer(grpcport.Config{Addr: ln.Addr().String()}, &fakeService{}, grpcport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Run on a taken port = %v", err)
	}
}
