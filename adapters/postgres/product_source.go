package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

var _ rebuild.ProductSource = (*ProductSource)(nil)

// ProductSource implements rebuild.ProductSource: the database as the default rebuild source
// (docs/ARCHITECTURE.md, "Rebuild"). It reads through pgx directly, which decodes rows in the
// binary format and is markedly faster than database/sql for a full scan. Every read is one
// statement: no transaction of a rebuild lives longer than a chunk.
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

// Chunk implements rebuild.ProductSource: one keyset page of the primary key, in one
// statement of its own (its own short transaction), so every chunk costs the same however deep
// the fill is, and nothing stays open between chunks: vacuum and the outbox relay never wait
// for a fill. afterID "" starts at the beginning; any other afterID must be a UUID.
func (s *ProductSource) Chunk(ctx context.Context, afterID string, limit int) ([]product.Snapshot, error) {
	if limit < 1 {
		return nil, fmt.Errorf("product source: chunk: %w: limit %d", readmodel.ErrInvalid, limit)
	}
	if afterID == "" {
		batch, err := fetchBatch(ctx, s.db.Pool, `SELECT `+productColumns+` FROM products ORDER BY id LIMIT $1`, limit, limit)
		if err != nil {
			return nil, fmt.Errorf("product source: chunk: %w", err)
		}
		return batch, nil
	}
	after, err := product.ParseID(afterID)
	if err != nil {
		return nil, fmt.Errorf("product source: chunk: %w: after %w", readmodel.ErrInvalid, err)
	}
	batch, err := fetchBatch(ctx, s.db.Pool, `SELECT `+productColumns+` FROM products WHERE id > $2 ORDER BY id LIMIT $1`, limit, limit, after.String())
	if err != nil {
		return nil, fmt.Errorf("product source: chunk after %s: %w", afterID, err)
	}
	return batch, nil
}

// fetchBatch runs query and reads the products it returns into a fresh slice: the caller may
// keep it (an asynchronous bulk writer, say) while the next batch is read.
func fetchBatch(ctx context.Context, db *pgxpool.Pool, query string, batchSize int, args ...any) ([]product.Snapshot, error) {
	rows, err := db.Query(ctx, query, args...)
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

// Versions implements rebuild.ProductSource with the keyset page verify reads too
// (productVersions). Rows come in uuid order, which for canonical (lower-case) ids is exactly
// byte-wise string order, the order of an Elasticsearch keyword sort and of Go's string
// comparison, so the caller can merge-join the pages with the index's. afterID "" starts at
// the beginning; any other afterID must be a UUID.
func (s *ProductSource) Versions(ctx context.Context, afterID string, limit int) ([]rebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("product source: versions: %w: limit %d", readmodel.ErrInvalid, limit)
	}
	var after product.ID
	if afterID != "" {
		var err error
		if after, err = product.ParseID(afterID); err != nil {
			return nil, fmt.Errorf("product source: versions: %w: after %w", readmodel.ErrInvalid, err)
		}
	}
	page, err := productVersions(ctx, s.db, after, limit)
	if err != nil {
		return nil, fmt.Errorf("product source: %w", err)
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
