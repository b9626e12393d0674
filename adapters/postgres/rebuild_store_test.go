package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

func newRebuildStore(t *testing.T, db *postgres.DB) *postgres.RebuildStore {
	t.Helper()
	s, err := postgres.NewRebuildStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lockHolders returns the pids of the sessions holding the rebuild advisory lock in db's
// database (advisory locks are per database: other tests' databases on the same server have
// their own); pg_locks shows a bigint key as its high and low 32 bits with objsubid 1.
func lockHolders(t *testing.T, db *postgres.DB) []int32 {
	t.Helper()
	key := uint64(postgres.RebuildLockKey())
	rows, err := db.Pool.Query(context.Background(), `SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		int64(key>>32), int64(key&0xffffffff))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var pids []int32
	for rows.Next() {
		var pid int32
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRebuildLockKeyIsDocumented: the key is FNV-1a 64 of the documented name, so operators
// and other tools can derive it.
func TestRebuildLockKeyIsDocumented(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte(postgres.RebuildLockName))
	if got, want := postgres.RebuildLockKey(), int64(h.Sum64()); got != want {
		t.Fatalf("RebuildLockKey() = %d, want FNV-1a 64 of %q = %d", got, postgres.RebuildLockName, want)
	}
	t.Logf("rebuild lock key %d (%q)", postgres.RebuildLockKey(), postgres.RebuildLockName)
}

// TestRebuildLockIsExclusive: one holder across stores and pools (replicas); a second attempt,
// even from the holder's own store, gets ErrAlreadyRunning; release is idempotent, frees the
// lock and closes the dedicated connection.
func TestRebuildLockIsExclusive(t *testing.T) {
	db, url := migratedDB(t)
	ctx := context.Background()
	other, err := postgres.Open(ctx, postgres.Config{URL: url}) // a second replica's pool
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a, b := newRebuildStore(t, db), newRebuildStore(t, other)

	lock, err := a.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("second replica: %v, want ErrAlreadyRunning", err)
	}
	// Session-level advisory locks are re-entrant within a session; a fresh connection per
	// TryLock keeps the same process from taking it twice.
	if _, err := a.TryLock(ctx); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("same store again: %v, want ErrAlreadyRunning", err)
	}
	holders := lockHolders(t, db)
	if len(holders) != 1 {
		t.Fatalf("lock holders %v, want exactly one", holders)
	}
	var app string
	if err := db.Pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = $1`, holders[0]).Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != "catalog rebuild lock" {
		t.Errorf("holder's application_name %q", app)
	}
	// Failed attempts must not leak their connections.
	sessions := func() int {
		return count(t, db, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'catalog rebuild lock' AND datname = current_database()`)
	}
	eventually(t, 5*time.Second, "failed attempts left sessions open", func() bool { return sessions() == 1 })

	lock.Release()
	lock.Release() // idempotent
	if h := lockHolders(t, db); len(h) != 0 {
		t.Fatalf("after release the lock is held by %v", h)
	}
	eventually(t, 5*time.Second, "release left the lock connection open", func() bool { return sessions() == 0 })

	lockB, err := b.TryLock(ctx)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	lockB.Release()
}

// TestRebuildLockFreedWhenSessionDies: an administrator's pg_terminate_backend (or a network
// cut, or a failover) ends the holder's session; the lock goes with it, and the holder's late
// release neither hangs nor panics.
func TestRebuildLockFreedWhenSessionDies(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	s := newRebuildStore(t, db)
	lock, err := s.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holders := lockHolders(t, db)
	if len(holders) != 1 {
		t.Fatalf("holders %v", holders)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, holders[0]); err != nil {
		t.Fatal(err)
	}
	var again rebuild.Lock
	eventually(t, 10*time.Second, "the lock of a terminated session was not freed", func() bool {
		again, err = s.TryLock(ctx)
		return err == nil
	})
	done := make(chan struct{})
	go func() { lock.Release(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("release of a dead session hangs")
	}
	if h := lockHolders(t, db); len(h) != 1 {
		t.Fatalf("the dead session's release touched the new holder's lock: holders %v", h)
	}
	again.Release()
}

const lockHolderEnv = "CATALOG_TEST_REBUILD_LOCK_HOLDER_URL"

// TestRebuildLockHolderProcess is not a test on its own: TestRebuildLockFreedWhenProcessDies
// runs the test binary with this test selected to get a separate process holding the lock.
func TestRebuildLockHolderProcess(t *testing.T) {
	url := os.Getenv(lockHolderEnv)
	if url == "" {
		return
	}
	db, err := postgres.Open(context.Background(), postgres.Config{URL: url})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	s, _ := postgres.NewRebuildStore(db)
	if _, err := s.TryLock(context.Background()); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	time.Sleep(2 * time.Minute) // until killed
	os.Exit(3)
}

// TestRebuildLockFreedWhenProcessDies: a process killed with SIGKILL while holding the lock
// (no deferred release runs) does not block the next rebuild: the kernel closes its socket and
// PostgreSQL ends the session and its lock.
func TestRebuildLockFreedWhenProcessDies(t *testing.T) {
	db, url := migratedDB(t)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRebuildLockHolderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l == "locked" || strings.HasPrefix(l, "error:") {
				lines <- l
				return
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok || l != "locked" {
			t.Fatalf("holder process: %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("holder process did not take the lock")
	}

	s := newRebuildStore(t, db)
	if _, err := s.TryLock(ctx); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("while another process holds it: %v, want ErrAlreadyRunning", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var lock rebuild.Lock
	eventually(t, 10*time.Second, "the lock of a killed process was not freed", func() bool {
		lock, err = s.TryLock(ctx)
		return err == nil
	})
	lock.Release()
}

// sameRebuild compares records as stored: times in UTC at microsecond precision.
func sameRebuild(t *testing.T, got *readmodel.Rebuild, want readmodel.Snapshot) {
	t.Helper()
	g := got.Snapshot()
	norm := func(ts time.Time) time.Time { return ts.UTC().Truncate(time.Microsecond) }
	sameTime := func(field string, g, w time.Time) {
		if !g.Equal(norm(w)) || g.Location() != time.UTC {
			t.Errorf("%s: got %v, want %v (UTC)", field, g, norm(w))
		}
	}
	if g.ID != want.ID || g.Source != want.Source || g.Phase != want.Phase || g.FromIndex != want.FromIndex ||
		g.ToIndex != want.ToIndex || g.DocsDone != want.DocsDone || g.DocsTotal != want.DocsTotal || g.Error != want.Error {
		t.Errorf("got %+v\nwant %+v", g, want)
	}
	sameTime("started_at", g.StartedAt, want.StartedAt)
	sameTime("updated_at", g.UpdatedAt, want.UpdatedAt)
	switch {
	case (g.FinishedAt == nil) != (want.FinishedAt == nil):
		t.Errorf("finished_at: got %v, want %v", g.FinishedAt, want.FinishedAt)
	case g.FinishedAt != nil:
		sameTime("finished_at", *g.FinishedAt, *want.FinishedAt)
	}
	if len(g.PhaseStarts) != len(want.PhaseStarts) {
		t.Errorf("phase starts: got %v, want %v", g.PhaseStarts, want.PhaseStarts)
	}
	for p, w := range want.PhaseStarts {
		gt, ok := g.PhaseStarts[p]
		if !ok {
			t.Errorf("phase start of %s missing", p)
			continue
		}
		sameTime("phase start "+string(p), gt, w)
	}
	samePosition(t, "drain position", g.DrainFrom, want.DrainFrom)
	samePosition(t, "fill position", g.FillAt, want.FillAt)
	samePosition(t, "catch-up position", g.CatchUpFrom, want.CatchUpFrom)
	if (g.CatchUpFrom == nil) != (want.CatchUpFrom == nil) {
		t.Errorf("catch-up position captured: got %v, want %v", g.CatchUpFrom != nil, want.CatchUpFrom != nil)
	}
	if g.FillAfter != want.FillAfter || g.EventsDone != want.EventsDone || g.EventsTotal != want.EventsTotal ||
		g.Rate != want.Rate || g.Resumes != want.Resumes {
		t.Errorf("resume state: got after %q, events %d/%d, rate %v, resumes %d; want after %q, events %d/%d, rate %v, resumes %d",
			g.FillAfter, g.EventsDone, g.EventsTotal, g.Rate, g.Resumes, want.FillAfter, want.EventsDone, want.EventsTotal, want.Rate, want.Resumes)
	}
}

func samePosition(t *testing.T, what string, got, want map[int32]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	for p, o := range want {
		if got[p] != o {
			t.Errorf("%s of partition %d: got %d, want %d", what, p, got[p], o)
		}
	}
}

// TestRebuildStoreRoundTrip: every field survives Create, Save and Get, through the whole life
// of a record, and List is newest first.
func TestRebuildStoreRoundTrip(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	s := newRebuildStore(t, db)
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)) // ns and a zone on purpose

	r, err := readmodel.New("rb-1", readmodel.SourceKafka, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, r); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("second Create of the same id: %v, want ErrInvalid", err)
	}
	got, err := s.Get(ctx, "rb-1")
	if err != nil {
		t.Fatal(err)
	}
	sameRebuild(t, got, r.Snapshot())
	// A pending phase start equal to started_at stays equal after the round trip.
	if !got.Snapshot().PhaseStarts[readmodel.PhasePending].Equal(got.Snapshot().StartedAt) {
		t.Error("pending phase start and started_at differ after the round trip")
	}

	r.SetIndices("products_v1_20250101_000000", "products_v2_20250304_050607")
	for i, p := range []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill} {
		if err := r.Advance(p, t0.Add(time.Duration(i+1)*time.Second+777)); err != nil {
			t.Fatal(err)
		}
		if p == readmodel.PhaseCapture {
			r.SetCatchUpFrom(map[int32]int64{0: 3, 7: 1 << 41})
		}
	}
	r.Progress(123_456, 1_000_000, t0.Add(5*time.Second+1))
	r.SetDrainFrom(map[int32]int64{0: 17, 5: 1 << 40, 11: 0})
	r.FilledEvents(map[int32]int64{0: 9, 3: 4}, 13, t0.Add(5*time.Second+2))
	r.ExpectEvents(100)
	r.SetRate(1234.5)
	r.Resume(t0.Add(5*time.Second + 3))
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(ctx, "rb-1"); err != nil {
		t.Fatal(err)
	}
	sameRebuild(t, got, r.Snapshot())

	if err := r.Fail("validation: 3 documents missing", t0.Add(time.Minute+999)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(ctx, "rb-1"); err != nil {
		t.Fatal(err)
	}
	sameRebuild(t, got, r.Snapshot())
	if got.Snapshot().FinishedAt == nil || got.Phase() != readmodel.PhaseFailed {
		t.Fatalf("finished record: %+v", got.Snapshot())
	}

	// A database fill's cursor, and a catch-up position captured on a log without partitions
	// (empty, which is not "not captured").
	rd, _ := readmodel.New("rb-db", readmodel.SourceDatabase, t0)
	_ = rd.Advance(readmodel.PhaseCapture, t0)
	rd.SetCatchUpFrom(nil)
	_ = rd.Advance(readmodel.PhaseFill, t0)
	if err := rd.FilledChunk("0190a0b0-0000-7000-8000-0000000000ff", 5000, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, rd); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(ctx, "rb-db"); err != nil {
		t.Fatal(err)
	}
	sameRebuild(t, got, rd.Snapshot())
	if _, err := db.Pool.Exec(ctx, `DELETE FROM rebuilds WHERE id = 'rb-db'`); err != nil {
		t.Fatal(err)
	}

	// Save of a record never created inserts it.
	r2, _ := readmodel.New("rb-2", readmodel.SourceDatabase, t0.Add(time.Hour))
	if err := s.Save(ctx, r2); err != nil {
		t.Fatal(err)
	}
	r3, _ := readmodel.New("rb-3", readmodel.SourceDatabase, t0.Add(-time.Hour))
	if err := s.Create(ctx, r3); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Get(ctx, "nope"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("Get of an unknown id: %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID() != "rb-2" || list[1].ID() != "rb-1" {
		t.Fatalf("List(2): %v", ids(list))
	}
	sameRebuild(t, list[1], r.Snapshot())
	if list, err = s.List(ctx, 10); err != nil || len(list) != 3 || list[2].ID() != "rb-3" {
		t.Fatalf("List(10): %v, %v", ids(list), err)
	}
	if _, err := s.List(ctx, 0); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("List(0): %v, want ErrInvalid", err)
	}
}

func ids(rs []*readmodel.Rebuild) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID()
	}
	return out
}

// TestRebuildStoreCancel: a cancel request is visible to every replica, survives the running
// rebuild's progress saves, and names an existing rebuild.
func TestRebuildStoreCancel(t *testing.T) {
	db, url := migratedDB(t)
	ctx := context.Background()
	s := newRebuildStore(t, db)
	other, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	o := newRebuildStore(t, other)

	r, _ := readmodel.New("rb-c", readmodel.SourceDatabase, time.Now())
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if req, err := s.CancelRequested(ctx, "rb-c"); err != nil || req {
		t.Fatalf("fresh record: cancel requested %v, %v", req, err)
	}
	if err := o.RequestCancel(ctx, "rb-c"); err != nil { // received by another replica
		t.Fatal(err)
	}
	if err := o.RequestCancel(ctx, "rb-c"); err != nil {
		t.Fatalf("second request: %v", err)
	}
	r.Progress(10, 20, time.Now())
	if err := s.Save(ctx, r); err != nil { // the runner saves progress meanwhile
		t.Fatal(err)
	}
	if req, err := s.CancelRequested(ctx, "rb-c"); err != nil || !req {
		t.Fatalf("after RequestCancel and a Save: cancel requested %v, %v", req, err)
	}
	if err := s.RequestCancel(ctx, "nope"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("RequestCancel of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := s.CancelRequested(ctx, "nope"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("CancelRequested of an unknown id: %v, want ErrNotFound", err)
	}
}
