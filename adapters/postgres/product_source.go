package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	apprebuild "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

var _ apprebuild.ProductSource = (*ProductSource)(nil)

// ProductSource implements rebuild.ProductSource: the database as the default rebuild source
// (ARCHITECTURE §3). It reads through pgx directly, which decodes rows in the binary format
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
	tx, err := s.beginSnapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // a no-op after Commit
	recorded, err := record(ctx, tx, rebuildID)
	if err != nil {
		return 0, fmt.Errorf("product source: stream %s: %w", rebuildID, err)
	}
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
	tx, err := s.beginSnapshot(ctx)
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

func (s *ProductSource) beginSnapshot(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadWrite})
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
