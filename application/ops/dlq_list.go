package ops

import (
	"context"
	"fmt"
	"slices"

	"github.com/marketplace/catalog/application/decorator"
)

// ListDLQ lists the dead letters a filter matches.
type ListDLQ struct {
	// Filter selects messages by class, aggregate and failure time.
	Filter DLQFilter
	// Limit > 0 keeps the newest Limit matches (like tail), so the latest failures are never
	// hidden behind old ones; 0 keeps all of them.
	Limit int
	// UnhandledOnly drops the messages replayed successfully or resolved (it needs the
	// audit log): what the status counts as unhandled.
	UnhandledOnly bool
}

// ListDLQHandler answers ListDLQ.
type ListDLQHandler decorator.Handler[ListDLQ, DLQListResult]

type listDLQHandler struct{ dlqPorts }

// NewListDLQHandler returns the decorated handler over reader; audit may be nil, and then
// UnhandledOnly fails with ErrAuditUnavailable.
func NewListDLQHandler(reader DLQReader, audit ReplayAudit, deps decorator.Deps) (ListDLQHandler, error) {
	if reader == nil {
		return nil, errNilReader
	}
	return decorator.Apply[ListDLQ, DLQListResult](listDLQHandler{dlqPorts{reader: reader, audit: audit}}, deps.Log, deps.Metrics), nil
}

// DLQListResult is the answer of ListDLQ.
type DLQListResult struct {
	// Messages are the matching messages, oldest failure first; with a limit, the newest
	// limit of them.
	Messages []DLQMessage
	// Matched is how many messages matched, including those the limit left out.
	Matched int
}

// Handle returns the messages that match the filter, oldest failure first.
func (s listDLQHandler) Handle(ctx context.Context, q ListDLQ) (DLQListResult, error) {
	f, limit, unhandledOnly := q.Filter, q.Limit, q.UnhandledOnly
	if err := f.validate(); err != nil {
		return DLQListResult{}, err
	}
	if limit < 0 {
		return DLQListResult{}, fmt.Errorf("%w: negative limit %d", ErrDLQInvalidFilter, limit)
	}
	if unhandledOnly && s.audit == nil {
		return DLQListResult{}, ErrAuditUnavailable
	}
	var res DLQListResult
	var keep []DLQMessage
	err := s.eachSelected(ctx, "dlq list", nil, f, func(batch []DLQMessage) error {
		if unhandledOnly {
			handled, err := s.handled(ctx, batch)
			if err != nil {
				return fmt.Errorf("dlq list: audit log: %w", err)
			}
			batch = slices.DeleteFunc(batch, func(m DLQMessage) bool { _, ok := handled[m.Ref]; return ok })
		}
		res.Matched += len(batch)
		keep = append(keep, batch...)
		if limit > 0 && len(keep) >= 2*limit+64 {
			dlqSort(keep)
			keep = slices.Delete(keep, 0, len(keep)-limit)
		}
		return nil
	})
	if err != nil {
		return DLQListResult{}, err
	}
	dlqSort(keep)
	if limit > 0 && len(keep) > limit {
		keep = slices.Delete(keep, 0, len(keep)-limit)
	}
	res.Messages = keep
	return res, nil
}

// dlqSort orders by failure time, then position, so output is stable.
func dlqSort(ms []DLQMessage) {
	slices.SortStableFunc(ms, func(a, b DLQMessage) int {
		if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
			return c
		}
		if a.Ref.Partition != b.Ref.Partition {
			return int(a.Ref.Partition - b.Ref.Partition)
		}
		return int(min(max(a.Ref.Offset-b.Ref.Offset, -1), 1))
	})
}
