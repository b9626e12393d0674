package postgres_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
)

func newOpsStats(t *testing.T, db *postgres.DB, lanes int) *postgres.OpsStats {
	t.Helper()
	s, err := postgres.NewOpsStats(db, postgres.OpsStatsConfig{Lanes: lanes})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func outboxStats(t *testing.T, s *postgres.OpsStats) ops.OutboxStats {
	t.Helper()
	st, err := s.OutboxStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func laneOf(st ops.OutboxStats, lane int) (ops.OutboxLane, bool) {
	for _, l := range st.Lanes {
		if l.Lane == lane {
			return l, true
		}
	}
	return ops.OutboxLane{}, false
}

// The backlog grows with every committed event while no relay runs, per lane, and shrinks
// by exactly what a relay position passes; lanes beyond the configured count show up when
// they hold events.
func TestOpsOutboxBacklogGrowsWithoutRelay(t *testing.T) {
	db, _ := migratedDB(t)
	lanes := postgres.DefaultLanes // the repository's
	stats := newOpsStats(t, db, lanes)
	repo := newRepo(t, db)

	empty := outboxStats(t, stats)
	if empty.Backlog != 0 || empty.OldestAge != 0 || len(empty.Lanes) != lanes || empty.TableBytes <= 0 {
		t.Fatalf("empty outbox: %+v", empty)
	}
	for _, l := range empty.Lanes {
		if l.RelayStarted || l.Backlog != 0 {
			t.Fatalf("lane before any relay: %+v", l)
		}
	}

	for i := range 5 {
		addProduct(t, repo, "OPS-"+string(rune('A'+i)))
	}
	five := outboxStats(t, stats)
	if five.Backlog != 5 {
		t.Fatalf("backlog %d after 5 events, want 5 (%+v)", five.Backlog, five.Lanes)
	}
	for i := range 3 {
		addProduct(t, repo, "OPS-"+string(rune('a'+i)))
	}
	eight := outboxStats(t, stats)
	if eight.Backlog != 8 || eight.OldestCreatedAt.IsZero() || eight.OldestAge <= 0 {
		t.Fatalf("backlog after 8 events: %+v", eight)
	}
	var sum int64
	for _, l := range eight.Lanes {
		sum += l.Backlog
	}
	if sum != 8 {
		t.Fatalf("lanes sum to %d", sum)
	}

	// An old event: its age is the outbox's oldest.
	old := outboxRow(t, db, 3, 2*time.Minute)
	withOld := outboxStats(t, stats)
	if withOld.Backlog != 9 || withOld.OldestAge < 2*time.Minute || withOld.OldestAge > 3*time.Minute {
		t.Fatalf("oldest age %s (backlog %d), want about 2m", withOld.OldestAge, withOld.Backlog)
	}
	lane3, _ := laneOf(withOld, 3)

	// The relay passes lane 3 up to the old row (and what came before it in lane 3).
	relayedUpTo(t, db, postgres.RelayConsumerGroup, 3, old)
	after := outboxStats(t, stats)
	l3, _ := laneOf(after, 3)
	if !l3.RelayStarted || l3.Backlog != 0 || l3.RelayedOffset == 0 || l3.RelayedTransactionID == "" || l3.RelayedAt.IsZero() {
		t.Fatalf("lane 3 after the relay passed it: %+v", l3)
	}
	if after.Backlog != withOld.Backlog-lane3.Backlog || after.OldestAge >= 2*time.Minute {
		t.Fatalf("backlog %d (was %d, lane 3 had %d), oldest %s", after.Backlog, withOld.Backlog, lane3.Backlog, after.OldestAge)
	}
	// Another consumer group's position is not the relay's.
	relayedUpTo(t, db, "someone-else", 4, old)
	if again := outboxStats(t, stats); again.Backlog != after.Backlog {
		t.Fatalf("another group's position changed the backlog: %d -> %d", after.Backlog, again.Backlog)
	}

	// A lane beyond OUTBOX_LANES (writers configured with more lanes than the relays).
	outboxRow(t, db, lanes+4, 0)
	stray := outboxStats(t, stats)
	ls, ok := laneOf(stray, lanes+4)
	if !ok || ls.Backlog != 1 || len(stray.Lanes) != lanes+1 {
		t.Fatalf("stray lane: %+v (lanes %+v)", ls, stray.Lanes)
	}
}

// A transaction held open by the test is reported with its pid, age, state and the start of
// its last statement, never the statement's text; one that has written holds back the
// outbox, a read-only one does not.
func TestOpsLongTransactionDetected(t *testing.T) {
	db, _ := migratedDB(t)
	stats := newOpsStats(t, db, 8)
	ctx := context.Background()

	hold := func(query string) (pgx.Tx, int32) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		var pid int32
		if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, query); err != nil {
			t.Fatal(err)
		}
		return tx, pid
	}
	_, writer := hold(`SELECT pg_current_xact_id() /* ops test writer */`)
	_, reader := hold(`SELECT count(*) FROM products /* ops test reader */`)
	time.Sleep(400 * time.Millisecond)

	txs, err := stats.LongTransactions(ctx, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	byPID := map[int32]ops.LongTransaction{}
	for _, tx := range txs {
		byPID[tx.PID] = tx
	}
	w, ok := byPID[writer]
	if !ok {
		t.Fatalf("writing transaction of pid %d not reported: %+v", writer, txs)
	}
	if !w.HoldsBackOutbox || w.State != "idle in transaction" || w.Age < 400*time.Millisecond || w.Age > time.Minute ||
		w.Started.IsZero() || w.QueryStarted.Before(w.Started) || w.Database == "" || w.BackendType != "client backend" || w.PreparedGID != "" {
		t.Errorf("writer %+v", w)
	}
	r, ok := byPID[reader]
	if !ok || r.HoldsBackOutbox {
		t.Errorf("reader %+v (found %v)", r, ok)
	}
	if text := fmt.Sprintf("%+v", txs); strings.Contains(text, "ops test") {
		t.Errorf("statement text reported: %s", text)
	}
	if !slices.IsSortedFunc(txs, func(a, b ops.LongTransaction) int { return a.Started.Compare(b.Started) }) {
		t.Errorf("not oldest first: %+v", txs)
	}

	// Younger than the threshold: not reported.
	txs, err = stats.LongTransactions(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range txs {
		if tx.PID == writer || tx.PID == reader {
			t.Errorf("transaction younger than an hour reported: %+v", tx)
		}
	}
}

// The relay's visibility rule is cluster-wide: a writing transaction open in another
// database of the same server holds it back just as much, and is reported, with its
// database, and counted by the blocking-transaction age; a read-only transaction there,
// which does not move pg_snapshot_xmin, is neither.
func TestOpsTransactionInAnotherDatabaseHoldsBackTheRelay(t *testing.T) {
	db, _ := migratedDB(t)
	stats := newOpsStats(t, db, 8)
	ctx := context.Background()
	otherURL := testenv.NewDatabase(t)
	other, err := pgx.Connect(ctx, otherURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	reader, err := pgx.Connect(ctx, otherURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close(context.Background()) })
	if _, err := reader.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class`); err != nil {
		t.Fatal(err)
	}
	var otherDB string
	var writer int32
	if err := other.QueryRow(ctx, `SELECT current_database(), pg_backend_pid()`).Scan(&otherDB, &writer); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `BEGIN; CREATE TABLE held (id int); INSERT INTO held VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	outboxRow(t, db, 0, 0) // committed here, after the other database's transaction began
	time.Sleep(300 * time.Millisecond)

	var passable int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())`).Scan(&passable); err != nil {
		t.Fatal(err)
	}
	if passable != 0 {
		t.Fatalf("%d rows passable while a writing transaction is open in %s", passable, otherDB)
	}
	txs, err := stats.LongTransactions(ctx, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var found *ops.LongTransaction
	for i, tx := range txs {
		if tx.PID == writer {
			found = &txs[i]
		}
		if tx.Database == otherDB && tx.PID != writer {
			t.Errorf("a read-only transaction of another database is reported: %+v", tx)
		}
	}
	if found == nil || !found.HoldsBackOutbox || found.Database != otherDB || found.User == "" || found.Age < 300*time.Millisecond {
		t.Fatalf("the other database's writer (pid %d in %s) is not reported as holding the relay back: %+v", writer, otherDB, txs)
	}
	if st := outboxStats(t, stats); st.BlockingTransactionAge < 300*time.Millisecond || st.BlockingTransactionAge > found.Age+time.Minute {
		t.Errorf("blocking transaction age %s, want about %s", st.BlockingTransactionAge, found.Age)
	}
	if _, err := other.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if st := outboxStats(t, stats); st.BlockingTransactionAge > time.Second {
		t.Errorf("blocking transaction age %s after the commit, want about 0", st.BlockingTransactionAge)
	}
}

// A database role without pg_read_all_stats does not see other roles' transactions, so it
// cannot name one that holds the relay back; the outbox statistics still show the events
// waiting behind it, and the transaction id they wait for, so status can say so.
func TestOpsHiddenTransactionStillShowsAsHeldBackEvents(t *testing.T) {
	db, url := migratedDB(t)
	ctx := context.Background()
	role := strings.ToLower(testenv.Name("catalog_ops"))
	if _, err := db.Pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `REVOKE ALL ON ALL TABLES IN SCHEMA public FROM `+role+`; DROP ROLE IF EXISTS `+role)
	})
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.User(role)
	limited, err := postgres.Open(ctx, postgres.Config{URL: u.String(), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(limited.Close)
	stats := newOpsStats(t, limited, 8)

	other, err := pgx.Connect(ctx, testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	var xid string
	if _, err := other.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if err := other.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = other.Exec(context.Background(), `ROLLBACK`) })
	outboxRow(t, db, 0, 2*time.Minute) // committed after the hidden transaction took its id
	outboxRow(t, db, 3, 5*time.Second)

	txs, err := stats.LongTransactions(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range txs {
		if tx.HoldsBackOutbox {
			t.Fatalf("the role sees the other role's transaction after all (%+v): this test needs a role that cannot", tx)
		}
	}
	// The transaction id is cluster-wide: a short transaction of a test running beside this
	// one (another package, another database) can be older than ours for a moment, so the
	// checks wait for the cluster to settle on ours instead of sampling once.
	var st ops.OutboxStats
	eventually(t, 20*time.Second, "the events to be reported as held back by the hidden transaction", func() bool {
		st = outboxStats(t, stats)
		return st.HeldBack == 2 && st.HeldBackAge >= 2*time.Minute && st.HeldBackAge <= 3*time.Minute && st.OldestRunningTransactionID == xid
	})
	if _, err := other.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "nothing held back after the rollback", func() bool {
		st = outboxStats(t, stats)
		return st.HeldBack == 0 && st.HeldBackAge == 0 && st.Backlog == 2
	})
}

// The relay cannot pass an open writing transaction: an event committed after it began
// stays in the backlog, and status explains why.
func TestOpsOpenTransactionHoldsBackEvents(t *testing.T) {
	db, _ := migratedDB(t)
	stats := newOpsStats(t, db, 8)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	outboxRow(t, db, 0, 0) // committed, but after the open transaction's id
	// What the relay's poll sees: nothing below the oldest running transaction.
	var passable int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())`).Scan(&passable); err != nil {
		t.Fatal(err)
	}
	if passable != 0 {
		t.Fatalf("%d rows passable with an older transaction open", passable)
	}
	if st := outboxStats(t, stats); st.Backlog != 1 {
		t.Fatalf("backlog %d, want the held-back event", st.Backlog)
	}
}

func TestOpsProductCountsAndVersions(t *testing.T) {
	db, _ := migratedDB(t)
	stats := newOpsStats(t, db, 8)
	ctx := context.Background()
	const rows = 2500
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (id, sku, name, price_amount, price_currency, stock, version, created_at, updated_at, deleted_at)
SELECT gen_random_uuid(), 'OPS-' || g, 'n', 1, 'EUR', 1, 1 + g % 4, now(), now(), CASE WHEN g % 5 = 0 THEN now() END
FROM generate_series(1, $1::int) AS g`, rows); err != nil {
		t.Fatal(err)
	}
	c, err := stats.ProductCounts(ctx)
	if err != nil || c.Total != rows || c.Live != rows-rows/5 {
		t.Fatalf("counts %+v, %v", c, err)
	}

	var all []string
	deleted := 0
	after := ""
	for {
		page, err := stats.ProductVersions(ctx, after, 300)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			all = append(all, d.ID)
			if d.Deleted {
				deleted++
			}
			if d.Version < 1 || d.Version > 4 {
				t.Fatalf("version %d", d.Version)
			}
		}
		after = page[len(page)-1].ID
	}
	if len(all) != rows || deleted != rows/5 || !sort.StringsAreSorted(all) || len(slices.Compact(slices.Clone(all))) != rows {
		t.Fatalf("paged %d rows (%d deleted), sorted %v", len(all), deleted, sort.StringsAreSorted(all))
	}
	if _, err := stats.ProductVersions(ctx, "not-a-uuid", 10); err == nil {
		t.Error("a non-UUID position was accepted")
	}

	got, err := stats.ProductVersionsByID(ctx, []string{all[0], all[17], "00000000-0000-0000-0000-000000000000", "garbage", strings.ToUpper(all[5])})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, d := range got {
		ids[d.ID] = true
	}
	if len(got) != 3 || !ids[all[0]] || !ids[all[17]] || !ids[all[5]] {
		t.Fatalf("by id: %+v", got)
	}
	if got, err := stats.ProductVersionsByID(ctx, []string{"garbage"}); err != nil || len(got) != 0 {
		t.Fatalf("only invalid ids: %+v, %v", got, err)
	}
}

func TestNewOpsStatsChecksItsInputs(t *testing.T) {
	if _, err := postgres.NewOpsStats(nil, postgres.OpsStatsConfig{}); err == nil {
		t.Error("nil database accepted")
	}
	if _, err := postgres.NewOpsStats(&postgres.DB{}, postgres.OpsStatsConfig{Lanes: 65}); err == nil {
		t.Error("nil pool accepted")
	}
}
