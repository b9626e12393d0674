package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

var _ rebuild.Store = (*RebuildStore)(nil)

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
// can report a rebuild, the single-flight lock as a session-level advisory lock, so that a
// crashed process can never leave it held, and the event-log positions of indices that do not
// receive every event in the index_positions table.
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

// Keepalive settings of the lock's session. The session sits idle for the whole rebuild
// apart from the lock checks, so a peer that vanished (a host that died, a cut network, a
// pooler that dropped it) is noticed by TCP within about idle + count*interval on both ends:
// the client side through the socket options, the server side through the session's
// tcp_keepalives_* settings, so PostgreSQL ends a dead holder's session and frees the lock
// within the same bound.
const (
	lockKeepAliveIdle     = 10 * time.Second
	lockKeepAliveInterval = 5 * time.Second
	lockKeepAliveCount    = 3
)

// TryLock implements rebuild.Store. The lock is taken on a connection of its own, dialled
// with TCP keepalives and never part of the pool: a session-level advisory lock belongs to
// its connection, so that connection must neither be shared (a later release would unlock
// the wrong session's lock) nor be closed by the pool's idle or lifetime reaper while the
// rebuild runs. Release unlocks and closes it; if the process dies, the operating system
// closes the socket and PostgreSQL drops the lock with the session. Check asks PostgreSQL
// whether this very session still holds the lock, which catches a dropped session and a
// pooler that moved the session to another backend alike. Note that closing the DB does not
// close the lock's connection: only Release or the process's exit does.
func (s *RebuildStore) TryLock(ctx context.Context) (rebuild.Lock, error) {
	cfg := s.db.Pool.Config().ConnConfig.Copy()
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: lockKeepAliveIdle, Interval: lockKeepAliveInterval, Count: lockKeepAliveCount}}
	cfg.DialFunc = dialer.DialContext
	// Named, so pg_stat_activity shows which session holds the rebuild lock (a startup
	// parameter every pooler passes on).
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "catalog rebuild lock"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: lock: connect: %w", err)
	}
	l := &advisoryLock{conn: conn}
	settings := []string{
		fmt.Sprintf("SET tcp_keepalives_idle = %d", int(lockKeepAliveIdle/time.Second)),
		fmt.Sprintf("SET tcp_keepalives_interval = %d", int(lockKeepAliveInterval/time.Second)),
		fmt.Sprintf("SET tcp_keepalives_count = %d", lockKeepAliveCount),
		// The session is idle between checks: a server-wide idle_session_timeout must not
		// end it. Servers before PostgreSQL 14 do not know the setting, which is just as well.
		"SET idle_session_timeout = 0",
	}
	for _, stmt := range settings {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42704" { // undefined_object: an older server
				continue
			}
			l.close()
			return nil, fmt.Errorf("rebuild store: lock: %s: %w", stmt, err)
		}
	}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1), pg_backend_pid()`, rebuildLockKey).Scan(&locked, &l.pid); err != nil {
		l.close()
		return nil, fmt.Errorf("rebuild store: lock: %w", err)
	}
	if !locked {
		l.close()
		return nil, readmodel.ErrAlreadyRunning
	}
	return l, nil
}

// advisoryLock is a held rebuild lock: its session's connection and backend pid.
type advisoryLock struct {
	mu       sync.Mutex // a pgx connection serves one statement at a time
	conn     *pgx.Conn
	pid      uint32
	released bool
}

// Check implements rebuild.Lock: the session must answer and hold the lock. A query that
// fails or times out closes pgx's connection, and with it the session and the lock, so any
// error means the lock is gone.
func (l *advisoryLock) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("%w: released", readmodel.ErrLockLost)
	}
	key := uint64(rebuildLockKey)
	var pid uint32
	var held bool
	err := l.conn.QueryRow(ctx, `SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
  AND granted AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 1)`,
		int64(key>>32), int64(key&0xffffffff)).Scan(&pid, &held)
	switch {
	case err != nil:
		return fmt.Errorf("%w: its database session (backend %d) does not answer: %w", readmodel.ErrLockLost, l.pid, err)
	case pid != l.pid:
		return fmt.Errorf("%w: the connection now reaches backend %d instead of %d (a pooler in transaction mode?)", readmodel.ErrLockLost, pid, l.pid)
	case !held:
		return fmt.Errorf("%w: its database session (backend %d) no longer holds it", readmodel.ErrLockLost, l.pid)
	}
	return nil
}

// Release implements rebuild.Lock: it unlocks explicitly before closing, because the
// server ends a closed session asynchronously and the next rebuild should not race that. If
// the session is already gone, so is the lock, and the error is moot.
func (l *advisoryLock) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = l.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, rebuildLockKey)
	l.close()
}

func (l *advisoryLock) close() {
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.conn.Close(cctx)
}

const rebuildColumns = `id, source, phase, from_index, to_index, docs_done, docs_total, started_at, updated_at, finished_at, error, phase_starts, drain_from, owner, heartbeat_at,
  catch_up_from, fill_after, fill_at, events_done, events_total, rate, resumes`

// rebuildValues are the placeholders of rebuildColumns, in order.
const rebuildValues = `$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22`

// Create implements rebuild.Store. An existing id is refused rather than overwritten: two
// rebuilds must never share a record.
func (s *RebuildStore) Create(ctx context.Context, r *readmodel.Rebuild) error {
	args, err := rebuildArgs(r)
	if err != nil {
		return err
	}
	_, err = s.db.Pool.Exec(ctx, `INSERT INTO rebuilds (`+rebuildColumns+`) VALUES (`+rebuildValues+`)`, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("rebuild store: create %s: %w: the id exists", r.ID(), readmodel.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("rebuild store: create %s: %w", r.ID(), err)
	}
	return nil
}

// Save implements rebuild.Store as an upsert of every field but cancel_requested, so saving
// progress never loses a cancel request that another replica recorded meanwhile. An existing
// record is updated only while its owner is r's (readmodel.ErrNotOwner otherwise), and its
// heartbeat only moves forward: the heartbeat goroutine writes it more often than the record.
func (s *RebuildStore) Save(ctx context.Context, r *readmodel.Rebuild) error {
	args, err := rebuildArgs(r)
	if err != nil {
		return err
	}
	tag, err := s.db.Pool.Exec(ctx, `INSERT INTO rebuilds (`+rebuildColumns+`) VALUES (`+rebuildValues+`)
ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, phase = EXCLUDED.phase,
  from_index = EXCLUDED.from_index, to_index = EXCLUDED.to_index,
  docs_done = EXCLUDED.docs_done, docs_total = EXCLUDED.docs_total,
  started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at,
  error = EXCLUDED.error, phase_starts = EXCLUDED.phase_starts, drain_from = EXCLUDED.drain_from,
  heartbeat_at = GREATEST(rebuilds.heartbeat_at, EXCLUDED.heartbeat_at),
  catch_up_from = EXCLUDED.catch_up_from, fill_after = EXCLUDED.fill_after, fill_at = EXCLUDED.fill_at,
  events_done = EXCLUDED.events_done, events_total = EXCLUDED.events_total, rate = EXCLUDED.rate,
  resumes = EXCLUDED.resumes
WHERE rebuilds.owner = EXCLUDED.owner`, args...)
	if err != nil {
		return fmt.Errorf("rebuild store: save %s: %w", r.ID(), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rebuild store: save %s: %w", r.ID(), readmodel.ErrNotOwner)
	}
	return nil
}

// Heartbeat implements rebuild.Store.
func (s *RebuildStore) Heartbeat(ctx context.Context, id, owner string, at time.Time) error {
	tag, err := s.db.Pool.Exec(ctx, `UPDATE rebuilds SET heartbeat_at = GREATEST(heartbeat_at, $3) WHERE id = $1 AND owner = $2`,
		id, owner, storedTime(at))
	if err != nil {
		return fmt.Errorf("rebuild store: heartbeat %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rebuild store: heartbeat %s: %w", id, readmodel.ErrNotOwner)
	}
	return nil
}

// HandOff implements rebuild.Store: the record keeps its state and loses its owner and its
// heartbeat (set to the Unix epoch, older than any timeout), so the next replica's recovery
// takes it over at once instead of after the heartbeat timeout.
func (s *RebuildStore) HandOff(ctx context.Context, id, owner string) error {
	tag, err := s.db.Pool.Exec(ctx, `UPDATE rebuilds SET owner = '', heartbeat_at = 'epoch'
WHERE id = $1 AND owner = $2 AND phase NOT IN ('succeeded', 'failed', 'cancelled')`, id, owner)
	if err != nil {
		return fmt.Errorf("rebuild store: hand off %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rebuild store: hand off %s: %w", id, readmodel.ErrNotOwner)
	}
	return nil
}

// TakeOver implements rebuild.Store in one conditional UPDATE, so of several replicas
// recovering at once exactly one gets the record.
func (s *RebuildStore) TakeOver(ctx context.Context, id, owner string, now, expiredBefore time.Time) (*readmodel.Rebuild, bool, error) {
	r, err := scanRebuild(s.db.Pool.QueryRow(ctx, `UPDATE rebuilds SET owner = $2, heartbeat_at = $3
WHERE id = $1 AND phase NOT IN ('succeeded', 'failed', 'cancelled') AND heartbeat_at < $4
RETURNING `+rebuildColumns, id, owner, storedTime(now), storedTime(expiredBefore)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("rebuild store: take over %s: %w", id, err)
	}
	return r, true, nil
}

// IndexPosition implements rebuild.Store.
func (s *RebuildStore) IndexPosition(ctx context.Context, index string) (rebuild.Offsets, bool, error) {
	var raw []byte
	err := s.db.Pool.QueryRow(ctx, `SELECT complete_before FROM index_positions WHERE index_name = $1`, index).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("rebuild store: position of %s: %w", index, err)
	}
	var pos rebuild.Offsets
	if err := json.Unmarshal(raw, &pos); err != nil {
		return nil, false, fmt.Errorf("rebuild store: position of %s: %w", index, err)
	}
	return pos, true, nil
}

// SetIndexPosition implements rebuild.Store.
func (s *RebuildStore) SetIndexPosition(ctx context.Context, index string, pos rebuild.Offsets) error {
	if pos == nil {
		pos = rebuild.Offsets{}
	}
	raw, err := json.Marshal(pos)
	if err != nil {
		return fmt.Errorf("rebuild store: position of %s: %w", index, err)
	}
	if _, err := s.db.Pool.Exec(ctx, `INSERT INTO index_positions (index_name, complete_before, updated_at) VALUES ($1, $2, now())
ON CONFLICT (index_name) DO UPDATE SET complete_before = EXCLUDED.complete_before, updated_at = EXCLUDED.updated_at`, index, string(raw)); err != nil {
		return fmt.Errorf("rebuild store: record the position of %s: %w", index, err)
	}
	return nil
}

// ClearIndexPosition implements rebuild.Store.
func (s *RebuildStore) ClearIndexPosition(ctx context.Context, index string) error {
	if _, err := s.db.Pool.Exec(ctx, `DELETE FROM index_positions WHERE index_name = $1`, index); err != nil {
		return fmt.Errorf("rebuild store: clear the position of %s: %w", index, err)
	}
	return nil
}

// Get implements rebuild.Store.
func (s *RebuildStore) Get(ctx context.Context, id string) (*readmodel.Rebuild, error) {
	r, err := scanRebuild(s.db.Pool.QueryRow(ctx, `SELECT `+rebuildColumns+` FROM rebuilds WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("rebuild store: get %s: %w", id, readmodel.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild store: get %s: %w", id, err)
	}
	return r, nil
}

// List implements rebuild.Store; a limit below 1 is a caller bug and is refused.
func (s *RebuildStore) List(ctx context.Context, limit int) ([]*readmodel.Rebuild, error) {
	if limit < 1 {
		return nil, fmt.Errorf("rebuild store: list: %w: limit %d", readmodel.ErrInvalid, limit)
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+rebuildColumns+` FROM rebuilds ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: list: %w", err)
	}
	defer rows.Close()
	var out []*readmodel.Rebuild
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
		return fmt.Errorf("rebuild store: request cancel %s: %w", id, readmodel.ErrNotFound)
	}
	return nil
}

// CancelRequested implements rebuild.Store.
func (s *RebuildStore) CancelRequested(ctx context.Context, id string) (bool, error) {
	var requested bool
	err := s.db.Pool.QueryRow(ctx, `SELECT cancel_requested FROM rebuilds WHERE id = $1`, id).Scan(&requested)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("rebuild store: cancel requested %s: %w", id, readmodel.ErrNotFound)
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

func rebuildArgs(r *readmodel.Rebuild) ([]any, error) {
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
	drainJSON, err := offsetsJSON(s.DrainFrom)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: %s drain position: %w", s.ID, err)
	}
	fillAtJSON, err := offsetsJSON(s.FillAt)
	if err != nil {
		return nil, fmt.Errorf("rebuild store: %s fill position: %w", s.ID, err)
	}
	var catchUpJSON *string // NULL: not captured yet
	if s.CatchUpFrom != nil {
		raw, err := offsetsJSON(s.CatchUpFrom)
		if err != nil {
			return nil, fmt.Errorf("rebuild store: %s catch-up position: %w", s.ID, err)
		}
		catchUpJSON = &raw
	}
	return []any{s.ID, string(s.Source), string(s.Phase), s.FromIndex, s.ToIndex, s.DocsDone, s.DocsTotal,
		storedTime(s.StartedAt), storedTime(s.UpdatedAt), finished, s.Error, string(startsJSON), drainJSON,
		s.Owner, storedTime(s.HeartbeatAt), catchUpJSON, s.FillAfter, fillAtJSON, s.EventsDone, s.EventsTotal,
		s.Rate, s.Resumes}, nil
}

// offsetsJSON writes a position as {"partition": offset, ...}; nil as {}.
func offsetsJSON(m map[int32]int64) (string, error) {
	if m == nil {
		m = map[int32]int64{}
	}
	raw, err := json.Marshal(m)
	return string(raw), err
}

func scanRebuild(row pgx.Row) (*readmodel.Rebuild, error) {
	var (
		s          readmodel.Snapshot
		source     string
		phase      string
		finished   *time.Time
		startsJSON []byte
		drainJSON  []byte
		catchUp    []byte
		fillAt     []byte
	)
	if err := row.Scan(&s.ID, &source, &phase, &s.FromIndex, &s.ToIndex, &s.DocsDone, &s.DocsTotal,
		&s.StartedAt, &s.UpdatedAt, &finished, &s.Error, &startsJSON, &drainJSON, &s.Owner, &s.HeartbeatAt,
		&catchUp, &s.FillAfter, &fillAt, &s.EventsDone, &s.EventsTotal, &s.Rate, &s.Resumes); err != nil {
		return nil, err
	}
	s.Source, s.Phase = readmodel.Source(source), readmodel.Phase(phase)
	s.StartedAt, s.UpdatedAt, s.HeartbeatAt = s.StartedAt.UTC(), s.UpdatedAt.UTC(), s.HeartbeatAt.UTC()
	if finished != nil {
		t := finished.UTC()
		s.FinishedAt = &t
	}
	var starts map[string]time.Time
	if err := json.Unmarshal(startsJSON, &starts); err != nil {
		return nil, fmt.Errorf("rebuild %s phase starts: %w", s.ID, err)
	}
	s.PhaseStarts = make(map[readmodel.Phase]time.Time, len(starts))
	for p, t := range starts {
		s.PhaseStarts[readmodel.Phase(p)] = t.UTC()
	}
	if err := json.Unmarshal(drainJSON, &s.DrainFrom); err != nil {
		return nil, fmt.Errorf("rebuild %s drain position: %w", s.ID, err)
	}
	if err := json.Unmarshal(fillAt, &s.FillAt); err != nil {
		return nil, fmt.Errorf("rebuild %s fill position: %w", s.ID, err)
	}
	if catchUp != nil {
		s.CatchUpFrom = map[int32]int64{}
		if err := json.Unmarshal(catchUp, &s.CatchUpFrom); err != nil {
			return nil, fmt.Errorf("rebuild %s catch-up position: %w", s.ID, err)
		}
	}
	return readmodel.UnmarshalRebuildFromDatabase(s)
}
