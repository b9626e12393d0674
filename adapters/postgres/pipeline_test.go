package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
)

// roundTrips counts what pgx sends: each statement outside a batch, and each batch, is one
// round trip.
type roundTrips struct {
	mu         sync.Mutex
	statements []string
	batches    [][]string
	inBatch    []string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statements = append(r.statements, d.SQL)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inBatch = []string{}
	return ctx
}

func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inBatch = append(r.inBatch, d.SQL)
}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, r.inBatch)
	r.inBatch = nil
}

func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statements, r.batches = nil, nil
}

func (r *roundTrips) count() (statements, batches int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statements), len(r.batches)
}

// tracedDB is a migrated database opened with a round-trip counter and a small pool, so a
// connection left inside a transaction would be handed out again and fail the next test step.
func tracedDB(t *testing.T) (*postgres.DB, *roundTrips) {
	t.Helper()
	url := testenv.NewDatabase(t)
	ctx := context.Background()
	rt := &roundTrips{}
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 2, Tracer: rt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, quietLog()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE pipe (k int PRIMARY KEY, v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	rt.reset()
	return db, rt
}

// TestPipelinedCreateIsOneRoundTrip: BEGIN, the product row, the outbox row written by
// watermill-sql's publisher and COMMIT leave in one batch; an update reads its row first.
func TestPipelinedCreateIsOneRoundTrip(t *testing.T) {
	db, rt := tracedDB(t)
	ctx := context.Background()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := product.New(product.NewID(now), details(t, "PIPE-1", 100), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Add(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	if s, b := rt.count(); s != 0 || b != 1 || len(rt.batches[0]) != 4 {
		t.Fatalf("create sent %d statements and batches %v, want one batch of begin, product, outbox, commit", s, rt.batches)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox_messages`); got != 1 {
		t.Fatalf("outbox rows = %d, want 1", got)
	}

	rt.reset()
	if _, err := repo.Update(ctx, p.ID(), func(_ context.Context, q *product.Product) (*product.Product, error) {
		return q, q.ChangeStock(7, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	s, b := rt.count()
	t.Logf("update: %d statements, batches %v", s, rt.batches)
	if s+b > 4 {
		t.Fatalf("update took %d round trips, want at most 4 (begin, select for update, update, outbox+commit)", s+b)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox_messages`); got != 2 {
		t.Fatalf("outbox rows = %d, want 2", got)
	}
}

// TestPipelinedErrorsArriveAndLeaveTheConnectionClean: a failing statement's error (the
// server's own, for constraint mapping) arrives at the next point that sends, nothing of the
// transaction is kept, and the connection goes back to the pool usable.
func TestPipelinedErrorsArriveAndLeaveTheConnectionClean(t *testing.T) {
	db, _ := tracedDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO pipe VALUES (1, 'one')`); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 4; round++ { // more rounds than pooled connections
		tx, err := db.Writes.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES (2, 'two')`); err != nil {
			t.Fatalf("queued exec: %v", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES (1, 'again')`); err != nil {
			t.Fatalf("queued exec: %v", err)
		}
		err = tx.Commit()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Fatalf("commit = %v, want the unique violation of the second insert", err)
		}
		if got := count(t, db, `SELECT count(*) FROM pipe`); got != 1 {
			t.Fatalf("rows = %d after a failed transaction, want 1", got)
		}
	}
	// The same failure seen through RowsAffected, then a rollback.
	tx, err := db.Writes.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES (1, 'dup')`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.RowsAffected(); err == nil {
		t.Fatal("RowsAffected of a failed insert returned no error")
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES (3, 'three')`); err == nil {
		t.Fatal("exec after a failure in the transaction succeeded")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var idleInTx int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&idleInTx); err != nil {
		t.Fatal(err)
	}
	if idleInTx != 0 {
		t.Fatalf("%d connections left inside a transaction", idleInTx)
	}
}

// TestPipelinedStatementsKeepTheirOrder: a query sees the queued writes before it, a row
// count sends the queue, a rollback of a transaction that sent nothing sends nothing, and a
// read-only transaction (not pipelined) works as usual.
func TestPipelinedStatementsKeepTheirOrder(t *testing.T) {
	db, rt := tracedDB(t)
	ctx := context.Background()
	tx, err := db.Writes.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[int]string{10: "a", 11: "b"} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES ($1, $2)`, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if s, b := rt.count(); s+b != 0 {
		t.Fatalf("queued statements were sent early: %d statements, %d batches", s, b)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pipe`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("query inside the transaction saw %d rows (%v), want the 2 queued before it", n, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE pipe SET v = 'z'`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := res.RowsAffected(); err != nil || got != 2 {
		t.Fatalf("RowsAffected = %d, %v; want 2", got, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, `SELECT count(*) FROM pipe WHERE v = 'z'`); got != 2 {
		t.Fatalf("committed rows = %d, want 2", got)
	}

	rt.reset()
	tx, err = db.Writes.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pipe VALUES (12, 'never')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if s, b := rt.count(); s+b != 0 {
		t.Fatalf("a rollback of an unsent transaction sent %d statements and %d batches", s, b)
	}
	if got := count(t, db, `SELECT count(*) FROM pipe`); got != 2 {
		t.Fatalf("rows = %d after the rollback, want 2", got)
	}

	ro, err := db.Writes.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.ExecContext(ctx, `INSERT INTO pipe VALUES (13, 'ro')`); err == nil {
		t.Fatal("a write in a read-only transaction succeeded")
	}
	_ = ro.Rollback()
}
