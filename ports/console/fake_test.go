package console_test

import (
	"context"
	"sync"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// fakeOps answers Status with a fixed status and records verifies.
type fakeOps struct {
	status ops.Status
	err    error
}

func (f *fakeOps) Status(context.Context, ops.Thresholds) (ops.Status, error) {
	st := f.status
	st.CheckedAt = time.Now()
	return st, f.err
}

func (f *fakeOps) Verify(context.Context, ops.VerifyRequest, func(ops.VerifyProgress)) (ops.VerifyReport, error) {
	return ops.VerifyReport{Alias: "product_search", Index: "product_search_v2_x", Products: 3, Documents: 3}, nil
}

// fakeRebuilds records what the console asks of the rebuild use cases.
type fakeRebuilds struct {
	mu          sync.Mutex
	started     []readmodel.Source
	rollbackErr error
	snap        readmodel.Snapshot
}

func (f *fakeRebuilds) Start(_ context.Context, src readmodel.Source) (readmodel.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, src)
	f.snap = readmodel.Snapshot{ID: "rb-1", Source: src, Phase: readmodel.PhaseFill, DocsDone: 50, DocsTotal: 200, StartedAt: time.Now().Add(-10 * time.Second),
		PhaseStarts: map[readmodel.Phase]time.Time{readmodel.PhaseCreateIndex: time.Now().Add(-10 * time.Second), readmodel.PhaseFill: time.Now().Add(-5 * time.Second)}}
	return f.snap, nil
}

func (f *fakeRebuilds) Starts() []readmodel.Source {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]readmodel.Source(nil), f.started...)
}

func (f *fakeRebuilds) Get(_ context.Context, id string) (readmodel.Snapshot, error) {
	if id != f.snap.ID {
		return readmodel.Snapshot{}, readmodel.ErrNotFound
	}
	return f.snap, nil
}

func (f *fakeRebuilds) List(context.Context, int) ([]readmodel.Snapshot, error) {
	if f.snap.ID == "" {
		return nil, nil
	}
	return []readmodel.Snapshot{f.snap}, nil
}

func (f *fakeRebuilds) Cancel(context.Context, string) (readmodel.Snapshot, error) {
	return f.snap, nil
}

func (f *fakeRebuilds) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	return []rebuild.IndexInfo{{Name: "product_search_v2_b", MappingVersion: 2, Aliased: true}, {Name: "product_search_v1_a", MappingVersion: 1}}, nil
}

func (f *fakeRebuilds) RollbackAlias(context.Context) (rebuild.Rollback, error) {
	return rebuild.Rollback{From: "product_search_v2_b", To: "product_search_v1_a"}, f.rollbackErr
}

func (f *fakeRebuilds) PruneIndices(context.Context, int) ([]string, error) { return nil, nil }

// fakeDLQ holds dead letters and records replays and resolutions.
type fakeDLQ struct {
	mu       sync.Mutex
	messages []ops.DLQMessage
	replays  []ops.ReplayRequest
	resolves []ops.ResolveRequest
}

func (f *fakeDLQ) List(_ context.Context, flt ops.DLQFilter, _ int, _ bool) (ops.DLQListResult, error) {
	var out []ops.DLQMessage
	for _, m := range f.messages {
		if flt.Matches(m) {
			out = append(out, m)
		}
	}
	return ops.DLQListResult{Messages: out, Matched: len(out)}, nil
}

func (f *fakeDLQ) Show(_ context.Context, ref ops.DLQRef) (ops.DLQMessage, error) {
	for _, m := range f.messages {
		if m.Ref == ref {
			return m, nil
		}
	}
	return ops.DLQMessage{}, ops.ErrDLQMessageNotFound
}

func (f *fakeDLQ) Replay(_ context.Context, req ops.ReplayRequest, on func(ops.ReplayOutcome)) (ops.ReplaySummary, error) {
	if err := req.Validate(); err != nil {
		return ops.ReplaySummary{}, err
	}
	f.mu.Lock()
	f.replays = append(f.replays, req)
	f.mu.Unlock()
	action := ops.ReplayActionReplayed
	if req.DryRun {
		action = ops.ReplayActionWouldReplay
	}
	for _, m := range f.messages {
		on(ops.ReplayOutcome{Message: m, Action: action})
	}
	return ops.ReplaySummary{DryRun: req.DryRun, Selected: len(f.messages), Replayed: len(f.messages), RunID: "run-1"}, nil
}

func (f *fakeDLQ) Resolve(_ context.Context, req ops.ResolveRequest, on func(ops.ResolveOutcome)) (ops.ResolveSummary, error) {
	if err := req.Validate(); err != nil {
		return ops.ResolveSummary{}, err
	}
	f.mu.Lock()
	f.resolves = append(f.resolves, req)
	f.mu.Unlock()
	return ops.ResolveSummary{DryRun: req.DryRun, RunID: "run-2"}, nil
}

func (f *fakeDLQ) Audit(context.Context, ops.AuditFilter) ([]ops.ReplayAuditEntry, error) {
	return nil, nil
}

func (f *fakeDLQ) Replays() []ops.ReplayRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ops.ReplayRequest(nil), f.replays...)
}
