package metrics

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketplace/catalog/application/ops"
)

// StatusSource judges the pipeline as `catalog status` does; *ops.Service satisfies it.
type StatusSource interface {
	// Status reads every source and judges the result against th.
	Status(ctx context.Context, th ops.Thresholds) (ops.Status, error)
}

// statusChecks are the findings exported by catalog_status_problem, each with a series from
// the start (0 until found), so an alert on one fires on its first appearance and a missing
// series always means a scrape problem, never "healthy".
var statusChecks = []string{
	ops.CheckOutboxAge, ops.CheckProjectorLag, ops.CheckProjectorNoOffsets, ops.CheckProjectorNoMembers,
	ops.CheckProjectorStalled, ops.CheckAliasMissing, ops.CheckAliasForeign, ops.CheckAliasBehind,
	ops.CheckMappingOutdated, ops.CheckMappingAhead, ops.CheckCountDrift, ops.CheckDLQ,
	ops.CheckLongTransaction, ops.CheckRelayHeldBack, ops.CheckRebuildFailed, ops.CheckUnavailable,
}

// DefaultStatusSampleInterval is how often the StatusSampler judges the pipeline: the
// findings it exports (alias, mapping, document counts) change on the scale of deploys and
// rebuilds, and judging reads a document count from the search cluster.
const DefaultStatusSampleInterval = 30 * time.Second

// StatusSampler exports what `catalog status` finds, so that the findings without a gauge
// of their own (alias missing or behind the event log, mapping older than the code, document
// count drift) can be alerted on, and what the last `catalog verify` run on this process
// found:
//
//	catalog_status_problem{check}                  1 while status reports the check (default thresholds)
//	catalog_verify_differences{category}           differences the last verify found, per category
//	catalog_verify_last_completed_timestamp_seconds when that verify finished (0: none yet)
type StatusSampler struct {
	src      StatusSource
	interval time.Duration
	log      *slog.Logger

	problem     *prometheus.GaugeVec
	differences *prometheus.GaugeVec
	verifiedAt  prometheus.Gauge
}

// NewStatusSampler registers the gauges on r; interval 0 means DefaultStatusSampleInterval.
func NewStatusSampler(r *Registry, src StatusSource, interval time.Duration, log *slog.Logger) (*StatusSampler, error) {
	if r == nil || src == nil {
		return nil, errors.New("status sampler: nil dependency")
	}
	if interval <= 0 {
		interval = DefaultStatusSampleInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &StatusSampler{src: src, interval: interval, log: log,
		problem: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "status", Name: "problem",
			Help: "1 while `catalog status` (default thresholds) reports the check, 0 otherwise; sampled every 30 s.",
		}, []string{"check"}),
		differences: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "verify", Name: "differences",
			Help: "Ids on which the last `catalog verify` served by this process found the database and the read model to differ, by category.",
		}, []string{"category"}),
		verifiedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "verify", Name: "last_completed_timestamp_seconds",
			Help: "When the last `catalog verify` served by this process finished (Unix seconds); 0 before the first.",
		}),
	}
	for _, c := range statusChecks {
		s.problem.WithLabelValues(c)
	}
	for _, c := range ops.Categories {
		s.differences.WithLabelValues(string(c))
	}
	if err := r.Register(s.problem, s.differences, s.verifiedAt); err != nil {
		return nil, err
	}
	return s, nil
}

// Run samples the status every interval until ctx ends.
func (s *StatusSampler) Run(ctx context.Context) error {
	return sampleEvery(ctx, s.interval, s.Sample)
}

// Sample judges the pipeline once and sets catalog_status_problem. A failed judgement keeps
// the last values: the sources' own failures are reported as the "unavailable" check.
func (s *StatusSampler) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.interval)
	defer cancel()
	st, err := s.src.Status(ctx, ops.DefaultThresholds())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("status sample failed", "err", err)
		}
		return
	}
	found := map[string]bool{}
	for _, p := range st.Problems {
		found[p.Check] = true
	}
	for _, c := range statusChecks {
		s.problem.WithLabelValues(c).Set(boolFloat(found[c]))
	}
}

// ObserveVerify records the report of a finished verify.
func (s *StatusSampler) ObserveVerify(rep ops.VerifyReport) {
	for _, c := range rep.Categories {
		s.differences.WithLabelValues(string(c.Category)).Set(float64(c.Count))
	}
	s.verifiedAt.Set(float64(rep.StartedAt.Add(rep.Duration).UnixNano()) / 1e9)
}
