package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// TestIdleRelayDoesNotPollWithLocks: a poll locks the lane's position row, which costs
// PostgreSQL a transaction id and a WAL sync per poll. An idle relay peeks without locks and
// polls for real only when the peek finds rows (or, as a safety net, every tenth interval), and
// still relays a new commit promptly.
func TestIdleRelayDoesNotPollWithLocks(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := context.Background()
	rt := &roundTrips{}
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 40, Tracer: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, quietLog()); err != nil {
		t.Fatal(err)
	}
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "idle", 4)
	runCtx, cancel := context.WithCancel(ctx)
	cfg := postgres.RelayConfig{PollInterval: 50 * time.Millisecond}
	done := startRelay(t, runCtx, db, c, cfg)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	time.Sleep(500 * time.Millisecond) // start-up: each lane polls once
	rt.reset()
	const window = 2 * time.Second
	time.Sleep(window)
	polls, peeks := 0, 0
	rt.mu.Lock()
	for _, q := range rt.statements {
		switch {
		case strings.Contains(q, "FOR UPDATE SKIP LOCKED"):
			polls++
		case strings.Contains(q, "SELECT EXISTS"):
			peeks++
		}
	}
	rt.mu.Unlock()
	lanes := postgres.DefaultLanes
	intervals := int(window / cfg.PollInterval)
	t.Logf("idle for %s with %d lanes at a %s poll interval: %d locking polls, %d peeks (polling every interval would be %d polls)",
		window, lanes, cfg.PollInterval, polls, peeks, lanes*intervals)
	if limit := lanes * (intervals/10 + 1); polls > limit {
		t.Errorf("%d locking polls while idle, want at most %d (one per lane every tenth interval)", polls, limit)
	}
	if peeks < lanes*intervals/2 {
		t.Errorf("only %d peeks: the lanes are not checking every interval", peeks)
	}

	// A commit is relayed at once: the notification wakes its lane, the peek sees the row.
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := product.New(product.NewID(now), details(t, "IDLE-1", 100), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Add(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	recs := testkafka.ReadUntil(t, c, topic, 10*time.Second, func(r []testkafka.Record) bool { return len(r) >= 1 })
	if len(recs) != 1 || recs[0].Key != p.ID().String() {
		t.Fatalf("topic holds %v, want the one event of %s", recs, p.ID())
	}
}
