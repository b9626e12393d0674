package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marketplace/catalog/application/decorator"
)

// Errors of ReplayDLQ.
var (
	// ErrReplayInvalidRequest: a replay request that selects nothing, everything implicitly,
	// or two ways at once. Nothing was replayed.
	ErrReplayInvalidRequest = errors.New("dlq replay: invalid request")
	// ErrReplayUnavailable: the service was built without a publisher or audit log.
	ErrReplayUnavailable = errors.New("dlq replay: no publisher or audit log configured")
)

// ReplayDLQ republishes dead letters to the events topic, deliberately: nothing is ever
// replayed on its own.
type ReplayDLQ struct {
	// Request says which messages, how many, and who asks.
	Request ReplayRequest
	// OnOutcome, if not nil, is called for every selected message as it is dealt with, so a
	// long replay shows progress.
	OnOutcome func(ReplayOutcome)
}

// ReplayDLQHandler answers ReplayDLQ.
type ReplayDLQHandler decorator.Handler[ReplayDLQ, ReplaySummary]

type replayDLQHandler struct{ dlqPorts }

// NewReplayDLQHandler returns the decorated handler over reader. pub and audit may be nil
// for a process that only lists and shows; Handle then fails with ErrReplayUnavailable.
func NewReplayDLQHandler(reader DLQReader, pub ReplayPublisher, audit ReplayAudit, deps decorator.Deps) (ReplayDLQHandler, error) {
	if reader == nil {
		return nil, errNilReader
	}
	return decorator.Apply[ReplayDLQ, ReplaySummary](replayDLQHandler{dlqPorts{reader: reader, pub: pub, audit: audit}}, deps.Log, deps.Metrics), nil
}

// ReplayRequest says which DLQ messages to replay. Exactly one way of selecting is allowed:
// Refs, a Filter that Selects, or All. Nothing is ever replayed implicitly.
type ReplayRequest struct {
	// Refs are explicit messages.
	Refs []DLQRef
	// Filter selects messages by class, aggregate and failure time.
	Filter DLQFilter
	// All selects every message of the DLQ; it must be asked for explicitly.
	All bool
	// Limit stops after this many messages were replayed (or would be, in a dry run); 0 means
	// no limit.
	Limit int
	// DryRun reports what would be replayed and changes nothing: no publish, no audit entry.
	DryRun bool
	// Force replays messages that were handled before (an earlier replay published them, or
	// an operator resolved them); by default they are skipped, so running the same command
	// twice does not replay twice.
	Force bool
	// Operator is recorded in the audit log: who replayed.
	Operator string
}

// Validate reports a request ReplayDLQ refuses (ErrReplayInvalidRequest), without touching
// anything, so a caller can reject it before connecting anywhere.
func (r ReplayRequest) Validate() error {
	return validateSelection(ErrReplayInvalidRequest, r.Refs, r.Filter, r.All, r.Limit, r.Operator)
}

// ReplayAction is what a replay did with one message.
type ReplayAction string

// Replay actions.
const (
	// ReplayActionReplayed: published to the events topic and audited as ok.
	ReplayActionReplayed ReplayAction = "replayed"
	// ReplayActionWouldReplay: a dry run would have replayed it.
	ReplayActionWouldReplay ReplayAction = "would-replay"
	// ReplayActionFailed: publishing failed; audited as error. The replay stops there.
	ReplayActionFailed ReplayAction = "failed"
	// ReplayActionSkippedReplayed: an earlier replay already published it (see Force).
	ReplayActionSkippedReplayed ReplayAction = "skipped-already-replayed"
	// ReplayActionSkippedResolved: an operator resolved (dropped) it (see Force).
	ReplayActionSkippedResolved ReplayAction = "skipped-resolved"
	// ReplayActionSkippedDuplicate: another copy of the same event was replayed in this run.
	ReplayActionSkippedDuplicate ReplayAction = "skipped-duplicate"
	// ReplayActionSkippedTruncated: the payload was cut to fit the DLQ, so it is not the
	// event any more and is never replayed, Force or not; resolve it once its product is
	// repaired (an update rewrites the read model's document).
	ReplayActionSkippedTruncated ReplayAction = "skipped-truncated"
)

// ReplayOutcome is the fate of one message in a replay.
type ReplayOutcome struct {
	// Message is the DLQ message.
	Message DLQMessage
	// Action is what happened to it.
	Action ReplayAction
	// AuditID is its audit entry, for replayed and failed messages.
	AuditID int64
	// Target is where it was written, for replayed messages.
	Target ReplayTarget
	// Err is the publish error, for failed messages.
	Err error
	// Previous is the earlier handling (a replay or a resolution), for skipped-already-replayed
	// and skipped-resolved messages.
	Previous *ReplayAuditEntry
	// DuplicateOf is the copy replayed instead, for skipped-duplicate messages.
	DuplicateOf DLQRef
}

// ReplaySummary counts a replay's outcomes.
type ReplaySummary struct {
	// RunID groups the run's audit entries.
	RunID string
	// DryRun is true when nothing was changed.
	DryRun bool
	// Selected is how many messages the request selected.
	Selected int
	// Replayed is how many were published (or would be, in a dry run).
	Replayed int
	// Failed is how many could not be published.
	Failed int
	// SkippedReplayed is how many were skipped as already replayed.
	SkippedReplayed int
	// SkippedResolved is how many were skipped as resolved.
	SkippedResolved int
	// SkippedDuplicate is how many were skipped as copies of an event replayed in this run.
	SkippedDuplicate int
	// SkippedTruncated is how many were skipped because their payload was cut.
	SkippedTruncated int
	// LimitReached is true when the limit stopped the run early.
	LimitReached bool
}

// Handle republishes the selected DLQ messages to the events topic, each with its original
// payload and headers (minus the DLQ ones), keyed by aggregate id. Versions make this safe:
// a replayed event older than the read model's document changes nothing. Messages handled
// before (replayed, resolved) are skipped unless Force; messages whose payload was cut are
// never replayed.
//
// Every publish is audited: the entry is recorded before the publish and completed after it,
// so it exists even when the publish fails (result error) or the process dies (pending). When
// the audit log cannot be written nothing is published. The first publish failure stops the
// run: the rest are not attempted (a broken cluster would fail them all, one timeout each).
//
// The summary is returned with the error, if any.
func (s replayDLQHandler) Handle(ctx context.Context, q ReplayDLQ) (ReplaySummary, error) {
	req, onOutcome := q.Request, q.OnOutcome
	if err := req.Validate(); err != nil {
		return ReplaySummary{}, err
	}
	if s.pub == nil || s.audit == nil {
		return ReplaySummary{}, ErrReplayUnavailable
	}
	if onOutcome == nil {
		onOutcome = func(ReplayOutcome) {}
	}
	r := &replayRun{s: s.dlqPorts, req: req, onOutcome: onOutcome, sum: ReplaySummary{RunID: newRunID(), DryRun: req.DryRun},
		replayedEvents: map[string]DLQRef{}, seenRefs: map[DLQRef]bool{}}
	err := s.eachSelected(ctx, "dlq replay", req.Refs, req.Filter, func(batch []DLQMessage) error { return r.process(ctx, batch) })
	return r.sum, replayIgnoreStop(err)
}

type replayRun struct {
	s         dlqPorts
	req       ReplayRequest
	onOutcome func(ReplayOutcome)
	sum       ReplaySummary
	// replayedEvents maps an event id to the copy replayed (or to be replayed) in this run.
	replayedEvents map[string]DLQRef
	seenRefs       map[DLQRef]bool
}

// process deals with one batch of selected messages in order.
func (r *replayRun) process(ctx context.Context, batch []DLQMessage) error {
	var previous map[DLQRef]ReplayAuditEntry
	if !r.req.Force {
		var err error
		if previous, err = r.s.handled(ctx, batch); err != nil {
			return fmt.Errorf("dlq replay: audit log: %w", err)
		}
	}
	for _, m := range batch {
		if r.seenRefs[m.Ref] {
			continue // the same reference given twice
		}
		r.seenRefs[m.Ref] = true
		r.sum.Selected++
		if r.skip(m, previous) {
			continue
		}
		if r.req.Limit > 0 && r.sum.Replayed >= r.req.Limit {
			r.sum.Selected-- // not dealt with: the limit stops the run before it
			r.sum.LimitReached = true
			return errReplayStop
		}
		if m.EventID != "" {
			r.replayedEvents[m.EventID] = m.Ref
		}
		if r.req.DryRun {
			r.sum.Replayed++
			r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionWouldReplay})
			continue
		}
		if err := r.replayOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// skip reports, and tells onOutcome, when m is not to be replayed: its payload was cut, it
// was handled before, or another copy of its event is replayed in this run.
func (r *replayRun) skip(m DLQMessage, previous map[DLQRef]ReplayAuditEntry) bool {
	if m.Truncated {
		r.sum.SkippedTruncated++
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionSkippedTruncated})
		return true
	}
	if prev, ok := previous[m.Ref]; ok {
		action := ReplayActionSkippedReplayed
		if prev.Action == AuditActionResolve {
			action = ReplayActionSkippedResolved
			r.sum.SkippedResolved++
		} else {
			r.sum.SkippedReplayed++
		}
		r.onOutcome(ReplayOutcome{Message: m, Action: action, Previous: &prev})
		return true
	}
	if first, ok := r.replayedEvents[m.EventID]; ok && m.EventID != "" {
		r.sum.SkippedDuplicate++
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionSkippedDuplicate, DuplicateOf: first})
		return true
	}
	return false
}

// replayOne audits, publishes and completes the audit entry of one message.
func (r *replayRun) replayOne(ctx context.Context, m DLQMessage) error {
	dlqTopic, target := r.s.reader.DLQTopic(), r.s.pub.TargetTopic()
	id, err := r.s.audit.BeginReplay(ctx, ReplayAuditEntry{
		Action: AuditActionReplay, RunID: r.sum.RunID, Operator: r.req.Operator, DLQTopic: dlqTopic, Ref: m.Ref, ErrorClass: m.Class,
		AggregateID: m.AggregateID, EventID: m.EventID, TargetTopic: target, Result: ReplayResultPending,
	})
	if err != nil {
		return fmt.Errorf("dlq replay %s: audit log (nothing published): %w", m.Ref, err)
	}
	pos, perr := r.s.pub.PublishReplay(ctx, replayMessage(dlqTopic, m))
	if perr != nil {
		r.sum.Failed++
		// Record the failure even when ctx was cancelled: the entry must not stay pending
		// for a publish that is known to have failed.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		errText := perr.Error()
		if errors.Is(perr, context.Canceled) || errors.Is(perr, context.DeadlineExceeded) {
			// An interrupted produce may still have reached Kafka; the entry must not claim
			// more than is known.
			errText = "interrupted before Kafka acknowledged it (the event may or may not have been published): " + errText
		}
		ferr := r.s.audit.FinishReplay(fctx, id, ReplayResultError, nil, errText)
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionFailed, AuditID: id, Err: perr})
		if ferr != nil {
			return fmt.Errorf("dlq replay %s: publish to %s: %w (and recording the failure in the audit log: %w)", m.Ref, target, perr, ferr)
		}
		return fmt.Errorf("dlq replay %s: publish to %s: %w", m.Ref, target, perr)
	}
	r.sum.Replayed++
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.s.audit.FinishReplay(fctx, id, ReplayResultOK, &pos, ""); err != nil {
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionReplayed, AuditID: id, Target: pos})
		return fmt.Errorf("dlq replay %s: published to %s partition %d offset %d, but the audit entry %d stays pending: %w",
			m.Ref, target, pos.Partition, pos.Offset, id, err)
	}
	r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionReplayed, AuditID: id, Target: pos})
	return nil
}

// ReplayMessage is an event to put back on the events topic.
type ReplayMessage struct {
	// Key is the record key: the aggregate id, so the event lands on its product's partition.
	Key string
	// Headers are the original event's headers without the DLQ ones, plus replayed_from.
	Headers []DLQHeader
	// Payload is the original event, byte for byte.
	Payload []byte
}

// ReplayTarget is where a replayed event was written.
type ReplayTarget struct {
	// Partition is the events topic's partition.
	Partition int32
	// Offset is the record's offset there.
	Offset int64
}

// replayMessage is the event to republish: the original payload and headers without the
// DLQ ones, keyed by aggregate id (the DLQ record's key when the id is unknown).
func replayMessage(dlqTopic string, m DLQMessage) ReplayMessage {
	headers := make([]DLQHeader, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if !IsDLQHeader(h.Key) {
			headers = append(headers, h)
		}
	}
	headers = append(headers, DLQHeader{Key: ReplayHeaderReplayedFrom, Value: dlqTopic + "/" + m.Ref.String()})
	return ReplayMessage{Key: dlqFirstNonEmpty(m.AggregateID, m.Key), Headers: headers, Payload: m.Payload}
}
