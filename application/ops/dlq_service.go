package ops

import (
	"context"

	"github.com/marketplace/catalog/application/decorator"
)

// DLQService groups the DLQ tooling for the ports that offer all of it (the console, the
// CLI): list and show dead-lettered messages, replay them deliberately or resolve (drop)
// them, with an audit log. Each method runs its decorated use case; nothing here runs on its
// own, every replay is an operator's command.
type DLQService struct {
	reader  DLQReader
	list    ListDLQHandler
	show    ShowDLQHandler
	replay  ReplayDLQHandler
	resolve ResolveDLQHandler
	audit   ListDLQAuditHandler
}

// NewDLQService returns the DLQ use cases over reader. pub and audit may be nil for a service
// that only lists and shows; Replay then fails with ErrReplayUnavailable, Resolve, Audit and
// an unhandled-only List with ErrAuditUnavailable.
func NewDLQService(reader DLQReader, pub ReplayPublisher, audit ReplayAudit, deps decorator.Deps) (*DLQService, error) {
	if reader == nil {
		return nil, errNilReader
	}
	s := &DLQService{reader: reader}
	var err error
	if s.list, err = NewListDLQHandler(reader, audit, deps); err != nil {
		return nil, err
	}
	if s.show, err = NewShowDLQHandler(reader, deps); err != nil {
		return nil, err
	}
	if s.replay, err = NewReplayDLQHandler(reader, pub, audit, deps); err != nil {
		return nil, err
	}
	if s.resolve, err = NewResolveDLQHandler(reader, audit, deps); err != nil {
		return nil, err
	}
	if s.audit, err = NewListDLQAuditHandler(audit, deps); err != nil {
		return nil, err
	}
	return s, nil
}

// DLQTopic names the DLQ topic the service reads.
func (s *DLQService) DLQTopic() string { return s.reader.DLQTopic() }

// List runs ListDLQ: the messages that match f, oldest failure first; limit > 0 keeps the
// newest limit of them, unhandledOnly drops those replayed or resolved.
func (s *DLQService) List(ctx context.Context, f DLQFilter, limit int, unhandledOnly bool) (DLQListResult, error) {
	return s.list.Handle(ctx, ListDLQ{Filter: f, Limit: limit, UnhandledOnly: unhandledOnly})
}

// Show runs ShowDLQ: one message.
func (s *DLQService) Show(ctx context.Context, ref DLQRef) (DLQMessage, error) {
	return s.show.Handle(ctx, ShowDLQ{Ref: ref})
}

// Replay runs ReplayDLQ: the selected messages republished (or, in a dry run, what would
// be), onOutcome told about each.
func (s *DLQService) Replay(ctx context.Context, req ReplayRequest, onOutcome func(ReplayOutcome)) (ReplaySummary, error) {
	return s.replay.Handle(ctx, ReplayDLQ{Request: req, OnOutcome: onOutcome})
}

// Resolve runs ResolveDLQ: the selected messages recorded as dropped on purpose,
// onOutcome told about each.
func (s *DLQService) Resolve(ctx context.Context, req ResolveRequest, onOutcome func(ResolveOutcome)) (ResolveSummary, error) {
	return s.resolve.Handle(ctx, ResolveDLQ{Request: req, OnOutcome: onOutcome})
}

// Audit runs ListDLQAudit for this service's DLQ topic: the entries f selects, newest first,
// the console's trail beside the dead letters.
func (s *DLQService) Audit(ctx context.Context, f AuditFilter) ([]ReplayAuditEntry, error) {
	f.DLQTopic = s.DLQTopic()
	return s.audit.Handle(ctx, ListDLQAudit{Filter: f})
}
