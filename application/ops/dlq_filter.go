package ops

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrDLQInvalidFilter marks a filter that can match nothing by construction (an empty time
// range, an empty class).
var ErrDLQInvalidFilter = errors.New("dlq: invalid filter")

// DLQFilter selects DLQ messages. Empty fields do not filter.
type DLQFilter struct {
	// Classes keeps messages whose failure class is one of these (case-insensitive).
	Classes []string
	// AggregateID keeps messages of one product (case-insensitive).
	AggregateID string
	// Since keeps messages that failed at or after it.
	Since time.Time
	// Until keeps messages that failed before it.
	Until time.Time
}

// Selects reports whether the filter narrows anything down, i.e. whether it is a replay
// selector. A filter that selects nothing specific would mean "everything".
func (f DLQFilter) Selects() bool {
	return len(f.Classes) > 0 || f.AggregateID != "" || !f.Since.IsZero() || !f.Until.IsZero()
}

// Matches reports whether m passes the filter.
func (f DLQFilter) Matches(m DLQMessage) bool {
	if len(f.Classes) > 0 && !slices.ContainsFunc(f.Classes, func(c string) bool { return strings.EqualFold(c, m.Class) }) {
		return false
	}
	if f.AggregateID != "" && !strings.EqualFold(f.AggregateID, m.AggregateID) {
		return false
	}
	if !f.Since.IsZero() && m.FailedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !m.FailedAt.Before(f.Until) {
		return false
	}
	return true
}

func (f DLQFilter) validate() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return fmt.Errorf("%w: until (%s) must be after since (%s)", ErrDLQInvalidFilter,
			f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	for _, c := range f.Classes {
		if strings.TrimSpace(c) == "" {
			return fmt.Errorf("%w: empty error class", ErrDLQInvalidFilter)
		}
	}
	return nil
}
