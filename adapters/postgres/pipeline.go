package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Pipelined transactions.
//
// A product write is BEGIN, the row, the outbox row (through watermill-sql's publisher on the
// *sql.Tx) and COMMIT. Sent one by one, that is four round trips to PostgreSQL, each a write,
// a wake-up and a read on both sides; on a small machine the round trips, not the work, are
// most of a write's latency. The database/sql driver below keeps database/sql's contract (the
// repository and the publisher still see an ordinary *sql.Tx) but sends a transaction's
// statements as late as their results allow, in one pipeline (a pgx.Batch, PostgreSQL's
// extended-protocol pipelining):
//
//   - BeginTx sends nothing; BEGIN goes out with the first statement that is sent.
//   - ExecContext queues the statement and returns a Result that sends the queue when its
//     RowsAffected is asked for.
//   - QueryContext, PrepareContext and anything else that needs the server sends the queue
//     first, then runs as usual.
//   - Commit sends the queue and COMMIT together; Rollback of a transaction that sent nothing
//     sends nothing.
//
// A create is thus one round trip. What changes for the caller is only when a queued
// statement's error is seen: at the next point that sends (RowsAffected, a query, Commit),
// not at ExecContext. Any error aborts the transaction as it would have anyway; the error
// returned is the statement's own (a *pgconn.PgError), so constraint mapping is unchanged.

// openPipelinedDB is a database/sql view of pool whose transactions are pipelined.
func openPipelinedDB(pool *pgxpool.Pool) *sql.DB {
	db := sql.OpenDB(pipelineConnector{inner: stdlib.GetPoolConnector(pool)})
	// Connections are the pgx pool's: database/sql must not keep any idle (as OpenDBFromPool).
	db.SetMaxIdleConns(0)
	return db
}

type pipelineConnector struct{ inner driver.Connector }

func (c pipelineConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	conn, ok := dc.(*stdlib.Conn)
	if !ok {
		_ = dc.Close()
		return nil, fmt.Errorf("postgres: pipelined driver needs pgx's stdlib connection, got %T", dc)
	}
	return &pipelineConn{Conn: conn}, nil
}

func (c pipelineConnector) Driver() driver.Driver { return c.inner.Driver() }

// pipelineConn is pgx's stdlib connection with pipelined transactions. Methods it does not
// override (Ping, CheckNamedValue, IsValid, Close) are the stdlib connection's.
type pipelineConn struct {
	*stdlib.Conn
	tx *pipelineTx // the open pipelined transaction; nil outside one
}

// queued is a statement waiting to be sent.
type queued struct {
	sql  string
	args []any
	res  *pipelineResult // nil for BEGIN and COMMIT
}

// pipelineTx is an open transaction and its statements not yet sent.
type pipelineTx struct {
	c       *pipelineConn
	ctx     context.Context // the context the transaction was begun with, as stdlib's Tx keeps
	pending []queued
	begun   bool  // BEGIN has been sent
	err     error // the first error: the transaction is aborted
}

// Begin implements driver.Conn (the pre-context interface database/sql no longer calls).
func (c *pipelineConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx defers BEGIN for read-write transactions of the default isolation level, the only
// kind the repository opens; others begin at once, unpipelined.
func (c *pipelineConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.tx != nil {
		return nil, errors.New("postgres: a transaction is already open on this connection")
	}
	if c.Conn.Conn().IsClosed() {
		return nil, driver.ErrBadConn // database/sql retries on another connection
	}
	if opts.Isolation != driver.IsolationLevel(sql.LevelDefault) || opts.ReadOnly {
		return c.Conn.BeginTx(ctx, opts)
	}
	c.tx = &pipelineTx{c: c, ctx: ctx, pending: []queued{{sql: "begin"}}}
	return c.tx, nil
}

// ExecContext queues the statement inside a pipelined transaction.
func (c *pipelineConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.tx == nil {
		return c.Conn.ExecContext(ctx, query, args)
	}
	if c.tx.err != nil {
		return nil, c.tx.err
	}
	res := &pipelineResult{tx: c.tx, ctx: ctx}
	c.tx.pending = append(c.tx.pending, queued{sql: query, args: namedValues(args), res: res})
	return res, nil
}

// QueryContext sends what is queued, then queries.
func (c *pipelineConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.tx != nil {
		if err := c.tx.flush(ctx, false); err != nil {
			return nil, err
		}
	}
	return c.Conn.QueryContext(ctx, query, args)
}

// PrepareContext sends what is queued first: a prepared statement runs on the connection
// directly.
func (c *pipelineConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if c.tx != nil {
		if err := c.tx.flush(ctx, false); err != nil {
			return nil, err
		}
	}
	return c.Conn.PrepareContext(ctx, query)
}

// Prepare implements driver.Conn.
func (c *pipelineConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// ResetSession refuses a connection returned with a transaction still open.
func (c *pipelineConn) ResetSession(ctx context.Context) error {
	if c.tx != nil {
		return driver.ErrBadConn
	}
	return c.Conn.ResetSession(ctx)
}

// flush sends the queued statements (and COMMIT when commit is set) in one pipeline and
// records each statement's result. After an error the transaction is aborted; the error is
// returned now and by every later call.
func (tx *pipelineTx) flush(ctx context.Context, commit bool) error {
	if tx.err != nil {
		return tx.err
	}
	if commit {
		if !tx.begun && len(tx.pending) == 1 {
			tx.pending = nil // nothing was written: nothing to send
			return nil
		}
		tx.pending = append(tx.pending, queued{sql: "commit"})
	}
	if len(tx.pending) == 0 {
		return nil
	}
	pending := tx.pending
	tx.pending = nil
	b := &pgx.Batch{}
	for _, q := range pending {
		b.Queue(q.sql, q.args...)
	}
	br := tx.c.Conn.Conn().SendBatch(ctx, b)
	var first error
	for _, q := range pending {
		tag, err := br.Exec()
		switch {
		case first != nil:
			// Skipped by the server after the failure.
		case err != nil:
			first = err
		case q.sql == "begin":
			tx.begun = true
		case q.sql == "commit" && tag.String() == "ROLLBACK":
			first = pgx.ErrTxCommitRollback
		case q.res != nil:
			q.res.rows, q.res.done = tag.RowsAffected(), true
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		tx.err = first
		for _, q := range pending {
			if q.res != nil && !q.res.done {
				q.res.err, q.res.done = first, true
			}
		}
	}
	return first
}

// Commit sends the queue and COMMIT in one round trip.
func (tx *pipelineTx) Commit() error {
	defer tx.end()
	if err := tx.flush(tx.ctx, true); err != nil {
		// The statement's error is the one to report; a failed rollback leaves the
		// connection inside a transaction, which ResetSession then refuses back into use.
		_ = tx.rollbackSent()
		return err
	}
	return nil
}

// Rollback discards the queue, and rolls back on the server only when BEGIN was sent.
func (tx *pipelineTx) Rollback() error {
	defer tx.end()
	tx.pending = nil
	return tx.rollbackSent()
}

// rollbackSent ends a transaction the server knows of and has not ended, so the connection
// goes back to the pool idle.
func (tx *pipelineTx) rollbackSent() error {
	conn := tx.c.Conn.Conn()
	if !tx.begun || conn.PgConn().TxStatus() == 'I' {
		return nil
	}
	_, err := conn.Exec(tx.ctx, "rollback")
	return err
}

func (tx *pipelineTx) end() {
	if tx.c.tx == tx {
		tx.c.tx = nil
	}
}

// pipelineResult is a queued statement's result; asking for it sends the queue.
type pipelineResult struct {
	tx   *pipelineTx
	ctx  context.Context
	done bool
	rows int64
	err  error
}

// RowsAffected sends the queue if this statement has not been sent yet.
func (r *pipelineResult) RowsAffected() (int64, error) {
	if !r.done {
		if err := r.tx.flush(r.ctx, false); err != nil && !r.done {
			return 0, err
		}
	}
	return r.rows, r.err
}

// LastInsertId is not supported by PostgreSQL, as with pgx's own driver.
func (r *pipelineResult) LastInsertId() (int64, error) {
	return 0, errors.New("postgres: LastInsertId is not supported")
}

func namedValues(args []driver.NamedValue) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a.Value
	}
	return out
}
