package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/application/ops"
)

// DLQAudit is the audit log of DLQ replays in table dlq_replays (migration 00004). It
// implements ops.ReplayAudit.
type DLQAudit struct {
	db *DB
}

var _ ops.ReplayAudit = (*DLQAudit)(nil)

// NewDLQAudit returns the audit log over db.
func NewDLQAudit(db *DB) (*DLQAudit, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("dlq audit: nil database")
	}
	return &DLQAudit{db: db}, nil
}

// BeginReplay records a pending entry (the database clock sets replayed_at) and returns its id.
func (a *DLQAudit) BeginReplay(ctx context.Context, e ops.ReplayAuditEntry) (int64, error) {
	var id int64
	err := a.db.Pool.QueryRow(ctx, `INSERT INTO dlq_replays
  (run_id, operator, dlq_topic, dlq_partition, dlq_offset, error_class, aggregate_id, event_id, target_topic)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		e.RunID, e.Operator, e.DLQTopic, e.Ref.Partition, e.Ref.Offset, e.ErrorClass, e.AggregateID, e.EventID, e.TargetTopic,
	).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("dlq audit: record replay of %s/%s: %w", e.DLQTopic, e.Ref, err)
	}
	return id, nil
}

// FinishReplay records the result of a pending entry. Finishing an entry twice, or one that
// does not exist, is an error: the audit log must not be rewritten.
func (a *DLQAudit) FinishReplay(ctx context.Context, id int64, result string, target *ops.ReplayTarget, errText string) error {
	if result != ops.ReplayResultOK && result != ops.ReplayResultError {
		return fmt.Errorf("dlq audit: finish entry %d: result %q is not ok or error", id, result)
	}
	var partition *int32
	var offset *int64
	if target != nil {
		partition, offset = &target.Partition, &target.Offset
	}
	tag, err := a.db.Pool.Exec(ctx, `UPDATE dlq_replays
SET result = $2, target_partition = $3, target_offset = $4, error = $5, finished_at = now()
WHERE id = $1 AND result = 'pending'`, id, result, partition, offset, errText)
	if err != nil {
		return fmt.Errorf("dlq audit: finish entry %d: %w", id, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("dlq audit: finish entry %d: no pending entry with that id", id)
	}
	return nil
}

// ReplayedDLQRefs returns the latest successful replay of each of refs that has one.
func (a *DLQAudit) ReplayedDLQRefs(ctx context.Context, dlqTopic string, refs []ops.DLQRef) (map[ops.DLQRef]ops.ReplayAuditEntry, error) {
	out := map[ops.DLQRef]ops.ReplayAuditEntry{}
	if len(refs) == 0 {
		return out, nil
	}
	partitions := make([]int32, len(refs))
	offsets := make([]int64, len(refs))
	for i, r := range refs {
		partitions[i], offsets[i] = r.Partition, r.Offset
	}
	rows, err := a.db.Pool.Query(ctx, `SELECT DISTINCT ON (r.dlq_partition, r.dlq_offset) `+dlqAuditColumns+`
FROM dlq_replays r JOIN unnest($2::integer[], $3::bigint[]) AS want(p, o) ON r.dlq_partition = want.p AND r.dlq_offset = want.o
WHERE r.dlq_topic = $1 AND r.result = 'ok'
ORDER BY r.dlq_partition, r.dlq_offset, r.replayed_at DESC, r.id DESC`, dlqTopic, partitions, offsets)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: earlier replays: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanDLQAuditEntry)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: earlier replays: %w", err)
	}
	for _, e := range entries {
		out[e.Ref] = e
	}
	return out, nil
}

// DLQAuditFilter selects audit entries for ListReplays. Empty fields do not filter.
type DLQAuditFilter struct {
	// RunID keeps the entries of one replay command.
	RunID string
	// AggregateID keeps the entries of one product.
	AggregateID string
	// Limit caps the number of entries (newest first); 0 means 100.
	Limit int
}

// ListReplays returns audit entries, newest first.
func (a *DLQAudit) ListReplays(ctx context.Context, f DLQAuditFilter) ([]ops.ReplayAuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := a.db.Pool.Query(ctx, `SELECT `+dlqAuditColumns+` FROM dlq_replays r
WHERE ($1 = '' OR r.run_id = $1) AND ($2 = '' OR r.aggregate_id = $2)
ORDER BY r.replayed_at DESC, r.id DESC LIMIT $3`, f.RunID, f.AggregateID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: list: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanDLQAuditEntry)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: list: %w", err)
	}
	return entries, nil
}

const dlqAuditColumns = `r.id, r.run_id, r.replayed_at, r.finished_at, r.operator, r.dlq_topic, r.dlq_partition, r.dlq_offset,
  r.error_class, r.aggregate_id, r.event_id, r.target_topic, r.target_partition, r.target_offset, r.result, r.error`

func scanDLQAuditEntry(row pgx.CollectableRow) (ops.ReplayAuditEntry, error) {
	var e ops.ReplayAuditEntry
	var finished *time.Time
	var tp *int32
	var to *int64
	err := row.Scan(&e.ID, &e.RunID, &e.ReplayedAt, &finished, &e.Operator, &e.DLQTopic, &e.Ref.Partition, &e.Ref.Offset,
		&e.ErrorClass, &e.AggregateID, &e.EventID, &e.TargetTopic, &tp, &to, &e.Result, &e.Error)
	if err != nil {
		return ops.ReplayAuditEntry{}, err
	}
	if finished != nil {
		e.FinishedAt = *finished
	}
	if tp != nil && to != nil {
		e.Target = &ops.ReplayTarget{Partition: *tp, Offset: *to}
	}
	return e, nil
}
