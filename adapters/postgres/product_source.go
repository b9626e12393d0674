package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	apprebuild "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

var _ apprebuild.ProductSource = (*ProductSource)(nil)

// ProductSource implements rebuild.ProductSource: the database as the default rebuild source
// (docs/ARCHITECTURE.md, "Rebuild"). It reads through pgx directly, which decodes rows in the binary format
// and is markedly faster than database/sql for a full scan.
type ProductSource struct {
	db *DB
}

// NewProductSource returns a source over db.
func NewProductSource(db *DB) (*ProductSource, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("product source: nil database")
	}
	return &ProductSource{db: db}, nil
}

// recordSnapshot replaces rebuildID's recorded rows with (id, version, deleted) of every
// product as of tx's snapshot. Replacing, not appending, lets a retried Stream or Record of the
// same rebuild start over instead of failing on the primary key.
const (
	forgetSnapshot = `DELETE FROM rebuild_snapshots WHERE rebuild_id = $1`
	recordSnapshot = `INSERT INTO rebuild_snapshots (rebuild_id, id, version, deleted)
SELECT $1, id, version, deleted_at IS NOT NULL FROM products`
)

// Stream implements rebuild.ProductSource. Everything happens in one REPEATABLE READ
// transaction, so the recorded rows and the streamed products are the same snapshot; it is
// read-write because the recorded rows are written in it and committed at the end. Products
// are read through a server-side cursor, one FETCH per batch, so memory stays constant however
// many products there are, and fn may take as long as it needs between fetches (statement and
// idle-in-transaction timeouts are lifted for this transaction only). The transaction's
// snapshot holds back vacuum for the duration of the fill; that is the price of consistency.
func (s *ProductSource) Stream(ctx context.Context, rebuildID string, batchSize int, fn func([]product.Snapshot) error) (n int64, err error) {
	if rebuildID == "" || batchSize < 1 {
		return 0, fmt.Errorf("product source: stream: %w: rebuild id %q, batch size %d", rebuild.ErrInvalid, rebuildID, batchSize)
	}
	// The stream runs in a READ ONLY transaction, which gets no transaction id: a transaction
	// with one, open for the whole fill, would be older than every commit meanwhile, and the
	// outbox relay never passes an open transaction, so live updates would stall until the
	// fill ends. The snapshot is exported and recorded by a second, short transaction that
	// imports it, so the recorded rows are exactly the streamed ones.
	tx, err := s.beginSnapshot(ctx, pgx.ReadOnly)
	if err != nil {
		return 0, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // a no-op after Commit
	var snapshotID string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshotID); err != nil {
		return 0, fmt.Errorf("product source: stream %s: export snapshot: %w", rebuildID, err)
	}
	recorded, err := s.recordIn(ctx, rebuildID, snapshotID)
	if err != nil {
		return 0, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
	}
	defer func() {
		if err != nil { // the record is only meaningful for a complete stream
			_ = s.Forget(context.Background(), rebuildID)
		}
	}()
	if _, err := tx.Exec(ctx, `DECLARE rebuild_products NO SCROLL CURSOR FOR SELECT `+productColumns+` FROM products ORDER BY id`); err != nil {
		return 0, fmt.Errorf("product source: stream %s: declare cursor: %w", rebuildID, err)
	}
	fetch := fmt.Sprintf(`FETCH FORWARD %d FROM rebuild_products`, batchSize) // FETCH takes no parameters
	for {
		batch, err := fetchBatch(ctx, tx, fetch, batchSize)
		if err != nil {
			return n, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
		}
		if len(batch) == 0 {
			break
		}
		n += int64(len(batch))
		if err := fn(batch); err != nil {
			return n, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
		}
		if len(batch) < batchSize {
			break // the cursor is exhausted; spare the empty round trip
		}
	}
	if n != recorded {
		// Impossible within one snapshot; if it happens, validation would be meaningless.
		return n, fmt.Errorf("product source: stream %s: streamed %d products but recorded %d", rebuildID, n, recorded)
	}
	if err := tx.Commit(ctx); err != nil {
		return n, fmt.Errorf("product source: stream %s: commit: %w", rebuildID, err)
	}
	return n, nil
}

// fetchBatch reads one batch from the cursor into a fresh slice: the caller may keep it (an
// asynchronous bulk writer, say) while the next batch is read.
func fetchBatch(ctx context.Context, tx pgx.Tx, fetch string, batchSize int) ([]product.Snapshot, error) {
	rows, err := tx.Query(ctx, fetch)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer rows.Close()
	batch := make([]product.Snapshot, 0, batchSize)
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, err
		}
		batch = append(batch, p.Snapshot())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return batch, nil
}

// Record implements rebuild.ProductSource for Kafka-sourced rebuilds, which need the snapshot
// for validation but read the products themselves from the log.
func (s *ProductSource) Record(ctx context.Context, rebuildID string) (int64, error) {
	if rebuildID == "" {
		return 0, fmt.Errorf("product source: record: %w: empty rebuild id", rebuild.ErrInvalid)
	}
	tx, err := s.beginSnapshot(ctx, pgx.ReadWrite)
	if err != nil {
		return 0, fmt.Errorf("product source: record %s: %w", rebuildID, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	n, err := record(ctx, tx, rebuildID)
	if err != nil {
		return 0, fmt.Errorf("product source: record %s: %w", rebuildID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("product source: record %s: commit: %w", rebuildID, err)
	}
	return n, nil
}

func (s *ProductSource) beginSnapshot(ctx context.Context, mode pgx.TxAccessMode) (pgx.Tx, error) {
	tx, err := s.db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: mode})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	// A rebuild's snapshot legitimately lives as long as the fill: neither a server-wide
	// statement timeout nor an idle-in-transaction timeout (while fn writes a batch) may kill it.
	if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0`); err != nil {
		_ = tx.Rollback(context.Background())
		return nil, fmt.Errorf("lift timeouts: %w", err)
	}
	return tx, nil
}

// recordIn records the products of an exported snapshot in a short transaction of its own.
func (s *ProductSource) recordIn(ctx context.Context, rebuildID, snapshotID string) (int64, error) {
	tx, err := s.db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadWrite})
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// SET TRANSACTION SNAPSHOT must be the transaction's first statement and takes no
	// parameters; the id comes from pg_export_snapshot, not from a user.
	if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+strings.ReplaceAll(snapshotID, "'", "")+`'`); err != nil {
		return 0, fmt.Errorf("import snapshot: %w", err)
	}
	n, err := record(ctx, tx, rebuildID)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit snapshot record: %w", err)
	}
	return n, nil
}

func record(ctx context.Context, tx pgx.Tx, rebuildID string) (int64, error) {
	if _, err := tx.Exec(ctx, forgetSnapshot, rebuildID); err != nil {
		return 0, fmt.Errorf("clear snapshot: %w", err)
	}
	tag, err := tx.Exec(ctx, recordSnapshot, rebuildID)
	if err != nil {
		return 0, fmt.Errorf("record snapshot: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Recorded implements rebuild.ProductSource. Rows come in uuid order, which for canonical
// (lower-case) ids is exactly byte-wise string order, the order of an Elasticsearch keyword
// sort and of Go's string comparison, so the caller can merge-join the pages with the index's.
// afterID "" starts at the beginning; any other afterID must be a UUID.
func (s *ProductSource) Recorded(ctx context.Context, rebuildID, afterID string, limit int) ([]apprebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("product source: recorded %s: %w: limit %d", rebuildID, rebuild.ErrInvalid, limit)
	}
	q := `SELECT id, version, deleted FROM rebuild_snapshots WHERE rebuild_id = $1 ORDER BY id LIMIT $2`
	args := []any{rebuildID, limit}
	if afterID != "" {
		after, err := product.ParseID(afterID)
		if err != nil {
			return nil, fmt.Errorf("product source: recorded %s: %w: after %w", rebuildID, rebuild.ErrInvalid, err)
		}
		q = `SELECT id, version, deleted FROM rebuild_snapshots WHERE rebuild_id = $1 AND id > $3 ORDER BY id LIMIT $2`
		args = append(args, after.String())
	}
	rows, err := s.db.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("product source: recorded %s: %w", rebuildID, err)
	}
	page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (apprebuild.DocVersion, error) {
		var d apprebuild.DocVersion
		err := row.Scan(&d.ID, &d.Version, &d.Deleted)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("product source: recorded %s: %w", rebuildID, err)
	}
	return page, nil
}

// Known implements rebuild.ProductSource. The map holds true for every given id that names a
// product now, live or tombstone, keyed as given; ids that are not UUIDs cannot name a product
// and are simply absent, so one malformed document id cannot fail a whole validation.
func (s *ProductSource) Known(ctx context.Context, ids []string) (map[string]bool, error) {
	given := make(map[string][]string, len(ids)) // canonical id -> the spellings asked for
	canonical := make([]string, 0, len(ids))
	for _, id := range ids {
		c, err := product.ParseID(id)
		if err != nil {
			continue
		}
		if _, dup := given[c.String()]; !dup {
			canonical = append(canonical, c.String())
		}
		given[c.String()] = append(given[c.String()], id)
	}
	known := make(map[string]bool, len(canonical))
	if len(canonical) == 0 {
		return known, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT id FROM products WHERE id = ANY($1::uuid[])`, canonical)
	if err != nil {
		return nil, fmt.Errorf("product source: known: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("product source: known: %w", err)
	}
	for _, id := range found {
		for _, asked := range given[id] {
			known[asked] = true
		}
	}
	return known, nil
}

// Forget implements rebuild.ProductSource; a rebuild calls it when it ends, on every path, so
// the scratch rows do not pile up.
func (s *ProductSource) Forget(ctx context.Context, rebuildID string) error {
	if _, err := s.db.Pool.Exec(ctx, forgetSnapshot, rebuildID); err != nil {
		return fmt.Errorf("product source: forget %s: %w", rebuildID, err)
	}
	return nil
}

// Count implements rebuild.ProductSource with an exact count: it feeds the progress bar's ETA,
// and an estimate from the statistics can be far off right after a bulk load.
func (s *ProductSource) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
		return 0, fmt.Errorf("product source: count: %w", err)
	}
	return n, nil
}

// AwaitRelayed implements rebuild.ProductSource: it waits until the outbox relay has forwarded
// every event committed before the call, or the timeout passes. A Kafka-sourced rebuild calls
// it after recording its database snapshot, so that the log holds every change the snapshot
// holds before the rebuild takes the offsets it catches up to.
func (s *ProductSource) AwaitRelayed(ctx context.Context, timeout time.Duration) error {
	var horizon string
	if err := s.db.Pool.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&horizon); err != nil {
		return fmt.Errorf("product source: await relay: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		var pending bool
		err := s.db.Pool.QueryRow(ctx, `SELECT EXISTS (
  SELECT 1 FROM outbox_offsets o CROSS JOIN LATERAL (
    SELECT 1 FROM outbox_messages m
    WHERE m.lane = o.lane
      AND (m.lane, m.transaction_id, m."offset") > (o.lane, o.last_processed_transaction_id, o.offset_acked)
      AND m.transaction_id < $1::xid8
    LIMIT 1) x
  WHERE o.consumer_group = $2)`, horizon, RelayConsumerGroup).Scan(&pending)
		if err != nil {
			return fmt.Errorf("product source: await relay: %w", err)
		}
		if !pending {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("product source: the outbox relay has not forwarded the events committed before the snapshot within %s (is a relay running? see catalog status)", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
