package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
)

var (
	_ ops.Database = (*OpsStats)(nil)
	_ ops.Products = (*OpsStats)(nil)
)

// OpsStatsConfig configures OpsStats.
type OpsStatsConfig struct {
	// Lanes is the configured number of outbox lanes (OUTBOX_LANES): these lanes are always
	// reported, others only when they hold events or a relay position.
	Lanes int
	// ConsumerGroup is the relay's outbox consumer group; empty means RelayConsumerGroup.
	ConsumerGroup string
	// MaxTransactions bounds the long transactions listed (oldest first); 0 means 50.
	MaxTransactions int
}

// OpsStats reads what the operator's checks need from PostgreSQL: the outbox backlog behind
// the relay's lane positions, the transactions holding it back, long transactions, product counts (ops.Database), and
// (id, version, deleted) of products for the verify's merge (ops.Products). Every query is
// a single statement on the pool, so it never holds a transaction open itself.
type OpsStats struct {
	db  *DB
	cfg OpsStatsConfig
}

// NewOpsStats returns the statistics reader over db.
func NewOpsStats(db *DB, cfg OpsStatsConfig) (*OpsStats, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("ops stats: nil database")
	}
	if cfg.Lanes == 0 {
		cfg.Lanes = DefaultLanes
	}
	if cfg.Lanes < 1 || cfg.Lanes > MaxLanes {
		return nil, fmt.Errorf("ops stats: lanes must be 1..%d, got %d", MaxLanes, cfg.Lanes)
	}
	if cfg.ConsumerGroup == "" {
		cfg.ConsumerGroup = RelayConsumerGroup
	}
	if cfg.MaxTransactions == 0 {
		cfg.MaxTransactions = 50
	}
	return &OpsStats{db: db, cfg: cfg}, nil
}

// outboxBacklog counts, per lane, the committed rows after the relay's position: the same
// (transaction_id, offset) order the relay reads in, so each lane is a range scan of the
// primary key. Ages come from the server's clock, so client clock skew cannot fake them.
// Rows of transactions still open are invisible here, as they are to the relay.
//
// Rows at or above the relay's horizon (relayHorizon: the oldest transaction id still running
// that could write to this database's outbox) are committed but not passable yet: they are
// counted apart, with their oldest age, so a stall behind an open transaction can be told from
// a stopped relay even when the transaction itself is invisible to this role.
const outboxBacklog = `
WITH s AS (SELECT ` + relayHorizon + ` AS xmin)
SELECT l.lane, o.lane IS NOT NULL, coalesce(o.offset_acked, 0), coalesce(o.last_processed_transaction_id::text, ''), o.updated_at,
       b.n, b.oldest, coalesce(extract(epoch FROM clock_timestamp() - b.oldest)::float8, 0),
       b.held, coalesce(extract(epoch FROM clock_timestamp() - b.oldest_held)::float8, 0), s.xmin::text
FROM s CROSS JOIN generate_series(0, $2::int - 1) AS l(lane)
LEFT JOIN outbox_offsets o ON o.lane = l.lane AND o.consumer_group = $1
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(m.created_at) AS oldest,
           count(*) FILTER (WHERE m.transaction_id >= s.xmin) AS held,
           min(m.created_at) FILTER (WHERE m.transaction_id >= s.xmin) AS oldest_held
    FROM outbox_messages m
    WHERE m.lane = l.lane
      AND (m.transaction_id, m."offset") > (coalesce(o.last_processed_transaction_id, '0'::xid8), coalesce(o.offset_acked, 0::bigint))
) b
ORDER BY l.lane`

// OutboxStats implements ops.Database. Every possible lane (0..MaxLanes-1) is counted, so
// events stranded in lanes beyond OUTBOX_LANES (writers and relays disagreeing) show up.
func (s *OpsStats) OutboxStats(ctx context.Context) (ops.OutboxStats, error) {
	rows, err := s.db.Pool.Query(ctx, outboxBacklog, s.cfg.ConsumerGroup, MaxLanes)
	if err != nil {
		return ops.OutboxStats{}, fmt.Errorf("ops stats: outbox backlog: %w", err)
	}
	var out ops.OutboxStats
	for rows.Next() {
		var (
			l           ops.OutboxLane
			relayedAt   *time.Time
			oldest      *time.Time
			ageSecs     float64
			held        int64
			heldAgeSecs float64
		)
		if err := rows.Scan(&l.Lane, &l.RelayStarted, &l.RelayedOffset, &l.RelayedTransactionID, &relayedAt,
			&l.Backlog, &oldest, &ageSecs, &held, &heldAgeSecs, &out.OldestRunningTransactionID); err != nil {
			rows.Close()
			return ops.OutboxStats{}, fmt.Errorf("ops stats: outbox backlog: %w", err)
		}
		if l.Lane >= s.cfg.Lanes && l.Backlog == 0 && !l.RelayStarted {
			continue
		}
		if relayedAt != nil {
			l.RelayedAt = relayedAt.UTC()
		}
		if oldest != nil {
			l.OldestCreatedAt = oldest.UTC()
			l.OldestAge = max(time.Duration(ageSecs*float64(time.Second)), 0)
		}
		out.Lanes = append(out.Lanes, l)
		out.Backlog += l.Backlog
		if l.Backlog > 0 && (out.OldestCreatedAt.IsZero() || l.OldestCreatedAt.Before(out.OldestCreatedAt)) {
			out.OldestCreatedAt = l.OldestCreatedAt
		}
		out.OldestAge = max(out.OldestAge, l.OldestAge)
		out.HeldBack += held
		out.HeldBackAge = max(out.HeldBackAge, time.Duration(heldAgeSecs*float64(time.Second)))
	}
	if err := rows.Err(); err != nil {
		return ops.OutboxStats{}, fmt.Errorf("ops stats: outbox backlog: %w", err)
	}
	if err := s.db.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('outbox_messages')`).Scan(&out.TableBytes); err != nil {
		return ops.OutboxStats{}, fmt.Errorf("ops stats: outbox table size: %w", err)
	}
	var blockingSecs float64
	if err := s.db.Pool.QueryRow(ctx, blockingTransactionAge).Scan(&blockingSecs); err != nil {
		return ops.OutboxStats{}, fmt.Errorf("ops stats: oldest transaction holding the relay back: %w", err)
	}
	out.BlockingTransactionAge = max(time.Duration(blockingSecs*float64(time.Second)), 0)
	return out, nil
}

// longTransactions lists the transactions older than $1 seconds that matter here, oldest
// first. The relay reads only outbox rows of transactions below its horizon (relayHorizon):
// every backend of this database that holds a transaction id (backend_xid: it has written or
// locked a row; autovacuum and replication workers included), every prepared transaction
// (of any database: it has no session to tell where it ran), and any transaction of another
// role this role cannot see. A read-only transaction (backend_xmin only) does not hold the
// relay back, and neither does one of another database it can see, or a replication slot
// (they hold back vacuum, not snapshots); a read-only one still matters in this database,
// whose vacuum it holds back. The statement text is not read: it may hold secrets. Other
// roles' sessions show their details only to superusers and members of pg_read_all_stats
// (docs/RUNBOOK.md).
const longTransactions = `
SELECT pid, coalesce(datname, ''), coalesce(usename, ''), coalesce(application_name, ''), coalesce(backend_type, ''), ''::text,
       coalesce(state, ''), xact_start, query_start, extract(epoch FROM clock_timestamp() - xact_start)::float8,
       backend_xid IS NOT NULL
FROM pg_stat_activity
WHERE xact_start IS NOT NULL
  AND pid <> pg_backend_pid()
  AND xact_start < clock_timestamp() - make_interval(secs => $1)
  AND datname = current_database()
  AND (backend_xid IS NOT NULL OR backend_type = 'client backend')
UNION ALL
SELECT 0, coalesce(database, ''), coalesce(owner, ''), '', 'prepared transaction', gid,
       'prepared', prepared, NULL, extract(epoch FROM clock_timestamp() - prepared)::float8, true
FROM pg_prepared_xacts
WHERE prepared < clock_timestamp() - make_interval(secs => $1)
ORDER BY 8
LIMIT $2`

// LongTransactions implements ops.Database.
func (s *OpsStats) LongTransactions(ctx context.Context, olderThan time.Duration) ([]ops.LongTransaction, error) {
	rows, err := s.db.Pool.Query(ctx, longTransactions, max(olderThan, 0).Seconds(), s.cfg.MaxTransactions)
	if err != nil {
		return nil, fmt.Errorf("ops stats: long transactions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ops.LongTransaction, error) {
		var (
			tx         ops.LongTransaction
			queryStart *time.Time
			ageSecs    float64
		)
		err := row.Scan(&tx.PID, &tx.Database, &tx.User, &tx.Application, &tx.BackendType, &tx.PreparedGID,
			&tx.State, &tx.Started, &queryStart, &ageSecs, &tx.HoldsBackOutbox)
		tx.Started = tx.Started.UTC()
		if queryStart != nil {
			tx.QueryStarted = queryStart.UTC()
		}
		tx.Age = time.Duration(ageSecs * float64(time.Second))
		return tx, err
	})
	if err != nil {
		return nil, fmt.Errorf("ops stats: long transactions: %w", err)
	}
	return out, nil
}

// blockingTransactionAge is the age of the oldest transaction that holds the relay back (the
// rule of longTransactions, without the read-only ones), 0 when none is open.
const blockingTransactionAge = `
SELECT coalesce(extract(epoch FROM clock_timestamp() - least(
    (SELECT min(xact_start) FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()),
    (SELECT min(prepared) FROM pg_prepared_xacts))), 0)::float8`

// ProductCounts implements ops.Database with exact counts (one scan of products).
func (s *OpsStats) ProductCounts(ctx context.Context) (ops.ProductCounts, error) {
	var c ops.ProductCounts
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FROM products`).Scan(&c.Live, &c.Total); err != nil {
		return ops.ProductCounts{}, fmt.Errorf("ops stats: count products: %w", err)
	}
	return c, nil
}

// ProductVersions implements ops.Products with productVersions.
func (s *OpsStats) ProductVersions(ctx context.Context, afterID string, limit int) ([]rebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("ops stats: product versions: %w: limit %d", ops.ErrInvalid, limit)
	}
	var after product.ID
	if afterID != "" {
		var err error
		if after, err = product.ParseID(afterID); err != nil {
			return nil, fmt.Errorf("ops stats: product versions: %w: after %w", ops.ErrInvalid, err)
		}
	}
	page, err := productVersions(ctx, s.db, after, limit)
	if err != nil {
		return nil, fmt.Errorf("ops stats: %w", err)
	}
	return page, nil
}

// productVersions reads (id, version, deleted) of the products with id > after ("" starts at
// the beginning) in id order, at most limit: a keyset page of the primary key, so every page
// costs the same however deep the scan is, and no cursor or transaction stays open between
// pages. uuid order is the byte order of the canonical text form, which callers merge on.
func productVersions(ctx context.Context, db *DB, after product.ID, limit int) ([]rebuild.DocVersion, error) {
	q := `SELECT id, version, deleted_at IS NOT NULL FROM products ORDER BY id LIMIT $1`
	args := []any{limit}
	if after != "" {
		q = `SELECT id, version, deleted_at IS NOT NULL FROM products WHERE id > $2 ORDER BY id LIMIT $1`
		args = append(args, after.String())
	}
	rows, err := db.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("product versions after %q: %w", after, err)
	}
	page, err := pgx.CollectRows(rows, scanDocVersion)
	if err != nil {
		return nil, fmt.Errorf("product versions after %q: %w", after, err)
	}
	return page, nil
}

// ProductVersionsByID implements ops.Products. Ids that are not UUIDs cannot name a product
// and are left out rather than failing the lookup.
func (s *OpsStats) ProductVersionsByID(ctx context.Context, ids []string) ([]rebuild.DocVersion, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if p, err := product.ParseID(id); err == nil {
			valid = append(valid, p.String())
		}
	}
	if len(valid) == 0 {
		return nil, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT id, version, deleted_at IS NOT NULL FROM products WHERE id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, fmt.Errorf("ops stats: product versions by id: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDocVersion)
	if err != nil {
		return nil, fmt.Errorf("ops stats: product versions by id: %w", err)
	}
	return out, nil
}

func scanDocVersion(row pgx.CollectableRow) (rebuild.DocVersion, error) {
	var d rebuild.DocVersion
	err := row.Scan(&d.ID, &d.Version, &d.Deleted)
	return d, err
}
