package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// OutboxRetentionConfig configures the outbox retention job.
type OutboxRetentionConfig struct {
	// Retention is how long a relayed row is kept (default 24h): long enough to look into
	// what was relayed during an incident.
	Retention time.Duration
	// Interval is the time between passes (default 1m).
	Interval time.Duration
	// BatchSize is the most rows one DELETE removes, in its own short transaction (default
	// 5000), so no lock or transaction is held for long.
	BatchSize int
	// BatchPause is the wait between two batches of one pass (default 10ms), leaving I/O to
	// the relay and the writers while a large backlog of old rows is cleaned up.
	BatchPause time.Duration
	// BatchTimeout bounds one batch (default 30s).
	BatchTimeout time.Duration
	// ConsumerGroup is the outbox consumer group whose position decides what is relayed
	// (default RelayConsumerGroup).
	ConsumerGroup string
}

func (c *OutboxRetentionConfig) setDefaults() {
	if c.Retention == 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.BatchPause == 0 {
		c.BatchPause = 10 * time.Millisecond
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 30 * time.Second
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = RelayConsumerGroup
	}
}

// Validate reports a configuration that cannot work.
func (c OutboxRetentionConfig) Validate() error {
	switch {
	case c.Retention < 0:
		return fmt.Errorf("outbox retention: negative retention %s", c.Retention)
	case c.Interval <= 0:
		return fmt.Errorf("outbox retention: interval must be positive, got %s", c.Interval)
	case c.BatchSize < 1 || c.BatchSize > 1_000_000:
		return fmt.Errorf("outbox retention: batch size must be 1..1000000, got %d", c.BatchSize)
	case c.BatchPause < 0 || c.BatchTimeout <= 0:
		return errors.New("outbox retention: batch pause must not be negative and batch timeout must be positive")
	}
	return nil
}

// OutboxRetentionObserver is told what the retention job did, for metrics. Nil is allowed.
type OutboxRetentionObserver interface {
	// OutboxRowsDeleted is called after every batch that deleted rows (a counter's increment).
	OutboxRowsDeleted(n int64)
	// OutboxTableSize is called after every pass with the table's size (a gauge).
	OutboxTableSize(size OutboxTableStats)
}

// OutboxTableStats is the size of the outbox table.
type OutboxTableStats struct {
	// Bytes is the table's total size on disk: heap, indexes and TOAST.
	Bytes int64
	// Rows is the planner's row estimate (pg_class.reltuples, kept by (auto)vacuum and
	// analyze): cheap on a table of millions, exact enough for a gauge; -1 before the first
	// analyze.
	Rows int64
}

// OutboxRetention deletes relayed outbox rows older than the retention: a background job of
// the relay role (docs/ARCHITECTURE.md, "Event path": the outbox is a delivery buffer, not a history).
//
// A row is deleted only when both hold:
//   - it is relayed: at or before the relay consumer group's acked position of its lane in
//     outbox_offsets, the position the relay moves only after Kafka acknowledged the row. A
//     lane without a position has relayed nothing, so a row that was never relayed is never
//     deleted, however old it is;
//   - created_at < now() - retention, by the database clock (created_at is written by it).
//
// It does not block the relay: it never locks outbox_offsets (it reads the positions with a
// plain snapshot read, and positions only move forward, so a stale one is merely
// conservative), the relay never locks outbox rows, and each batch is one short DELETE of at
// most BatchSize rows. Several replicas may run it at once: SKIP LOCKED lets them share the
// work instead of waiting on each other.
type OutboxRetention struct {
	db  *DB
	cfg OutboxRetentionConfig
	obs OutboxRetentionObserver
	log *slog.Logger
}

// NewOutboxRetention returns the retention job; Run it as a role of the relay process.
func NewOutboxRetention(db *DB, cfg OutboxRetentionConfig, obs OutboxRetentionObserver, log *slog.Logger) (*OutboxRetention, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("outbox retention: nil database")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if obs == nil {
		obs = nopOutboxRetentionObserver{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &OutboxRetention{db: db, cfg: cfg, obs: obs, log: log.With("component", "outbox-retention")}, nil
}

// Run runs a pass at once and then every Interval until ctx is cancelled; it returns nil then.
// A failed pass (the database unreachable, say) is logged and retried at the next interval:
// retention is housekeeping and must never take the relay down.
func (r *OutboxRetention) Run(ctx context.Context) error {
	r.log.Info("outbox retention started", "retention", r.cfg.Retention, "interval", r.cfg.Interval, "batch_size", r.cfg.BatchSize)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox retention pass failed; retrying at the next interval", "err", err, "next_in", r.cfg.Interval)
		}
		select {
		case <-ctx.Done():
			r.log.Info("outbox retention stopped")
			return nil
		case <-t.C:
		}
	}
}

// RunOnce deletes every deletable row, batch by batch, and returns how many it deleted.
func (r *OutboxRetention) RunOnce(ctx context.Context) (int64, error) {
	start := time.Now()
	var total int64
	var err error
	for {
		var n int64
		n, err = r.deleteBatch(ctx)
		if n > 0 {
			total += n
			r.obs.OutboxRowsDeleted(n)
		}
		if err != nil || n < int64(r.cfg.BatchSize) {
			break
		}
		if r.cfg.BatchPause > 0 {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(r.cfg.BatchPause):
			}
			if err != nil {
				break
			}
		}
	}
	if total > 0 {
		r.log.Info("deleted relayed outbox rows past retention", "rows", total, "retention", r.cfg.Retention, "took", time.Since(start).Round(time.Millisecond))
	} else if err == nil {
		r.log.Debug("no relayed outbox rows past retention", "retention", r.cfg.Retention)
	}
	if err != nil {
		return total, fmt.Errorf("outbox retention: %w", err)
	}
	if size, serr := r.TableSize(ctx); serr == nil {
		r.obs.OutboxTableSize(size)
	} else {
		r.log.Debug("outbox table size", "err", serr)
	}
	return total, nil
}

// deleteBatch deletes at most BatchSize deletable rows in one statement (one short
// transaction). Rows are taken oldest first through the created_at index, so a pass costs
// about the rows it deletes, not the size of the table.
func (r *OutboxRetention) deleteBatch(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BatchTimeout)
	defer cancel()
	// The victims are selected (and locked) through the created_at index and deleted by
	// ctid: a TID scan, whatever the planner thinks of the subquery's row count. A ctid is
	// stable here because outbox rows are never updated and the rows are locked.
	tag, err := r.db.Pool.Exec(ctx, `DELETE FROM outbox_messages WHERE ctid = ANY(ARRAY(
  SELECT m.ctid
  FROM outbox_messages m JOIN outbox_offsets o ON o.lane = m.lane AND o.consumer_group = $1
  WHERE m.created_at < now() - make_interval(secs => $2)
    AND (m.transaction_id, m."offset") <= (o.last_processed_transaction_id, o.offset_acked)
  ORDER BY m.created_at
  LIMIT $3
  FOR UPDATE OF m SKIP LOCKED))`,
		r.cfg.ConsumerGroup, r.cfg.Retention.Seconds(), r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("delete batch: %w", err)
	}
	return tag.RowsAffected(), nil
}

// TableSize returns the outbox table's size, for metrics and `catalog status`.
func (r *OutboxRetention) TableSize(ctx context.Context) (OutboxTableStats, error) {
	return OutboxTableStatsOf(ctx, r.db)
}

// OutboxTableStatsOf returns the size of outbox_messages in db.
func OutboxTableStatsOf(ctx context.Context, db *DB) (OutboxTableStats, error) {
	var s OutboxTableStats
	var rows float64
	err := db.Pool.QueryRow(ctx, `SELECT pg_total_relation_size(c.oid), c.reltuples
FROM pg_class c WHERE c.oid = 'outbox_messages'::regclass`).Scan(&s.Bytes, &rows)
	if err != nil {
		return OutboxTableStats{}, fmt.Errorf("outbox retention: table size: %w", err)
	}
	s.Rows = int64(rows)
	return s, nil
}

type nopOutboxRetentionObserver struct{}

func (nopOutboxRetentionObserver) OutboxRowsDeleted(int64)          {}
func (nopOutboxRetentionObserver) OutboxTableSize(OutboxTableStats) {}
