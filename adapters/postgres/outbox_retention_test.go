package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/internal/testkafka"
)

// retentionObserver counts what the retention job reports.
type retentionObserver struct {
	deleted atomic.Int64
	batches atomic.Int64
	mu      sync.Mutex
	size    postgres.OutboxTableStats
}

func (o *retentionObserver) OutboxRowsDeleted(n int64) { o.deleted.Add(n); o.batches.Add(1) }

func (o *retentionObserver) OutboxTableSize(s postgres.OutboxTableStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.size = s
}

// outboxRow inserts one outbox row in a transaction of its own (so every row has its own,
// increasing, transaction id) and returns its uuid.
func outboxRow(t *testing.T, db *postgres.DB, lane int, age time.Duration) string {
	t.Helper()
	var uuid string
	err := db.Pool.QueryRow(context.Background(), `INSERT INTO outbox_messages (lane, uuid, payload, metadata, transaction_id, created_at)
VALUES ($1, gen_random_uuid()::text, '\x7b7d', '{}', pg_current_xact_id(), now() - make_interval(secs => $2)) RETURNING uuid`,
		lane, age.Seconds()).Scan(&uuid)
	if err != nil {
		t.Fatal(err)
	}
	return uuid
}

// relayedUpTo sets the lane's position of group to the row uuid, as the relay's ack does.
func relayedUpTo(t *testing.T, db *postgres.DB, group string, lane int, uuid string) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_offsets (lane, consumer_group, offset_acked, last_processed_transaction_id)
SELECT lane, $2, "offset", transaction_id FROM outbox_messages WHERE uuid = $1
ON CONFLICT (lane, consumer_group) DO UPDATE SET offset_acked = excluded.offset_acked,
  last_processed_transaction_id = excluded.last_processed_transaction_id`, uuid, group)
	if err != nil {
		t.Fatal(err)
	}
}

func remaining(t *testing.T, db *postgres.DB) map[string]bool {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT uuid FROM outbox_messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		out[u] = true
	}
	return out
}

// TestOutboxRetentionDeletesOnlyOldRelayedRows: rows older than the retention at or before
// the relay's position go; recent rows, unrelayed rows (however old), rows of lanes the relay
// never acked and rows only another consumer group acked stay.
func TestOutboxRetentionDeletesOnlyOldRelayedRows(t *testing.T) {
	db, _ := migratedDB(t)
	const old, recent = 48 * time.Hour, time.Hour
	keep, gone := map[string]string{}, map[string]string{}

	// Lane 0, in commit order: old, recent, old, old | position | old, recent.
	gone[outboxRow(t, db, 0, old)] = "lane 0: old, relayed"
	keep[outboxRow(t, db, 0, recent)] = "lane 0: recent, relayed"
	gone[outboxRow(t, db, 0, old)] = "lane 0: old, relayed"
	last := outboxRow(t, db, 0, old)
	gone[last] = "lane 0: old, relayed (the position itself)"
	relayedUpTo(t, db, postgres.RelayConsumerGroup, 0, last)
	keep[outboxRow(t, db, 0, old+time.Hour)] = "lane 0: old but NOT relayed"
	keep[outboxRow(t, db, 0, recent)] = "lane 0: recent, not relayed"
	// Lane 1: old rows, no position at all: the relay has relayed nothing there.
	for range 3 {
		keep[outboxRow(t, db, 1, old)] = "lane 1: old, lane never relayed"
	}
	// Lane 2: old rows that only another consumer group acked.
	l2 := outboxRow(t, db, 2, old)
	keep[l2] = "lane 2: old, acked by another group only"
	relayedUpTo(t, db, "someone-else", 2, l2)
	// Lane 3: the relay's position row exists but has not moved (a relay that just started).
	keep[outboxRow(t, db, 3, old)] = "lane 3: old, position at the start"
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO outbox_offsets (lane, consumer_group) VALUES (3, $1)`, postgres.RelayConsumerGroup); err != nil {
		t.Fatal(err)
	}
	// Lane 4: eleven old relayed rows, deleted over several batches.
	var l4 string
	for range 11 {
		l4 = outboxRow(t, db, 4, old)
		gone[l4] = "lane 4: old, relayed"
	}
	relayedUpTo(t, db, postgres.RelayConsumerGroup, 4, l4)

	obs := &retentionObserver{}
	job, err := postgres.NewOutboxRetention(db, postgres.OutboxRetentionConfig{Retention: 24 * time.Hour, BatchSize: 4, BatchPause: time.Millisecond}, obs, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	n, err := job.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	left := remaining(t, db)
	for u, why := range keep {
		if !left[u] {
			t.Errorf("deleted a row it must keep: %s", why)
		}
	}
	for u, why := range gone {
		if left[u] {
			t.Errorf("kept a row it must delete: %s", why)
		}
	}
	if n != int64(len(gone)) || obs.deleted.Load() != n || obs.batches.Load() < 4 {
		t.Errorf("deleted %d, observer saw %d in %d batches; want %d in batches of at most 4", n, obs.deleted.Load(), obs.batches.Load(), len(gone))
	}
	if obs.size.Bytes <= 0 {
		t.Errorf("table size %+v not reported", obs.size)
	}
	// A second pass finds nothing more.
	if n, err := job.RunOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("second pass deleted %d, %v", n, err)
	}
	// The positions were not touched.
	var pos int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_offsets`).Scan(&pos); err != nil || pos != 4 {
		t.Fatalf("outbox_offsets rows: %d, %v", pos, err)
	}
}

// TestOutboxRetentionBesideALiveRelay: writers, the relay and a retention job that deletes
// every relayed row at once (tiny retention, tight interval) run together. Every committed
// event still reaches Kafka, so nothing unrelayed was ever deleted, and once the relay caught
// up the outbox empties.
func TestOutboxRetentionBesideALiveRelay(t *testing.T) {
	c := testkafka.Embedded(t)
	db, _ := migratedDB(t)
	topic := testkafka.CreateTopic(t, c, "retention", 6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relayDone := startRelay(t, ctx, db, c, postgres.RelayConfig{PollInterval: 20 * time.Millisecond, BatchSize: 50})
	obs := &retentionObserver{}
	job, err := postgres.NewOutboxRetention(db, postgres.OutboxRetentionConfig{Retention: time.Nanosecond, Interval: 5 * time.Millisecond, BatchSize: 7}, obs, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	jobDone := make(chan error, 1)
	go func() { jobDone <- job.Run(ctx) }()

	committed := writeLoad(t, db, topic, 16, 15)
	awaitEvents(t, c, topic, committed, 60*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, outbox := countOutbox(t, db)
		if outbox == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox rows left after the relay caught up", outbox)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := obs.deleted.Load(); got != int64(len(committed)) {
		t.Errorf("observer counted %d deleted rows, %d events were written", got, len(committed))
	}
	cancel()
	if err := <-jobDone; err != nil {
		t.Fatalf("retention job: %v", err)
	}
	if err := <-relayDone; err != nil {
		t.Fatalf("relay: %v", err)
	}
}

func countOutbox(t *testing.T, db *postgres.DB) (relayed, total int) {
	t.Helper()
	err := db.Pool.QueryRow(context.Background(), `SELECT
  (SELECT count(*) FROM outbox_messages m JOIN outbox_offsets o ON o.lane = m.lane AND o.consumer_group = $1
    WHERE (m.transaction_id, m."offset") <= (o.last_processed_transaction_id, o.offset_acked)),
  (SELECT count(*) FROM outbox_messages)`, postgres.RelayConsumerGroup).Scan(&relayed, &total)
	if err != nil {
		t.Fatal(err)
	}
	return relayed, total
}

func TestOutboxRetentionConfig(t *testing.T) {
	db, _ := migratedDB(t)
	for i, cfg := range []postgres.OutboxRetentionConfig{
		{Retention: -time.Hour},
		{Interval: -time.Second},
		{BatchSize: -1},
		{BatchSize: 2_000_000},
		{BatchPause: -time.Millisecond},
	} {
		if _, err := postgres.NewOutboxRetention(db, cfg, nil, nil); err == nil {
			t.Errorf("config %d %+v accepted", i, cfg)
		}
	}
	if _, err := postgres.NewOutboxRetention(nil, postgres.OutboxRetentionConfig{}, nil, nil); err == nil {
		t.Error("nil database accepted")
	}
	job, err := postgres.NewOutboxRetention(db, postgres.OutboxRetentionConfig{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// Cancelling stops Run promptly and cleanly.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	size, err := job.TableSize(context.Background())
	if err != nil || size.Bytes <= 0 {
		t.Fatalf("table size %+v, %v", size, err)
	}
}
