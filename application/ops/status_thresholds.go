package ops

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Thresholds are the limits of the health rules.
type Thresholds struct {
	// MaxOutboxAge is the oldest an unrelayed event may be.
	MaxOutboxAge time.Duration
	// MaxLag is the projector group's largest allowed total lag.
	MaxLag int64
	// MaxCountDriftRatio and MaxCountDriftDocs bound the difference between live documents
	// and live products: the larger of MaxCountDriftRatio * live products and
	// MaxCountDriftDocs. Live writes make exact equality flaky.
	MaxCountDriftRatio float64
	// MaxCountDriftDocs is the absolute floor of the allowed count drift.
	MaxCountDriftDocs int64
	// MaxTxAge is the longest a read-only database transaction may stay open (it holds back
	// vacuum). A transaction that holds back the relay is judged by MaxOutboxAge instead,
	// the relay's latency budget.
	MaxTxAge time.Duration
	// MaxStall is the longest a partition's committed offset may stand still while records
	// wait behind it.
	MaxStall time.Duration
}

// Defaults of Thresholds.
const (
	DefaultMaxOutboxAge       = 60 * time.Second
	DefaultMaxLag             = 10_000
	DefaultMaxCountDriftRatio = 0.001
	DefaultMaxCountDriftDocs  = 10
	DefaultMaxTxAge           = 5 * time.Minute
	// DefaultMaxStall is well above what a healthy partition goes without a commit: the
	// projector commits every 200 ms, a failover takes under 10 s, and transient retries
	// back off to at most 5 s.
	DefaultMaxStall = 30 * time.Second
)

// DefaultThresholds returns the default limits.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxOutboxAge: DefaultMaxOutboxAge, MaxLag: DefaultMaxLag, MaxCountDriftRatio: DefaultMaxCountDriftRatio,
		MaxCountDriftDocs: DefaultMaxCountDriftDocs, MaxTxAge: DefaultMaxTxAge, MaxStall: DefaultMaxStall}
}

// Validate reports every negative limit.
func (t Thresholds) Validate() error {
	var errs []error
	if t.MaxOutboxAge < 0 {
		errs = append(errs, fmt.Errorf("max outbox age %s is negative", t.MaxOutboxAge))
	}
	if t.MaxLag < 0 {
		errs = append(errs, fmt.Errorf("max lag %d is negative", t.MaxLag))
	}
	if t.MaxCountDriftRatio < 0 || math.IsNaN(t.MaxCountDriftRatio) || math.IsInf(t.MaxCountDriftRatio, 0) {
		errs = append(errs, fmt.Errorf("max count drift ratio %v is not a non-negative number", t.MaxCountDriftRatio))
	}
	if t.MaxCountDriftDocs < 0 {
		errs = append(errs, fmt.Errorf("max count drift %d is negative", t.MaxCountDriftDocs))
	}
	if t.MaxTxAge < 0 {
		errs = append(errs, fmt.Errorf("max transaction age %s is negative", t.MaxTxAge))
	}
	if t.MaxStall < 0 {
		errs = append(errs, fmt.Errorf("max stall %s is negative", t.MaxStall))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// AllowedDrift is the largest allowed difference between live documents and liveProducts.
func (t Thresholds) AllowedDrift(liveProducts int64) int64 {
	return max(int64(math.Floor(t.MaxCountDriftRatio*float64(liveProducts))), t.MaxCountDriftDocs)
}
