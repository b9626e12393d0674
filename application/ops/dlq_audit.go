package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marketplace/catalog/application/decorator"
)

// ErrAuditUnavailable means the service was built without an audit log.
var ErrAuditUnavailable = errors.New("dlq: no audit log configured")

// Actions of an audit entry.
const (
	// AuditActionReplay: the message was republished to the events topic.
	AuditActionReplay = "replay"
	// AuditActionResolve: an operator decided to drop the message; it counts as handled.
	AuditActionResolve = "resolve"
)

// Results of an audit entry. A resolution is recorded as ok at once.
const (
	// ReplayResultPending: the entry was recorded and the publish not yet confirmed; an entry
	// left pending means the process died in between (the event may or may not be in Kafka).
	ReplayResultPending = "pending"
	// ReplayResultOK: the events topic acknowledged the replayed event. It says nothing about
	// the projection: a message whose cause is not fixed comes back to the DLQ.
	ReplayResultOK = "ok"
	// ReplayResultError: publishing failed; Error says why.
	ReplayResultError = "error"
)

// ReplayAuditEntry is one entry of the DLQ audit log: a replayed or a resolved message.
type ReplayAuditEntry struct {
	// ID is assigned by the audit log.
	ID int64
	// Action is AuditActionReplay or AuditActionResolve.
	Action string
	// RunID groups the entries of one replay or resolve command.
	RunID string
	// ReplayedAt is when the entry was recorded (by the audit log's clock).
	ReplayedAt time.Time
	// Operator is who replayed (the --operator string).
	Operator string
	// DLQTopic is the DLQ topic the message was read from.
	DLQTopic string
	// Ref is the message's position in the DLQ topic.
	Ref DLQRef
	// ErrorClass is the message's failure class.
	ErrorClass string
	// AggregateID is the product id, "" when unknown.
	AggregateID string
	// EventID is the event id, "" when unknown.
	EventID string
	// TargetTopic is the topic the event was republished to; empty for a resolution.
	TargetTopic string
	// Note is the operator's reason, for a resolution.
	Note string
	// Result is ReplayResultPending, ReplayResultOK or ReplayResultError.
	Result string
	// Error is the publish error for ReplayResultError.
	Error string
	// Target is where the event was written, for ReplayResultOK.
	Target *ReplayTarget
	// FinishedAt is when the result was recorded; zero while pending.
	FinishedAt time.Time
}

// AuditFilter selects audit entries. Empty fields do not filter.
type AuditFilter struct {
	// DLQTopic keeps the entries of one DLQ topic.
	DLQTopic string
	// RunID keeps the entries of one command.
	RunID string
	// AggregateID keeps the entries of one product.
	AggregateID string
	// Ref keeps the entries of one message (with DLQTopic).
	Ref *DLQRef
	// Action keeps replays or resolutions.
	Action string
	// Limit caps the number of entries (the newest); 0 means DefaultAuditLimit.
	Limit int
}

// DefaultAuditLimit is how many audit entries a listing returns unless told otherwise.
const DefaultAuditLimit = 100

// ListDLQAudit reads the DLQ audit log.
type ListDLQAudit struct {
	// Filter selects the entries; its DLQTopic is required.
	Filter AuditFilter
}

// ListDLQAuditHandler answers ListDLQAudit.
type ListDLQAuditHandler decorator.Handler[ListDLQAudit, []ReplayAuditEntry]

type listDLQAuditHandler struct {
	audit ReplayAudit
}

// NewListDLQAuditHandler returns the decorated handler over audit; audit may be nil, and
// then Handle fails with ErrAuditUnavailable.
func NewListDLQAuditHandler(audit ReplayAudit, deps decorator.Deps) (ListDLQAuditHandler, error) {
	return decorator.Apply[ListDLQAudit, []ReplayAuditEntry](listDLQAuditHandler{audit: audit}, deps.Log, deps.Metrics), nil
}

// Handle returns the entries the filter selects, newest first (see ReadAudit).
func (h listDLQAuditHandler) Handle(ctx context.Context, q ListDLQAudit) ([]ReplayAuditEntry, error) {
	return ReadAudit(ctx, h.audit, q.Filter)
}

// ReadAudit returns the entries of the DLQ audit log that f selects, newest first: every
// replay and resolution, with who, when, why and the result. f.DLQTopic is required, so one
// deployment's entries are not mixed with another's.
func ReadAudit(ctx context.Context, audit ReplayAudit, f AuditFilter) ([]ReplayAuditEntry, error) {
	if audit == nil {
		return nil, ErrAuditUnavailable
	}
	switch {
	case f.DLQTopic == "":
		return nil, fmt.Errorf("%w: no DLQ topic", ErrDLQInvalidFilter)
	case f.Action != "" && f.Action != AuditActionReplay && f.Action != AuditActionResolve:
		return nil, fmt.Errorf("%w: action %q: want %s or %s", ErrDLQInvalidFilter, f.Action, AuditActionReplay, AuditActionResolve)
	case f.Limit < 0:
		return nil, fmt.Errorf("%w: negative limit %d", ErrDLQInvalidFilter, f.Limit)
	case f.Limit == 0:
		f.Limit = DefaultAuditLimit
	}
	entries, err := audit.ListAudit(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: %w", err)
	}
	return entries, nil
}
