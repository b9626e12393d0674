package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/marketplace/catalog/application/decorator"
)

// ErrResolveInvalidRequest marks a resolve request that selects nothing, everything
// implicitly, or two ways at once, or gives no reason. Nothing was resolved.
var ErrResolveInvalidRequest = errors.New("dlq resolve: invalid request")

// ResolveDLQ records dead letters as dropped on purpose.
type ResolveDLQ struct {
	// Request says which messages, how many, who resolves and why.
	Request ResolveRequest
	// OnOutcome, if not nil, is called for every selected message.
	OnOutcome func(ResolveOutcome)
}

// ResolveDLQHandler answers ResolveDLQ.
type ResolveDLQHandler decorator.Handler[ResolveDLQ, ResolveSummary]

type resolveDLQHandler struct{ dlqPorts }

// NewResolveDLQHandler returns the decorated handler over reader; audit may be nil, and
// then Handle fails with ErrAuditUnavailable.
func NewResolveDLQHandler(reader DLQReader, audit ReplayAudit, deps decorator.Deps) (ResolveDLQHandler, error) {
	if reader == nil {
		return nil, errNilReader
	}
	return decorator.Apply[ResolveDLQ, ResolveSummary](resolveDLQHandler{dlqPorts{reader: reader, audit: audit}}, deps.Log, deps.Metrics), nil
}

// ResolveRequest says which DLQ messages an operator drops: they stay in the topic until its
// retention removes them, but count as handled from now on (the status stops reporting them,
// replays skip them). Selecting works as for a replay.
type ResolveRequest struct {
	// Refs are explicit messages.
	Refs []DLQRef
	// Filter selects messages by class, aggregate and failure time.
	Filter DLQFilter
	// All selects every message of the DLQ; it must be asked for explicitly.
	All bool
	// Limit stops after this many messages were resolved (or would be); 0 means no limit.
	Limit int
	// DryRun reports what would be resolved and changes nothing.
	DryRun bool
	// Operator is recorded in the audit log: who resolved.
	Operator string
	// Reason is recorded in the audit log: why the messages may be dropped. Required.
	Reason string
}

// Validate reports a request ResolveDLQ refuses (ErrResolveInvalidRequest), without touching
// anything.
func (r ResolveRequest) Validate() error {
	if err := validateSelection(ErrResolveInvalidRequest, r.Refs, r.Filter, r.All, r.Limit, r.Operator); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(r.Reason) == "":
		return fmt.Errorf("%w: say why the messages may be dropped (the reason goes to the audit log)", ErrResolveInvalidRequest)
	case len(r.Reason) > 2000:
		return fmt.Errorf("%w: reason longer than 2000 bytes", ErrResolveInvalidRequest)
	}
	return nil
}

// ResolveAction is what a resolution did with one message.
type ResolveAction string

// Resolve actions.
const (
	// ResolveActionResolved: recorded as resolved in the audit log.
	ResolveActionResolved ResolveAction = "resolved"
	// ResolveActionWouldResolve: a dry run would have resolved it.
	ResolveActionWouldResolve ResolveAction = "would-resolve"
	// ResolveActionSkippedReplayed: a replay already published it, so it is handled.
	ResolveActionSkippedReplayed ResolveAction = "skipped-already-replayed"
	// ResolveActionSkippedResolved: it was resolved before.
	ResolveActionSkippedResolved ResolveAction = "skipped-already-resolved"
)

// ResolveOutcome is the fate of one message in a resolution.
type ResolveOutcome struct {
	// Message is the DLQ message.
	Message DLQMessage
	// Action is what happened to it.
	Action ResolveAction
	// AuditID is its audit entry, for resolved messages.
	AuditID int64
	// Previous is the earlier handling, for skipped messages.
	Previous *ReplayAuditEntry
}

// ResolveSummary counts a resolution's outcomes.
type ResolveSummary struct {
	// RunID groups the run's audit entries.
	RunID string
	// DryRun is true when nothing was changed.
	DryRun bool
	// Selected is how many messages the request selected.
	Selected int
	// Resolved is how many were resolved (or would be, in a dry run).
	Resolved int
	// SkippedHandled is how many were handled already (replayed or resolved).
	SkippedHandled int
	// LimitReached is true when the limit stopped the run early.
	LimitReached bool
}

// Handle records the selected DLQ messages as resolved: an operator decided to drop them.
// Nothing is published and the messages stay in the topic; each gets an audit entry with the
// operator and the reason. Messages handled before are skipped. The summary is returned with
// the error, if any.
func (s resolveDLQHandler) Handle(ctx context.Context, q ResolveDLQ) (ResolveSummary, error) {
	req, onOutcome := q.Request, q.OnOutcome
	if err := req.Validate(); err != nil {
		return ResolveSummary{}, err
	}
	if s.audit == nil {
		return ResolveSummary{}, ErrAuditUnavailable
	}
	if onOutcome == nil {
		onOutcome = func(ResolveOutcome) {}
	}
	r := &resolveRun{s: s.dlqPorts, req: req, onOutcome: onOutcome, sum: ResolveSummary{RunID: newRunID(), DryRun: req.DryRun}, seen: map[DLQRef]bool{}}
	err := s.eachSelected(ctx, "dlq resolve", req.Refs, req.Filter, func(batch []DLQMessage) error { return r.process(ctx, batch) })
	return r.sum, replayIgnoreStop(err)
}

type resolveRun struct {
	s         dlqPorts
	req       ResolveRequest
	onOutcome func(ResolveOutcome)
	sum       ResolveSummary
	seen      map[DLQRef]bool
}

// process deals with one batch of selected messages in order.
func (r *resolveRun) process(ctx context.Context, batch []DLQMessage) error {
	previous, err := r.s.handled(ctx, batch)
	if err != nil {
		return fmt.Errorf("dlq resolve: audit log: %w", err)
	}
	for _, m := range batch {
		if r.seen[m.Ref] {
			continue
		}
		r.seen[m.Ref] = true
		r.sum.Selected++
		if prev, ok := previous[m.Ref]; ok {
			action := ResolveActionSkippedReplayed
			if prev.Action == AuditActionResolve {
				action = ResolveActionSkippedResolved
			}
			r.sum.SkippedHandled++
			r.onOutcome(ResolveOutcome{Message: m, Action: action, Previous: &prev})
			continue
		}
		if r.req.Limit > 0 && r.sum.Resolved >= r.req.Limit {
			r.sum.Selected--
			r.sum.LimitReached = true
			return errReplayStop
		}
		if err := r.resolveOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// resolveOne records one message as resolved, or says it would be in a dry run.
func (r *resolveRun) resolveOne(ctx context.Context, m DLQMessage) error {
	if r.req.DryRun {
		r.sum.Resolved++
		r.onOutcome(ResolveOutcome{Message: m, Action: ResolveActionWouldResolve})
		return nil
	}
	id, err := r.s.audit.RecordResolution(ctx, ReplayAuditEntry{
		Action: AuditActionResolve, RunID: r.sum.RunID, Operator: r.req.Operator, DLQTopic: r.s.reader.DLQTopic(), Ref: m.Ref,
		ErrorClass: m.Class, AggregateID: m.AggregateID, EventID: m.EventID, Note: strings.TrimSpace(r.req.Reason), Result: ReplayResultOK,
	})
	if err != nil {
		return fmt.Errorf("dlq resolve %s: audit log: %w", m.Ref, err)
	}
	r.sum.Resolved++
	r.onOutcome(ResolveOutcome{Message: m, Action: ResolveActionResolved, AuditID: id})
	return nil
}
