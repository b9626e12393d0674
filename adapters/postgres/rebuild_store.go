package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	apprebuild "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/rebuild"
)

var _ apprebuild.Store = (*RebuildStore)(nil)

// RebuildLockName names the cluster-wide rebuild lock. The advisory lock key is the FNV-1a
// 64-bit hash of this string read as a signed bigint (RebuildLockKey), so the key is stable
// across releases and replicas without a registry of magic numbers, and an operator can find
// the holder with (key = RebuildLockKey())
//
//	SELECT pid FROM pg_locks WHERE locktype = 'advisory'
//	  AND classid = (key >> 32) AND objid = (key & 4294967295) AND objsubid = 1
//
// (pg_locks splits a bigint key into its high and low 32 bits).
const RebuildLockName = "github.com/marketplace/catalog/projection-rebuild"

// RebuildLockKey is the advisory lock key of RebuildLockName; exported so tests and tools
// look the holder up in pg_locks instead of re-deriving it.
func RebuildLockKey() int64 { return rebuildLockKey }

var rebuildLockKey = advisoryKey(RebuildLockName)

func advisoryKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name)) // hash.Hash never fails
	return int64(h.Sum64())      // the same 64 bits, read as PostgreSQL's signed bigint
}

// RebuildStore implements rebuild.Store: rebuild records in the rebuilds table, so any replica
// can report a rebuild, and the single-flight lock as a session-level advisory lock, so that a
// crashed process can never leave it held.
type RebuildStore struct {
	db *DB
}

// NewRebuildStore returns a store over db.
func NewRebuildStore(db *DB) (*RebuildStore, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("rebuild store: nil database")
	}
	return &RebuildStore{db: db}, nil
}

// TryLock implements rebuild.Store. The lock is taken on a connection hijacked from the pool:
// a session-level advisory lock belongs to its connection, so that connection must neither go
// back to the pool (where any query could run on it and a later release would unlock the
// wrong session's lock) nor be closed by the pool's idle or lifetime reaper while the rebuild
// runs. release unlocks and closes it; if the process dies, the operating system closes the
// socket and PostgreSQL drops the lock with the session. Note that closing the DB does not
// close the hijacked connection: only release or the process's exit does.
func (s *RebuildStore) TryLock(ctx context.Context) (release func(), err error) {
	pc, err := s.db.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: lock: acquire connection: %w", err)
	}
	conn := pc.Hijack()
	closeConn := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}
	// Named, so pg_stat_activity shows which session holds the rebuild lock.
	if _, err := conn.Exec(ctx, `SET application_name = 'catalog rebuild lock'`); err != nil {
		closeConn()
		return nil, fmt.Errorf("rebuild store: lock: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLockKey).Scan(&locked); err != nil {
		closeConn()
		return nil, fmt.Errorf("rebuild store: lock: %w", err)
	}
	if !locked {
		closeConn()
		return nil, rebuild.ErrAlreadyRunning
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Unlock explicitly before closing: the server ends a closed session
			// asynchronously, and the next rebuild should not race that. If the session is
			// already gone, so is the lock, and the error is moot.
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, rebuildLockKey)
			closeConn()
		})
	}, nil
}

const rebuildColumns = `id, source, phase, from_index, to_index, docs_done, docs_total, started_at, updated_at, finished_at, error, phase_starts, drain_from`

// Create implements rebuild.Store. An existing id is refused rather than overwritten: two
// rebuilds must never share a record.
func (s *RebuildStore) Create(ctx context.Context, r *rebuild.Rebuild) error {
	args, err := rebuildArgs(r)
	if err != nil {
		return err
	}
	_, err = s.db.Pool.Exec(ctx, `INSERT INTO rebuilds (`+rebuildColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("rebuild store: create %s: %w: the id exists", r.ID(), rebuild.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("rebuild store: create %s: %w", r.ID(), err)
	}
	return nil
}

// Save implements rebuild.Store as an upsert of every field but cancel_requested, so saving
// progress never loses a cancel request that another replica recorded meanwhile.
func (s *RebuildStore) Save(ctx context.Context, r *rebuild.Rebuild) error {
	args, err := rebuildArgs(r)
	if err != nil {
		return err
	}
	_, err = s.db.Pool.Exec(ctx, `INSERT INTO rebuilds (`+rebuildColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, phase = EXCLUDED.phase,
  from_index = EXCLUDED.from_index, to_index = EXCLUDED.to_index,
  docs_done = EXCLUDED.docs_done, docs_total = EXCLUDED.docs_total,
  started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at,
  error = EXCLUDED.error, phase_starts = EXCLUDED.phase_starts, drain_from = EXCLUDED.drain_from`, args...)
	if err != nil {
		return fmt.Errorf("rebuild store: save %s: %w", r.ID(), err)
	}
	return nil
}

// Get implements rebuild.Store.
func (s *RebuildStore) Get(ctx context.Context, id string) (*rebuild.Rebuild, error) {
	r, err := scanRebuild(s.db.Pool.QueryRow(ctx, `SELECT `+rebuildColumns+` FROM rebuilds WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("rebuild store: get %s: %w", id, rebuild.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild store: get %s: %w", id, err)
	}
	return r, nil
}

// List implements rebuild.Store; a limit below 1 is a caller bug and is refused.
func (s *RebuildStore) List(ctx context.Context, limit int) ([]*rebuild.Rebuild, error) {
	if limit < 1 {
		return nil, fmt.Errorf("rebuild store: list: %w: limit %d", rebuild.ErrInvalid, limit)
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+rebuildColumns+` FROM rebuilds ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: list: %w", err)
	}
	defer rows.Close()
	var out []*rebuild.Rebuild
	for rows.Next() {
		r, err := scanRebuild(rows)
		if err != nil {
			return nil, fmt.Errorf("rebuild store: list: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rebuild store: list: %w", err)
	}
	return out, nil
}

// RequestCancel implements rebuild.Store. It only raises the flag; whether a finished rebuild
// can still be cancelled is the use case's decision, not the store's.
func (s *RebuildStore) RequestCancel(ctx context.Context, id string) error {
	tag, err := s.db.Pool.Exec(ctx, `UPDATE rebuilds SET cancel_requested = true WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("rebuild store: request cancel %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rebuild store: request cancel %s: %w", id, rebuild.ErrNotFound)
	}
	return nil
}

// CancelRequested implements rebuild.Store.
func (s *RebuildStore) CancelRequested(ctx context.Context, id string) (bool, error) {
	var requested bool
	err := s.db.Pool.QueryRow(ctx, `SELECT cancel_requested FROM rebuilds WHERE id = $1`, id).Scan(&requested)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("rebuild store: cancel requested %s: %w", id, rebuild.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("rebuild store: cancel requested %s: %w", id, err)
	}
	return requested, nil
}

// storedTime is how times are kept: UTC at microsecond precision, the precision of timestamptz,
// applied to phase_starts too so a phase start equal to started_at stays equal after a round
// trip.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func rebuildArgs(r *rebuild.Rebuild) ([]any, error) {
	s := r.Snapshot()
	starts := make(map[string]time.Time, len(s.PhaseStarts))
	for p, t := range s.PhaseStarts {
		starts[string(p)] = storedTime(t)
	}
	startsJSON, err := json.Marshal(starts)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: %s phase starts: %w", s.ID, err)
	}
	var finished *time.Time
	if s.FinishedAt != nil {
		t := storedTime(*s.FinishedAt)
		finished = &t
	}
	drain := s.DrainFrom
	if drain == nil {
		drain = map[int32]int64{}
	}
	drainJSON, err := json.Marshal(drain)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: %s drain position: %w", s.ID, err)
	}
	return []any{s.ID, string(s.Source), string(s.Phase), s.FromIndex, s.ToIndex, s.DocsDone, s.DocsTotal,
		storedTime(s.StartedAt), storedTime(s.UpdatedAt), finished, s.Error, string(startsJSON), string(drainJSON)}, nil
}

func scanRebuild(row pgx.Row) (*rebuild.Rebuild, error) {
	var (
		s          rebuild.Snapshot
		source     string
		phase      string
		finished   *time.Time
		startsJSON []byte
		drainJSON  []byte
	)
	if err := row.Scan(&s.ID, &source, &phase, &s.FromIndex, &s.ToIndex, &s.DocsDone, &s.DocsTotal,
		&s.StartedAt, &s.UpdatedAt, &finished, &s.Error, &startsJSON, &drainJSON); err != nil {
		return nil, err
	}
	s.Source, s.Phase = rebuild.Source(source), rebuild.Phase(phase)
	s.StartedAt, s.UpdatedAt = s.StartedAt.UTC(), s.UpdatedAt.UTC()
	if finished != nil {
		t := finished.UTC()
		s.FinishedAt = &t
	}
	var starts map[string]time.Time
	if err := json.Unmarshal(startsJSON, &starts); err != nil {
		return nil, fmt.Errorf("rebuild %s phase starts: %w", s.ID, err)
	}
	s.PhaseStarts = make(map[rebuild.Phase]time.Time, len(starts))
	for p, t := range starts {
		s.PhaseStarts[rebuild.Phase(p)] = t.UTC()
	}
	if err := json.Unmarshal(drainJSON, &s.DrainFrom); err != nil {
		return nil, fmt.Errorf("rebuild %s drain position: %w", s.ID, err)
	}
	return rebuild.UnmarshalRebuildFromDatabase(s)
}
