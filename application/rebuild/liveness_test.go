package rebuild_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	app "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/rebuild"
)

// startHeld starts a rebuild of 50 products whose fill stops in its first batch until
// release is called (release is also called when the test ends); it returns once the fill
// waits there.
func startHeld(t *testing.T, r *rig) (id string, release func()) {
	t.Helper()
	r.seed(t, 50)
	in := make(chan struct{})
	hold := make(chan struct{})
	var once sync.Once
	r.w.gate = func() {
		once.Do(func() { close(in) })
		<-hold
	}
	var rel sync.Once
	release = func() { rel.Do(func() { close(hold) }) }
	t.Cleanup(release)
	s, err := r.svc.Start(context.Background(), rebuild.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	<-in
	return s.ID, release
}

// replica is a second process on the same database, event log and read model.
func (r *rig) replica(t *testing.T, cfg app.Config) *app.Service {
	t.Helper()
	cfg.ProjectorGroup = "projector"
	svc, err := app.NewService(cfg, r.store, r.w, eventLog{r.w}, target{r.w}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.CancelAll(); svc.Wait() })
	return svc
}

// TestRebuildStopsWhenItsLockIsLost: the lock's session drops in the middle of a fill. While
// the runner is alive, another replica's recovery leaves the rebuild alone and a second
// rebuild is refused; the runner notices within a heartbeat, stops, deletes its unfinished
// index and records why; then a rebuild can start again.
func TestRebuildStopsWhenItsLockIsLost(t *testing.T) {
	cfg := app.Config{HeartbeatInterval: 5 * time.Millisecond, HeartbeatTimeout: time.Minute}
	r := newRig(t, cfg)
	before := r.w.alias
	id, release := startHeld(t, r)
	if r.store.loseLock() == nil {
		t.Fatal("nobody held the lock during the fill")
	}

	other := r.replica(t, app.Config{Owner: "other-replica"})
	if n, err := other.RecoverInterrupted(context.Background()); err != nil || n != 0 {
		t.Fatalf("the other replica's recovery: %d recovered (%v), want the live rebuild left alone", n, err)
	}
	if _, err := other.Start(context.Background(), rebuild.SourceDatabase); !errors.Is(err, rebuild.ErrAlreadyRunning) {
		t.Fatalf("a second rebuild while the first runner lives: %v, want ErrAlreadyRunning", err)
	}
	rec, _ := r.svc.Get(context.Background(), id)
	r.w.mu.Lock()
	_, indexThere := r.w.indices[rec.ToIndex]
	r.w.mu.Unlock()
	if rec.Phase != rebuild.PhaseFill || !indexThere {
		t.Fatalf("after the other replica's recovery the record is %s (index present %v), want fill with its index", rec.Phase, indexThere)
	}

	time.Sleep(100 * time.Millisecond) // twenty heartbeats: the runner has seen the lock is gone
	release()
	end := waitEnd(t, r.svc, id)
	if end.Phase != rebuild.PhaseFailed || !strings.Contains(end.Error, "lock") {
		t.Fatalf("rebuild ended %s (%q), want failed because it lost its lock", end.Phase, end.Error)
	}
	r.w.mu.Lock()
	_, indexThere = r.w.indices[end.ToIndex]
	alias := r.w.alias
	r.w.mu.Unlock()
	if indexThere || alias != before {
		t.Fatalf("after the stop: unfinished index present %v, alias on %s (want it gone and %s)", indexThere, alias, before)
	}
	r.svc.Wait()
	if _, err := other.Start(context.Background(), rebuild.SourceDatabase); err != nil {
		t.Fatalf("a rebuild after the stopped one: %v", err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestDeadRunnerIsTakenOverOnlyAfterItsHeartbeatExpires: a record in the fill whose runner
// beat a moment ago is alive for every replica, even with the lock free; once its heartbeat
// is older than the timeout, GetRebuild's liveness says so and recovery fails it and deletes
// its index.
func TestDeadRunnerIsTakenOverOnlyAfterItsHeartbeatExpires(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	r := newRig(t, app.Config{Now: clock.Now, HeartbeatTimeout: 10 * time.Second})
	ctx := context.Background()
	dead, _ := rebuild.New("dead-runner", rebuild.SourceDatabase, clock.Now())
	dead.Claim("gone-host/4242/abcdef", clock.Now())
	_ = dead.Advance(rebuild.PhaseCreateIndex, clock.Now())
	idx, _ := target{r.w}.CreateIndex(ctx)
	dead.SetIndices(r.w.alias, idx)
	_ = dead.Advance(rebuild.PhaseFill, clock.Now())
	_ = r.store.Create(ctx, dead)

	clock.Advance(5 * time.Second)
	snap, _ := r.svc.Get(ctx, "dead-runner")
	if r.svc.RunnerLost(snap) {
		t.Fatal("a runner that beat 5 s ago counts as lost (timeout 10 s)")
	}
	if n, err := r.svc.RecoverInterrupted(ctx); err != nil || n != 0 {
		t.Fatalf("recovery of a live rebuild: %d (%v), want nothing done", n, err)
	}
	if _, ok := r.w.indices[idx]; !ok {
		t.Fatal("recovery deleted a live rebuild's index")
	}

	clock.Advance(6 * time.Second)
	snap, _ = r.svc.Get(ctx, "dead-runner")
	if !r.svc.RunnerLost(snap) {
		t.Fatal("a runner silent for 11 s does not count as lost (timeout 10 s)")
	}
	if n, err := r.svc.RecoverInterrupted(ctx); err != nil || n != 1 {
		t.Fatalf("recovery of a dead runner's rebuild: %d (%v), want 1", n, err)
	}
	snap, _ = r.svc.Get(ctx, "dead-runner")
	if snap.Phase != rebuild.PhaseFailed || !strings.Contains(snap.Error, "gone-host/4242/abcdef") {
		t.Fatalf("record %s %q, want failed naming the dead runner", snap.Phase, snap.Error)
	}
	if _, ok := r.w.indices[idx]; ok {
		t.Fatal("the dead rebuild's index was not deleted")
	}
}

// TestTakenOverRunnerLeavesTheRecordAlone: when another replica has taken a record over (its
// runner's heartbeat had expired, say after a long pause), the former runner stops at its next
// heartbeat without saving an outcome or deleting the index: both are the successor's.
func TestTakenOverRunnerLeavesTheRecordAlone(t *testing.T) {
	r := newRig(t, app.Config{HeartbeatInterval: 5 * time.Millisecond, HeartbeatTimeout: time.Minute})
	id, release := startHeld(t, r)
	now := time.Now()
	if _, ok, err := r.store.TakeOver(context.Background(), id, "successor", now, now.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("take over: %v %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond)
	release()
	r.svc.Wait()
	rec, _ := r.svc.Get(context.Background(), id)
	if rec.Owner != "successor" || rec.Phase != rebuild.PhaseFill {
		t.Fatalf("record %s owned by %q, want it untouched in fill, owned by the successor", rec.Phase, rec.Owner)
	}
	r.w.mu.Lock()
	_, ok := r.w.indices[rec.ToIndex]
	r.w.mu.Unlock()
	if !ok {
		t.Fatal("the former runner deleted the index its successor owns")
	}
}
