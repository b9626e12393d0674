// Package readmodel models how a read model is named and rebuilt: versioned index names under
// an alias, and the rebuild record (a new index filled from a source, caught up with live
// events, validated and made live by an atomic alias switch). The record lives in the system
// of record so every replica can report it and a crash leaves a trace.
package readmodel

import (
	"errors"
	"fmt"
	"maps"
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

// Before reports whether p comes before q in the strict order (the terminal phases come
// after every other).
func (p Phase) Before(q Phase) bool { return order[p] < order[q] }

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
	eventsDone  int64
	eventsTotal int64
	catchUpFrom map[int32]int64
	fillAfter   string
	fillAt      map[int32]int64
	rate        float64
	resumes     int
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
	// EventsDone counts the events read from the event log and applied to the new index: the
	// whole fill of a Kafka-sourced rebuild, and the catch-up and drain of either source.
	EventsDone int64
	// EventsTotal is the number of events expected so far (the ranges of the log the rebuild
	// has set out to read); it grows to EventsDone, so done <= total always holds.
	EventsTotal int64
	// CatchUpFrom is the event-log position captured before the fill began: the catch-up
	// reads from there, so every change made during the fill, or while a chunk was read,
	// reaches the new index. Kept so that a resumed rebuild catches up from the same place.
	CatchUpFrom map[int32]int64
	// FillAfter is, for a database fill, the id of the last product of the last chunk written
	// to the new index: a resumed fill reads the products after it. Empty before the first.
	FillAfter string
	// FillAt is, for a Kafka fill, the log position (partition -> next offset) up to which
	// every event has been written to the new index: a resumed fill reads from there.
	FillAt map[int32]int64
	// Rate is how fast the current phase's work goes, per second over a recent window: in
	// documents for a database fill, in events for a Kafka fill and a catch-up (WorkUnit);
	// 0 while unknown and in phases without a measurable amount of work.
	Rate float64
	// Resumes counts how often the rebuild was resumed after its runner stopped (a process
	// killed or shut down, a lost lock).
	Resumes int
}

// Unit is what a phase's amount of work is counted in.
type Unit string

// The units of work.
const (
	UnitDocuments Unit = "documents"
	UnitEvents    Unit = "events"
)

// WorkUnit is what the current phase's progress (Work) is counted in; "" when the phase has no
// measurable amount of work, and then there is no rate or estimate either.
func (s Snapshot) WorkUnit() Unit {
	switch {
	case s.Phase == PhaseFill && s.Source == SourceKafka, s.Phase == PhaseCatchUp:
		return UnitEvents
	case s.Phase == PhaseFill:
		return UnitDocuments
	}
	return ""
}

// Work is the current phase's progress in its WorkUnit: done so far and expected in all
// (cumulative over the rebuild, so a catch-up's events count on from a Kafka fill's).
func (s Snapshot) Work() (done, total int64) {
	switch s.WorkUnit() {
	case UnitDocuments:
		return s.DocsDone, s.DocsTotal
	case UnitEvents:
		return s.EventsDone, s.EventsTotal
	}
	return 0, 0
}

// ETA estimates the time the current phase still needs, at Rate from when the record was
// last updated; ok is false without a rate, or outside the phases that have one. It is
// derived from the record alone, so every replica, CLI and dashboard shows the same.
func (s Snapshot) ETA() (eta time.Duration, ok bool) {
	done, total := s.Work()
	if s.Rate <= 0 || s.WorkUnit() == "" || s.Phase.Terminal() {
		return 0, false
	}
	secs := float64(max(total-done, 0)) / s.Rate
	const most = float64(100 * 365 * 24 * time.Hour)
	return time.Duration(min(secs*float64(time.Second), most)), true
}

// EstimatedCompletion is when the current phase is expected to end: the record's last update
// plus ETA.
func (s Snapshot) EstimatedCompletion() (time.Time, bool) {
	eta, ok := s.ETA()
	if !ok {
		return time.Time{}, false
	}
	return s.UpdatedAt.Add(eta), true
}

// Resumable reports whether a rebuild whose runner stopped can go on from where it was
// instead of starting over: it has not gone past its alias switch (whether the switch itself
// happened, the alias says: the caller checks it), and once its fill began it knows where its
// catch-up starts (records of releases before resumable fills do not).
func (s Snapshot) Resumable() bool {
	if s.Phase.Terminal() || order[s.Phase] > order[PhaseSwitch] {
		return false
	}
	return order[s.Phase] < order[PhaseFill] || s.CatchUpFrom != nil
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
		owner: s.Owner, heartbeatAt: s.HeartbeatAt, eventsDone: s.EventsDone, eventsTotal: s.EventsTotal,
		catchUpFrom: maps.Clone(s.CatchUpFrom), fillAfter: s.FillAfter, fillAt: copyOffsets(s.FillAt),
		rate: s.Rate, resumes: s.Resumes}, nil
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
		Owner: r.owner, HeartbeatAt: r.heartbeatAt, EventsDone: r.eventsDone, EventsTotal: r.eventsTotal,
		CatchUpFrom: maps.Clone(r.catchUpFrom), FillAfter: r.fillAfter, FillAt: copyOffsets(r.fillAt),
		Rate: r.rate, Resumes: r.resumes}
}

// Claim makes owner the record's runner, with a heartbeat now: the start of a run, or the
// take-over of a record whose runner died.
func (r *Rebuild) Claim(owner string, now time.Time) {
	r.owner, r.heartbeatAt = owner, now.UTC()
}

// Owner is the runner that owns the record: "" while nobody does (a runner handed it over
// for a replica to resume, or a record of a release without owners).
func (r *Rebuild) Owner() string { return r.owner }

// Resume records that the claimed record goes on from where its previous runner stopped.
func (r *Rebuild) Resume(now time.Time) {
	r.resumes++
	r.rate = 0 // measured afresh by the new runner
	r.updatedAt = now.UTC()
}

// RunnerLost reports whether the rebuild is unfinished and its runner has not beaten for
// longer than timeout: the process died, hangs or cannot reach the database.
func (s Snapshot) RunnerLost(now time.Time, timeout time.Duration) bool {
	return !s.Phase.Terminal() && now.Sub(s.HeartbeatAt) > timeout
}

// SetDrainFrom records where the catch-up ended in the event log (partition -> offset).
func (r *Rebuild) SetDrainFrom(offsets map[int32]int64) { r.drainFrom = copyOffsets(offsets) }

// DrainFrom is where the catch-up ended; nil before the catch-up.
func (r *Rebuild) DrainFrom() map[int32]int64 { return copyOffsets(r.drainFrom) }

// copyOffsets copies a position where empty means none: it is stored as nil.
func copyOffsets(m map[int32]int64) map[int32]int64 {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
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
	r.rate = 0 // each phase's work has its own rate
	return nil
}

// SetIndices records the index the alias pointed at and the index being built.
func (r *Rebuild) SetIndices(from, to string) { r.fromIndex, r.toIndex = from, to }

// Progress records documents written and expected; total is raised to done when more were
// written than expected (products created during the fill), so done <= total always holds.
func (r *Rebuild) Progress(done, total int64, now time.Time) {
	r.docsDone, r.docsTotal, r.updatedAt = done, max(total, done), now.UTC()
}

// SetCatchUpFrom records the event-log position captured before the fill.
func (r *Rebuild) SetCatchUpFrom(offsets map[int32]int64) {
	r.catchUpFrom = maps.Clone(offsets)
	if r.catchUpFrom == nil {
		r.catchUpFrom = map[int32]int64{} // captured, on a log without partitions: not "unknown"
	}
}

// CatchUpFrom is the position captured before the fill; nil before it was captured.
func (r *Rebuild) CatchUpFrom() map[int32]int64 { return maps.Clone(r.catchUpFrom) }

// FilledChunk records that the products of a database fill up to and including lastID are
// in the new index, n of them in this chunk. Chunks are read in id order, so lastID must come
// after the previous chunk's: a cursor that went backwards would re-read without end.
func (r *Rebuild) FilledChunk(lastID string, n int64, now time.Time) error {
	if r.phase != PhaseFill || lastID <= r.fillAfter {
		return fmt.Errorf("%w: chunk ending at %q after %q in phase %s", ErrPhaseOrder, lastID, r.fillAfter, r.phase)
	}
	r.fillAfter = lastID
	r.Progress(r.docsDone+n, r.docsTotal, now)
	return nil
}

// FilledEvents records that a Kafka fill has written n more events and that every event
// before at (partition -> next offset) is in the new index.
func (r *Rebuild) FilledEvents(at map[int32]int64, n int64, now time.Time) {
	r.fillAt = copyOffsets(at)
	r.AppliedEvents(n, now)
}

// ExpectEvents adds n events to those the rebuild expects to read.
func (r *Rebuild) ExpectEvents(n int64) { r.eventsTotal += max(n, 0) }

// AppliedEvents counts n more events read from the log and applied to the new index.
func (r *Rebuild) AppliedEvents(n int64, now time.Time) {
	r.eventsDone += n
	r.eventsTotal = max(r.eventsTotal, r.eventsDone)
	r.updatedAt = now.UTC()
}

// FinishEvents ends a read of the log: what was expected but not read (transaction markers,
// records that are not product events, a range that ended early) is no longer expected.
func (r *Rebuild) FinishEvents() { r.eventsTotal = r.eventsDone }

// SetRate records the current phase's rate (per second, in its WorkUnit; 0 = unknown).
func (r *Rebuild) SetRate(perSecond float64) { r.rate = max(perSecond, 0) }

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
	r.rate = 0
	return nil
}
