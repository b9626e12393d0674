package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// takesTransactionID reports whether a statement the relay sent can assign a transaction id
// (and so write and sync WAL at commit): anything that writes or locks rows.
func takesTransactionID(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	for _, w := range []string{"INSERT", "UPDATE", "DELETE", "BEGIN", "FOR UPDATE", "FOR SHARE", "PG_CURRENT_XACT_ID", "TXID_CURRENT"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// TestIdleRelayTakesNoTransactionIDs: an idle relay must cost PostgreSQL no transaction ids and
// no WAL. Each lane reads its lane every poll interval with one read-only statement (no lock, no
// transaction id), owns it through a session advisory lock (no transaction id either), and
// writes its position only when events were acked. The old relay locked each lane's position
// row FOR UPDATE at least once a second per lane: 16 transaction ids a second. The relay still
// relays a new commit promptly.
func TestIdleRelayTakesNoTransactionIDs(t *testing.T) {
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

	time.Sleep(500 * time.Millisecond) // start-up: each lane takes its lock and reads once
	rt.reset()
	xid0, wal0 := clusterXIDAndWAL(t, url)
	const window = 2 * time.Second
	time.Sleep(window)
	xid1, wal1 := clusterXIDAndWAL(t, url)
	rt.mu.Lock()
	var reads int
	var writes []string
	all := append([]string(nil), rt.statements...)
	for _, b := range rt.batches {
		all = append(all, b...)
	}
	for _, q := range all {
		switch {
		case takesTransactionID(q):
			writes = append(writes, q)
		case strings.Contains(q, "FROM outbox_messages"):
			reads++
		}
	}
	rt.mu.Unlock()
	lanes := postgres.DefaultLanes
	intervals := int(window / cfg.PollInterval)
	t.Logf("idle for %s with %d lanes at a %s poll interval: %d reads, %d statements that take a transaction id; "+
		"meanwhile the whole cluster (every database, other tests included) assigned %d transaction ids and wrote %d bytes of WAL",
		window, lanes, cfg.PollInterval, reads, len(writes), xid1-xid0, wal1-wal0)
	if len(writes) > 0 {
		t.Errorf("an idle relay sent %d statements that take a transaction id, first %q", len(writes), writes[0])
	}
	if reads < lanes*intervals/2 {
		t.Errorf("only %d reads: the lanes are not checking every interval", reads)
	}

	// A commit is relayed at once: the notification wakes its lane.
	repo := repository(t, db, topic)
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

// clusterXIDAndWAL returns the next transaction id and the WAL insert position of the whole
// cluster, for the log: other databases on the server move them too. It asks on a connection
// of its own, which the relay's statement tracer does not see.
func clusterXIDAndWAL(t *testing.T, url string) (xid, wal int64) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(context.Background(),
		`SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint`).Scan(&xid, &wal)
	if err != nil {
		t.Fatal(err)
	}
	return xid, wal
}
