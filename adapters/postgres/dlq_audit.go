package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/application/ops"
)

// DLQAudit is the audit log of the DLQ in table dlq_replays: replays (migration 00004) and
// resolutions (00007). It implements ops.ReplayAudit and ops.DLQLedger.
type DLQAudit struct {
	db *DB
}

var (
	_ ops.ReplayAudit = (*DLQAudit)(nil)
	_ ops.DLQLedger   = (*DLQAudit)(nil)
)

// NewDLQAudit returns the audit log over db.
func NewDLQAudit(db *DB) (*DLQAudit, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("dlq audit: nil database")
	}
	return &DLQAudit{db: db}, nil
}

// ErrNoDLQAuditTable is returned by CheckSchema when the database has not been migrated to
// the audit log's current shape.
var ErrNoDLQAuditTable = errors.New("the database has no table dlq_replays with resolutions; run 'catalog migrate'")

// CheckSchema reports ErrNoDLQAuditTable unless table dlq_replays exists with its resolution
// columns, so a command can refuse before it publishes anything it could not record. A failed
// query is returned as it is.
func (a *DLQAudit) CheckSchema(ctx context.Context) error {
	var exists bool
	if err := a.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
  WHERE table_schema = current_schema() AND table_name = 'dlq_replays' AND column_name = 'action')`).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return ErrNoDLQAuditTable
	}
	return nil
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

// RecordResolution records a resolution: result ok at once, no target, the reason in note.
func (a *DLQAudit) RecordResolution(ctx context.Context, e ops.ReplayAuditEntry) (int64, error) {
	var id int64
	err := a.db.Pool.QueryRow(ctx, `INSERT INTO dlq_replays
  (action, run_id, operator, dlq_topic, dlq_partition, dlq_offset, error_class, aggregate_id, event_id, target_topic, note, result, finished_at)
VALUES ('resolve', $1, $2, $3, $4, $5, $6, $7, $8, '', $9, 'ok', now()) RETURNING id`,
		e.RunID, e.Operator, e.DLQTopic, e.Ref.Partition, e.Ref.Offset, e.ErrorClass, e.AggregateID, e.EventID, e.Note,
	).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("dlq audit: record resolution of %s/%s: %w", e.DLQTopic, e.Ref, err)
	}
	return id, nil
}

// HandledDLQRefs returns the latest handling (a successful replay or a resolution) of each of
// refs that has one.
func (a *DLQAudit) HandledDLQRefs(ctx context.Context, dlqTopic string, refs []ops.DLQRef) (map[ops.DLQRef]ops.ReplayAuditEntry, error) {
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
		return nil, fmt.Errorf("dlq audit: earlier handling: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanDLQAuditEntry)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: earlier handling: %w", err)
	}
	for _, e := range entries {
		out[e.Ref] = e
	}
	return out, nil
}

// HandledDLQMessages counts the distinct messages of dlqTopic inside the retained ranges that
// were replayed successfully or resolved (ops.DLQLedger). Entries of messages retention has
// removed fall outside the ranges and do not count.
func (a *DLQAudit) HandledDLQMessages(ctx context.Context, dlqTopic string, retained ops.TopicOffsets) (int64, error) {
	parts := make([]int32, 0, len(retained))
	starts := make([]int64, 0, len(retained))
	ends := make([]int64, 0, len(retained))
	for _, p := range retained {
		if p.End > p.Start {
			parts, starts, ends = append(parts, p.Partition), append(starts, p.Start), append(ends, p.End)
		}
	}
	if len(parts) == 0 {
		return 0, nil
	}
	var n int64
	err := a.db.Pool.QueryRow(ctx, `SELECT count(*) FROM (
  SELECT DISTINCT r.dlq_partition, r.dlq_offset
  FROM dlq_replays r JOIN unnest($2::integer[], $3::bigint[], $4::bigint[]) AS span(p, s, e)
    ON r.dlq_partition = span.p AND r.dlq_offset >= span.s AND r.dlq_offset < span.e
  WHERE r.dlq_topic = $1 AND r.result = 'ok') handled`, dlqTopic, parts, starts, ends).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("dlq audit: count handled messages of %s: %w", dlqTopic, err)
	}
	return n, nil
}

// ListAudit returns the entries f selects, newest first (ops.ReplayAudit).
func (a *DLQAudit) ListAudit(ctx context.Context, f ops.AuditFilter) ([]ops.ReplayAuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = ops.DefaultAuditLimit
	}
	partition, offset := int32(-1), int64(-1)
	if f.Ref != nil {
		partition, offset = f.Ref.Partition, f.Ref.Offset
	}
	rows, err := a.db.Pool.Query(ctx, `SELECT `+dlqAuditColumns+` FROM dlq_replays r
WHERE ($1 = '' OR r.dlq_topic = $1) AND ($2 = '' OR r.run_id = $2) AND ($3 = '' OR r.aggregate_id = $3)
  AND ($4 = '' OR r.action = $4) AND ($5 < 0 OR (r.dlq_partition = $5 AND r.dlq_offset = $6))
ORDER BY r.replayed_at DESC, r.id DESC LIMIT $7`, f.DLQTopic, f.RunID, f.AggregateID, f.Action, partition, offset, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: list: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanDLQAuditEntry)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: list: %w", err)
	}
	return entries, nil
}

const dlqAuditColumns = `r.id, r.action, r.run_id, r.replayed_at, r.finished_at, r.operator, r.dlq_topic, r.dlq_partition, r.dlq_offset,
  r.error_class, r.aggregate_id, r.event_id, r.target_topic, r.target_partition, r.target_offset, r.result, r.error, r.note`

func scanDLQAuditEntry(row pgx.CollectableRow) (ops.ReplayAuditEntry, error) {
	var e ops.ReplayAuditEntry
	var finished *time.Time
	var tp *int32
	var to *int64
	err := row.Scan(&e.ID, &e.Action, &e.RunID, &e.ReplayedAt, &finished, &e.Operator, &e.DLQTopic, &e.Ref.Partition, &e.Ref.Offset,
		&e.ErrorClass, &e.AggregateID, &e.EventID, &e.TargetTopic, &tp, &to, &e.Result, &e.Error, &e.Note)
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
