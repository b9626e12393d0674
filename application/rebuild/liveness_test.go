package rebuild_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// startHeld starts a rebuild of 50 products whose fill stops in its first chunk until
// release is called (release is also called when the test ends); it returns once the fill
// waits there.
func startHeld(t *testing.T, r *rig) (id string, release func()) {
	t.Helper()
	return startHeldAt(t, r, 50, 1)
}

// startHeldAt starts a rebuild of n products whose fill stops when it reads its chunk-th chunk
// (chunks of 10) until release is called; it returns once the fill waits there and every
// chunk before it has been written.
func startHeldAt(t *testing.T, r *rig, n, chunk int) (id string, release func()) {
	t.Helper()
	r.seed(t, n)
	in := make(chan struct{})
	hold := make(chan struct{})
	var once sync.Once
	var reads atomic.Int64
	r.w.gate = func() {
		if reads.Add(1) != int64(chunk) {
			return
		}
		once.Do(func() { close(in) })
		<-hold
	}
	var rel sync.Once
	release = func() { rel.Do(func() { close(hold) }) }
	t.Cleanup(release)
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	<-in
	want := int64(10 * (chunk - 1))
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, _ := r.svc.Get(context.Background(), s.ID)
		r.w.mu.Lock()
		written := len(r.w.indices[rec.ToIndex])
		r.w.mu.Unlock()
		if int64(written) >= want {
			return s.ID, release
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fill wrote %d documents before its chunk %d, want %d", written, chunk, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// replica is a second process on the same database, event log and read model.
func (r *rig) replica(t *testing.T, cfg rebuild.Config) *rebuild.Service {
	t.Helper()
	cfg.ProjectorGroup = "projector"
	return r.service(t, cfg)
}

// TestRebuildStopsWhenItsLockIsLost: the lock's session drops in the middle of a fill. While
// the runner is alive, another replica's recovery leaves the rebuild alone and a second
// rebuild is refused; the runner notices within a heartbeat, stops, keeps its index and its
// progress and hands the record off; the other replica's recovery then resumes it under the
// same id from its last chunk, and it succeeds.
func TestRebuildStopsWhenItsLockIsLost(t *testing.T) {
	cfg := rebuild.Config{HeartbeatInterval: 5 * time.Millisecond, HeartbeatTimeout: time.Minute}
	r := newRig(t, cfg)
	before := r.w.alias
	id, release := startHeldAt(t, r, 50, 3)
	if r.store.loseLock() == nil {
		t.Fatal("nobody held the lock during the fill")
	}

	other := r.replica(t, rebuild.Config{Owner: "other-replica"})
	if n, err := other.RecoverInterrupted(context.Background()); err != nil || n != 0 {
		t.Fatalf("the other replica's recovery: %d recovered (%v), want the live rebuild left alone", n, err)
	}
	if _, err := other.Start(context.Background(), readmodel.SourceDatabase); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("a second rebuild while the first runner lives: %v, want ErrAlreadyRunning", err)
	}
	rec, _ := r.svc.Get(context.Background(), id)
	r.w.mu.Lock()
	_, indexThere := r.w.indices[rec.ToIndex]
	r.w.mu.Unlock()
	if rec.Phase != readmodel.PhaseFill || !indexThere {
		t.Fatalf("after the other replica's recovery the record is %s (index present %v), want fill with its index", rec.Phase, indexThere)
	}

	time.Sleep(100 * time.Millisecond) // twenty heartbeats: the runner has seen the lock is gone
	release()
	r.svc.Wait()
	off, _ := r.svc.Get(context.Background(), id)
	r.w.mu.Lock()
	_, indexThere = r.w.indices[off.ToIndex]
	r.w.mu.Unlock()
	if off.Phase != readmodel.PhaseFill || off.Owner != "" || !indexThere || off.FillAfter == "" || off.DocsDone < 20 {
		t.Fatalf("after the stop: %s owned by %q, index present %v, fill after %q at %d documents; want the fill handed off with its index and progress",
			off.Phase, off.Owner, indexThere, off.FillAfter, off.DocsDone)
	}

	if n, err := other.RecoverInterrupted(context.Background()); err != nil || n != 1 {
		t.Fatalf("the other replica's recovery of the handed-off rebuild: %d (%v), want 1", n, err)
	}
	end := waitEnd(t, other, id)
	if end.Phase != readmodel.PhaseSucceeded || end.Resumes != 1 || end.Owner != "other-replica" {
		t.Fatalf("resumed rebuild ended %s (%q), resumed %d times by %q", end.Phase, end.Error, end.Resumes, end.Owner)
	}
	if end.DocsDone != 50 || r.w.alias != end.ToIndex || end.ToIndex != off.ToIndex || end.FromIndex != before {
		t.Fatalf("resumed rebuild: %d documents, alias on %s, record %s -> %s (want 50, the same new index, from %s)",
			end.DocsDone, r.w.alias, end.FromIndex, end.ToIndex, before)
	}
}

// TestShutdownHandsTheRebuildOffAndAReplicaResumesIt: HandOffAll (the process is shutting
// down) stops a fill without ending it; another replica resumes it from its last completed
// chunk: the same id, the same index, documents done counting on from where they were, never
// backwards, every product in the new index and the record succeeded.
func TestShutdownHandsTheRebuildOffAndAReplicaResumesIt(t *testing.T) {
	r := newRig(t, rebuild.Config{HeartbeatInterval: 5 * time.Millisecond})
	id, release := startHeldAt(t, r, 95, 5)
	r.svc.HandOffAll()
	release()
	r.svc.Wait()
	off, _ := r.svc.Get(context.Background(), id)
	r.w.mu.Lock()
	written := int64(len(r.w.indices[off.ToIndex]))
	r.w.mu.Unlock()
	// The chunk being read when the process stopped may or may not have been written.
	if off.Phase != readmodel.PhaseFill || off.Owner != "" || off.DocsDone < 40 || off.DocsDone != written || off.CatchUpFrom == nil {
		t.Fatalf("handed off: %s owned by %q at %d documents, %d in the index (catch-up from %v); want the fill, unowned, at 40 or more, all in the index",
			off.Phase, off.Owner, off.DocsDone, written, off.CatchUpFrom)
	}
	if !r.svc.RunnerLost(off) {
		t.Error("a handed-off rebuild does not count as waiting for a runner")
	}

	var chunks []string
	low := off.DocsDone
	other := r.replica(t, rebuild.Config{Owner: "other-replica"})
	r.w.gate = func() {
		rec, _ := other.Get(context.Background(), id)
		chunks = append(chunks, rec.FillAfter)
		low = min(low, rec.DocsDone)
	}
	if n, err := other.RecoverInterrupted(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery: %d (%v), want the handed-off rebuild resumed", n, err)
	}
	end := waitEnd(t, other, id)
	if end.Phase != readmodel.PhaseSucceeded || end.Resumes != 1 || end.ToIndex != off.ToIndex {
		t.Fatalf("resumed rebuild ended %s (%q), resumes %d, index %s (was %s)", end.Phase, end.Error, end.Resumes, end.ToIndex, off.ToIndex)
	}
	if low < off.DocsDone || end.DocsDone != 95 {
		t.Errorf("documents done went from %d down to %d, ended at %d of 95", off.DocsDone, low, end.DocsDone)
	}
	if len(chunks) == 0 || chunks[0] != off.FillAfter {
		t.Errorf("the resumed fill read its first chunk after %q, want after the last completed one %q", chunks, off.FillAfter)
	}
	for pid, p := range r.w.products {
		if doc, ok := r.w.indices[end.ToIndex][pid]; !ok || doc.Version != p.Version {
			t.Errorf("product %s: in the index %v at v%d, want v%d", pid, ok, doc.Version, p.Version)
		}
	}
}

// TestCancelOfAHandedOffRebuild: a rebuild whose runner handed it off is cancelled before a
// replica resumes it; recovery then ends it cancelled and deletes its index instead of
// resuming it.
func TestCancelOfAHandedOffRebuild(t *testing.T) {
	r := newRig(t, rebuild.Config{HeartbeatInterval: 5 * time.Millisecond})
	before := r.w.alias
	id, release := startHeldAt(t, r, 50, 2)
	r.svc.HandOffAll()
	release()
	r.svc.Wait()
	if _, err := r.svc.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if n, err := r.svc.RecoverInterrupted(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery: %d (%v)", n, err)
	}
	end, _ := r.svc.Get(context.Background(), id)
	r.w.mu.Lock()
	_, indexThere := r.w.indices[end.ToIndex]
	r.w.mu.Unlock()
	if end.Phase != readmodel.PhaseCancelled || indexThere || r.w.alias != before {
		t.Fatalf("record %s, index present %v, alias %s; want cancelled, index deleted, alias on %s", end.Phase, indexThere, r.w.alias, before)
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
	r := newRig(t, rebuild.Config{Now: clock.Now, HeartbeatTimeout: 10 * time.Second})
	ctx := context.Background()
	dead, _ := readmodel.New("dead-runner", readmodel.SourceDatabase, clock.Now())
	dead.Claim("gone-host/4242/abcdef", clock.Now())
	_ = dead.Advance(readmodel.PhaseCreateIndex, clock.Now())
	idx, _ := target{r.w}.CreateIndex(ctx)
	dead.SetIndices(r.w.alias, idx)
	_ = dead.Advance(readmodel.PhaseFill, clock.Now())
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
	if snap.Phase != readmodel.PhaseFailed || !strings.Contains(snap.Error, "gone-host/4242/abcdef") {
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
	r := newRig(t, rebuild.Config{HeartbeatInterval: 5 * time.Millisecond, HeartbeatTimeout: time.Minute})
	id, release := startHeld(t, r)
	now := time.Now()
	if _, ok, err := r.store.TakeOver(context.Background(), id, "successor", now, now.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("take over: %v %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond)
	release()
	r.svc.Wait()
	rec, _ := r.svc.Get(context.Background(), id)
	if rec.Owner != "successor" || rec.Phase != readmodel.PhaseFill {
		t.Fatalf("record %s owned by %q, want it untouched in fill, owned by the successor", rec.Phase, rec.Owner)
	}
	r.w.mu.Lock()
	_, ok := r.w.indices[rec.ToIndex]
	r.w.mu.Unlock()
	if !ok {
		t.Fatal("the former runner deleted the index its successor owns")
	}
}
