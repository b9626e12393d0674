// Package rebuild models a projection rebuild: a new versioned index filled from a source,
// caught up with live events, validated and made live by an atomic alias switch. The record
// lives in the system of record so every replica can report it and a crash leaves a trace.
package rebuild

import (
	"errors"
	"fmt"
	"time"
)

// Source is where a rebuild reads the full state from.
type Source string

// Rebuild sources (docs/ARCHITECTURE.md, "Rebuild"): the database by default; Kafka on request, for topics
// that keep full history.
const (
	SourceDatabase Source = "database"
	SourceKafka    Source = "kafka"
)

// ParseSource validates a source name; empty means the database.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case "", SourceDatabase:
		return SourceDatabase, nil
	case SourceKafka:
		return SourceKafka, nil
	}
	return "", fmt.Errorf("%w: source %q (want database or kafka)", ErrInvalid, s)
}

// Phase is a step of a rebuild, in the strict order of docs/ARCHITECTURE.md, "Rebuild".
type Phase string

// The phases. A rebuild moves forward through them and ends in one of the terminal phases.
const (
	PhasePending     Phase = "pending"
	PhaseCreateIndex Phase = "create_index"
	PhaseCapture     Phase = "capture_offsets"
	PhaseFill        Phase = "fill"
	PhaseCatchUp     Phase = "catch_up"
	PhaseValidate    Phase = "validate"
	PhaseSwitch      Phase = "switch_alias"
	PhaseDrain       Phase = "drain"
	PhaseSucceeded   Phase = "succeeded"
	PhaseFailed      Phase = "failed"
	PhaseCancelled   Phase = "cancelled"
)

var order = map[Phase]int{
	PhasePending: 0, PhaseCreateIndex: 1, PhaseCapture: 2, PhaseFill: 3, PhaseCatchUp: 4,
	PhaseValidate: 5, PhaseSwitch: 6, PhaseDrain: 7, PhaseSucceeded: 8, PhaseFailed: 8, PhaseCancelled: 8,
}

// Terminal reports whether the rebuild has ended.
func (p Phase) Terminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCancelled
}

// Valid reports whether p is a known phase.
func (p Phase) Valid() bool { _, ok := order[p]; return ok }

// Errors of the rebuild domain.
var (
	// ErrInvalid marks a bad request (an unknown source, say).
	ErrInvalid = errors.New("invalid rebuild request")
	// ErrAlreadyRunning means another rebuild holds the single-flight lock.
	ErrAlreadyRunning = errors.New("a rebuild is already running")
	// ErrNotFound means no rebuild has the id.
	ErrNotFound = errors.New("rebuild not found")
	// ErrFinished means the rebuild has already ended (cancel of a finished rebuild).
	ErrFinished = errors.New("rebuild already finished")
	// ErrPhaseOrder means a transition would go backwards or skip a step.
	ErrPhaseOrder = errors.New("rebuild phase out of order")
	// ErrValidation means the new index does not match the source; the alias was not switched.
	ErrValidation = errors.New("rebuild validation failed")
	// ErrAliasMoved means the alias no longer points at the index the rebuild started from.
	ErrAliasMoved = errors.New("alias moved during the rebuild")
	// ErrNotOwner means another runner owns the record now: it took the rebuild over after
	// this runner's heartbeat expired. The former runner must stop without touching the
	// record or the index, which belong to the new owner.
	ErrNotOwner = errors.New("the rebuild is owned by another runner")
	// ErrLockLost means the database session that held the single-flight lock is gone, so
	// nothing keeps a second rebuild from starting: the run stops.
	ErrLockLost = errors.New("the rebuild lock was lost")
)

// Rebuild is the record of one rebuild. Its fields are unexported: phases only move forward,
// through the methods below.
type Rebuild struct {
	id          string
	source      Source
	phase       Phase
	fromIndex   string
	toIndex     string
	docsDone    int64
	docsTotal   int64
	startedAt   time.Time
	updatedAt   time.Time
	finishedAt  *time.Time
	errMsg      string
	phaseStarts map[Phase]time.Time
	drainFrom   map[int32]int64
	owner       string
	heartbeatAt time.Time
}

// New starts a rebuild record in the pending phase.
func New(id string, source Source, now time.Time) (*Rebuild, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrInvalid)
	}
	if _, err := ParseSource(string(source)); err != nil {
		return nil, err
	}
	now = now.UTC()
	return &Rebuild{id: id, source: source, phase: PhasePending, startedAt: now, updatedAt: now, heartbeatAt: now,
		phaseStarts: map[Phase]time.Time{PhasePending: now}}, nil
}

// Snapshot is the full state of a rebuild record, for storage and display.
type Snapshot struct {
	ID          string
	Source      Source
	Phase       Phase
	FromIndex   string
	ToIndex     string
	DocsDone    int64
	DocsTotal   int64
	StartedAt   time.Time
	UpdatedAt   time.Time
	FinishedAt  *time.Time
	Error       string
	PhaseStarts map[Phase]time.Time
	// DrainFrom is the event-log position (partition -> offset) the catch-up ended at: what
	// a drain after the alias switch starts from, kept so that recovery can finish the drain
	// of a rebuild whose process died after the switch.
	DrainFrom map[int32]int64
	// Owner identifies the process that runs the rebuild (host, pid and a random suffix):
	// only the owner may save the record, so a runner that was taken over cannot overwrite
	// what its successor wrote.
	Owner string
	// HeartbeatAt is when the owner last proved it is alive. A record that is not finished
	// and whose heartbeat is older than the heartbeat timeout has a dead runner.
	HeartbeatAt time.Time
}

// UnmarshalRebuildFromDatabase rehydrates a stored record.
func UnmarshalRebuildFromDatabase(s Snapshot) (*Rebuild, error) {
	if s.ID == "" || !s.Phase.Valid() {
		return nil, fmt.Errorf("%w: stored rebuild %q in phase %q", ErrInvalid, s.ID, s.Phase)
	}
	starts := map[Phase]time.Time{}
	for k, v := range s.PhaseStarts {
		starts[k] = v
	}
	return &Rebuild{id: s.ID, source: s.Source, phase: s.Phase, fromIndex: s.FromIndex, toIndex: s.ToIndex,
		docsDone: s.DocsDone, docsTotal: s.DocsTotal, startedAt: s.StartedAt, updatedAt: s.UpdatedAt,
		finishedAt: s.FinishedAt, errMsg: s.Error, phaseStarts: starts, drainFrom: copyOffsets(s.DrainFrom),
		owner: s.Owner, heartbeatAt: s.HeartbeatAt}, nil
}

// Snapshot returns the record's state.
func (r *Rebuild) Snapshot() Snapshot {
	starts := make(map[Phase]time.Time, len(r.phaseStarts))
	for k, v := range r.phaseStarts {
		starts[k] = v
	}
	var fin *time.Time
	if r.finishedAt != nil {
		t := *r.finishedAt
		fin = &t
	}
	return Snapshot{ID: r.id, Source: r.source, Phase: r.phase, FromIndex: r.fromIndex, ToIndex: r.toIndex,
		DocsDone: r.docsDone, DocsTotal: r.docsTotal, StartedAt: r.startedAt, UpdatedAt: r.updatedAt,
		FinishedAt: fin, Error: r.errMsg, PhaseStarts: starts, DrainFrom: copyOffsets(r.drainFrom),
		Owner: r.owner, HeartbeatAt: r.heartbeatAt}
}

// Claim makes owner the record's runner, with a heartbeat now: the start of a run, or the
// take-over of a record whose runner died.
func (r *Rebuild) Claim(owner string, now time.Time) {
	r.owner, r.heartbeatAt = owner, now.UTC()
}

// Owner is the runner that owns the record ("" for records of releases without owners).
func (r *Rebuild) Owner() string { return r.owner }

// RunnerLost reports whether the rebuild is unfinished and its runner has not beaten for
// longer than timeout: the process died, hangs or cannot reach the database.
func (s Snapshot) RunnerLost(now time.Time, timeout time.Duration) bool {
	return !s.Phase.Terminal() && now.Sub(s.HeartbeatAt) > timeout
}

// SetDrainFrom records where the catch-up ended in the event log (partition -> offset).
func (r *Rebuild) SetDrainFrom(offsets map[int32]int64) { r.drainFrom = copyOffsets(offsets) }

// DrainFrom is where the catch-up ended; nil before the catch-up.
func (r *Rebuild) DrainFrom() map[int32]int64 { return copyOffsets(r.drainFrom) }

func copyOffsets(m map[int32]int64) map[int32]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[int32]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ID is the rebuild's id.
func (r *Rebuild) ID() string { return r.id }

// Source is where the rebuild reads from.
func (r *Rebuild) Source() Source { return r.source }

// Phase is the current phase.
func (r *Rebuild) Phase() Phase { return r.phase }

// Advance moves to the next phase; going backwards or leaving a terminal phase is refused.
func (r *Rebuild) Advance(p Phase, now time.Time) error {
	if r.phase.Terminal() || !p.Valid() || p.Terminal() || order[p] <= order[r.phase] {
		return fmt.Errorf("%w: %s -> %s", ErrPhaseOrder, r.phase, p)
	}
	r.phase = p
	r.updatedAt = now.UTC()
	r.phaseStarts[p] = r.updatedAt
	return nil
}

// SetIndices records the index the alias pointed at and the index being built.
func (r *Rebuild) SetIndices(from, to string) { r.fromIndex, r.toIndex = from, to }

// Progress records documents written and expected in the current phase.
func (r *Rebuild) Progress(done, total int64, now time.Time) {
	r.docsDone, r.docsTotal, r.updatedAt = done, total, now.UTC()
}

// Succeed ends the rebuild successfully.
func (r *Rebuild) Succeed(now time.Time) error { return r.finish(PhaseSucceeded, "", now) }

// Fail ends the rebuild with the reason an operator reads.
func (r *Rebuild) Fail(reason string, now time.Time) error { return r.finish(PhaseFailed, reason, now) }

// Cancel ends the rebuild at an operator's request.
func (r *Rebuild) Cancel(now time.Time) error {
	return r.finish(PhaseCancelled, "cancelled by operator", now)
}

func (r *Rebuild) finish(p Phase, reason string, now time.Time) error {
	if r.phase.Terminal() {
		return fmt.Errorf("%w: %s is %s", ErrFinished, r.id, r.phase)
	}
	now = now.UTC()
	r.phase, r.errMsg, r.updatedAt, r.finishedAt = p, reason, now, &now
	r.phaseStarts[p] = now
	return nil
}
