package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/testenv"
)

// TestRebuildLockCheckSeesALostSession: Check answers nil while the session holds the lock,
// and ErrLockLost once the session is gone, whether an administrator terminated its backend
// or the network between the process and PostgreSQL was cut (testenv.Proxy).
func TestRebuildLockCheckSeesALostSession(t *testing.T) {
	ctx := context.Background()
	checkLost := func(t *testing.T, lock rebuild.Lock) {
		t.Helper()
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := lock.Check(cctx)
		if !errors.Is(err, readmodel.ErrLockLost) {
			t.Fatalf("Check after the session was lost: %v, want ErrLockLost", err)
		}
		t.Logf("Check noticed in %s: %v", time.Since(start).Round(time.Millisecond), err)
	}

	t.Run("pg_terminate_backend", func(t *testing.T) {
		db, _ := migratedDB(t)
		s := newRebuildStore(t, db)
		lock, err := s.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release()
		if err := lock.Check(ctx); err != nil {
			t.Fatalf("Check of a held lock: %v", err)
		}
		holders := lockHolders(t, db)
		if len(holders) != 1 {
			t.Fatalf("holders %v", holders)
		}
		if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, holders[0]); err != nil {
			t.Fatal(err)
		}
		checkLost(t, lock)
	})

	t.Run("network cut", func(t *testing.T) {
		db, dbURL := migratedDB(t)
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		proxy := testenv.NewProxy(t, u.Host)
		u.Host = proxy.Addr()
		proxied, err := postgres.Open(ctx, postgres.Config{URL: u.String()})
		if err != nil {
			t.Fatal(err)
		}
		defer proxied.Close()
		lock, err := newRebuildStore(t, proxied).TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release()
		if err := lock.Check(ctx); err != nil {
			t.Fatalf("Check of a held lock: %v", err)
		}
		proxy.Down()
		checkLost(t, lock)
		// PostgreSQL saw the connection close and freed the lock: another replica gets it.
		other := newRebuildStore(t, db)
		var again rebuild.Lock
		eventually(t, 10*time.Second, "the lock of a cut session was not freed", func() bool {
			again, err = other.TryLock(ctx)
			return err == nil
		})
		again.Release()
	})
}

// TestRebuildStoreOwnership: only the owner saves or beats a record; a record is taken over
// only when unfinished and its heartbeat older than the cut-off, by exactly one of several
// replicas, and the former owner's saves fail from then on.
func TestRebuildStoreOwnership(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	s := newRebuildStore(t, db)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	r, _ := readmodel.New("rb-own", readmodel.SourceDatabase, t0)
	r.Claim("replica-a/1/aaaaaa", t0)
	_ = r.Advance(readmodel.PhaseFill, t0)
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "rb-own", "replica-a/1/aaaaaa", t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "rb-own", "replica-b/2/bbbbbb", t0.Add(6*time.Second)); !errors.Is(err, readmodel.ErrNotOwner) {
		t.Fatalf("heartbeat of a non-owner: %v, want ErrNotOwner", err)
	}
	// A save carries the record's own (older) heartbeat: the stored one does not go back.
	r.Progress(10, 100, t0.Add(time.Second))
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "rb-own")
	if snap := got.Snapshot(); !snap.HeartbeatAt.Equal(t0.Add(5*time.Second)) || snap.Owner != "replica-a/1/aaaaaa" {
		t.Fatalf("after a save: heartbeat %v owner %q, want %v and replica-a", snap.HeartbeatAt, snap.Owner, t0.Add(5*time.Second))
	}

	// Not expired: nobody takes it.
	if _, ok, err := s.TakeOver(ctx, "rb-own", "replica-b/2/bbbbbb", t0.Add(6*time.Second), t0.Add(4*time.Second)); ok || err != nil {
		t.Fatalf("take over of a live record: %v %v", ok, err)
	}
	// Expired: of two replicas exactly one gets it.
	wins := 0
	for _, owner := range []string{"replica-b/2/bbbbbb", "replica-c/3/cccccc"} {
		taken, ok, err := s.TakeOver(ctx, "rb-own", owner, t0.Add(20*time.Second), t0.Add(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			wins++
			if snap := taken.Snapshot(); snap.Owner != owner || !snap.HeartbeatAt.Equal(t0.Add(20*time.Second)) || snap.Phase != readmodel.PhaseFill {
				t.Errorf("taken over: %+v", snap)
			}
		}
	}
	if wins != 1 {
		t.Fatalf("%d replicas took the record over, want exactly 1", wins)
	}
	if err := s.Save(ctx, r); !errors.Is(err, readmodel.ErrNotOwner) {
		t.Fatalf("save by the former owner: %v, want ErrNotOwner", err)
	}
	if err := s.Heartbeat(ctx, "rb-own", "replica-a/1/aaaaaa", t0.Add(21*time.Second)); !errors.Is(err, readmodel.ErrNotOwner) {
		t.Fatalf("heartbeat by the former owner: %v, want ErrNotOwner", err)
	}
	// A record handed off by its owner keeps its state, has no owner and is taken over at once
	// (its heartbeat is older than any cut-off); only the owner can hand it off.
	got, _ = s.Get(ctx, "rb-own")
	owner := got.Owner()
	if err := s.HandOff(ctx, "rb-own", "replica-a/1/aaaaaa"); !errors.Is(err, readmodel.ErrNotOwner) {
		t.Fatalf("hand-off by the former owner: %v, want ErrNotOwner", err)
	}
	if err := s.HandOff(ctx, "rb-own", owner); err != nil {
		t.Fatal(err)
	}
	off, _ := s.Get(ctx, "rb-own")
	if snap := off.Snapshot(); snap.Owner != "" || snap.Phase != readmodel.PhaseFill || snap.DocsDone != 10 || !snap.HeartbeatAt.Before(t0) {
		t.Fatalf("handed off: %+v", snap)
	}
	if _, ok, err := s.TakeOver(ctx, "rb-own", "replica-e/5/eeeeee", t0, t0.Add(-time.Hour)); !ok || err != nil {
		t.Fatalf("take over of a handed-off record: %v %v", ok, err)
	}
	// A finished record is never taken over, nor handed off.
	got, _ = s.Get(ctx, "rb-own")
	_ = got.Fail("done", t0.Add(30*time.Second))
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.TakeOver(ctx, "rb-own", "replica-d/4/dddddd", t0.Add(time.Hour), t0.Add(time.Hour)); ok || err != nil {
		t.Fatalf("take over of a finished record: %v %v", ok, err)
	}
	if err := s.HandOff(ctx, "rb-own", got.Owner()); !errors.Is(err, readmodel.ErrNotOwner) {
		t.Fatalf("hand-off of a finished record: %v, want ErrNotOwner", err)
	}
}

// TestIndexPositions: a position round-trips, is replaced by a later one and forgotten on
// clear; an index without one says so.
func TestIndexPositions(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	s := newRebuildStore(t, db)
	if _, ok, err := s.IndexPosition(ctx, "products_v1_20250101_000000"); ok || err != nil {
		t.Fatalf("unknown index: %v %v", ok, err)
	}
	want := rebuild.Offsets{0: 17, 3: 1 << 40, 11: 0}
	if err := s.SetIndexPosition(ctx, "products_v1_20250101_000000", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.IndexPosition(ctx, "products_v1_20250101_000000")
	if err != nil || !ok || len(got) != len(want) || got[0] != 17 || got[3] != 1<<40 || got[11] != 0 {
		t.Fatalf("position %v %v %v, want %v", got, ok, err, want)
	}
	if err := s.SetIndexPosition(ctx, "products_v1_20250101_000000", rebuild.Offsets{0: 20}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.IndexPosition(ctx, "products_v1_20250101_000000"); len(got) != 1 || got[0] != 20 {
		t.Fatalf("replaced position %v", got)
	}
	if err := s.ClearIndexPosition(ctx, "products_v1_20250101_000000"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.IndexPosition(ctx, "products_v1_20250101_000000"); ok {
		t.Fatal("cleared position still there")
	}
	if err := s.ClearIndexPosition(ctx, "products_v1_20250101_000000"); err != nil {
		t.Fatalf("clearing twice: %v", err)
	}
}
