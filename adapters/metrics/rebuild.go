package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketplace/catalog/domain/readmodel"
)

// RebuildRecords reads the rebuild records, newest first. *postgres.RebuildStore satisfies
// it; the metrics read the record rather than the rebuild service's memory so that every
// replica reports the rebuild, including one another replica runs.
type RebuildRecords interface {
	List(ctx context.Context, limit int) ([]*readmodel.Rebuild, error)
}

// rebuildPhases are the phases reported by catalog_rebuild_phase, in their order, so that a
// dashboard has a series per phase even before a rebuild reached it.
var rebuildPhases = []readmodel.Phase{
	readmodel.PhasePending, readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill,
	readmodel.PhaseCatchUp, readmodel.PhaseValidate, readmodel.PhaseSwitch, readmodel.PhaseDrain,
	readmodel.PhaseSucceeded, readmodel.PhaseFailed, readmodel.PhaseCancelled,
}

// Defaults of RebuildMetrics: the record is read at most once per rebuildCacheTTL however
// many scrapers there are, and a slow database costs a scrape at most rebuildReadTimeout.
const (
	rebuildCacheTTL    = 5 * time.Second
	rebuildReadTimeout = 2 * time.Second
)

// RebuildMetrics exposes the newest rebuild record as gauges, read when Prometheus scrapes
// (cached briefly), so there is no background goroutine to start or stop:
//
//	catalog_rebuild_running                    1 while the newest rebuild has not ended
//	catalog_rebuild_phase{phase}               1 for the newest rebuild's phase, 0 for the others
//	catalog_rebuild_docs_done                  documents the fill wrote (a Kafka fill's, once validated)
//	catalog_rebuild_docs_total                 documents expected
//	catalog_rebuild_events_done                events read from the log and applied (Kafka fill, catch-up, drain)
//	catalog_rebuild_events_total               events expected so far
//	catalog_rebuild_rate_per_second{unit}      the current phase's rate over the last 30 s, in
//	                                            documents or events, while it is known
//	catalog_rebuild_eta_seconds                the time the current phase still needs at that
//	                                            rate, as of the record's last update
//	catalog_rebuild_estimated_completion_timestamp_seconds  when the current phase should end
//	catalog_rebuild_resumes                    how often the newest rebuild was resumed
//	catalog_rebuild_started_timestamp_seconds  when the newest rebuild started
//	catalog_rebuild_heartbeat_timestamp_seconds when the newest rebuild's runner last beat,
//	                                            while it has not ended (0 otherwise): alert on
//	                                            time() minus it while running, a runner that
//	                                            died stops beating
//	catalog_rebuild_record_up                  0 when the record could not be read
//
// When the record cannot be read only catalog_rebuild_record_up (0) is exposed: stale
// progress would be worse than none, and failing the whole scrape would blind every other
// series during a database outage.
type RebuildMetrics struct {
	records RebuildRecords
	ttl     time.Duration
	timeout time.Duration

	mu     sync.Mutex
	readAt time.Time
	snap   readmodel.Snapshot
	found  bool
	err    error

	running, phase, done, total, started, heartbeat, up     *prometheus.Desc
	eventsDone, eventsTotal, rate, eta, completion, resumes *prometheus.Desc
}

// NewRebuildMetrics registers the rebuild gauges on r, reading records at scrape time.
func NewRebuildMetrics(r *Registry, records RebuildRecords) (*RebuildMetrics, error) {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("catalog", "rebuild", name), help, labels, nil)
	}
	m := &RebuildMetrics{
		records: records,
		ttl:     rebuildCacheTTL,
		timeout: rebuildReadTimeout,
		running: desc("running", "1 while the newest projection rebuild has not ended (succeeded, failed or cancelled)."),
		phase:   desc("phase", "1 for the phase of the newest projection rebuild, 0 for the other phases.", "phase"),
		done:    desc("docs_done", "Documents the newest projection rebuild's fill wrote (a Kafka-sourced fill's, once validation counted them)."),
		total:   desc("docs_total", "Documents the newest projection rebuild expects."),
		eventsDone: desc("events_done",
			"Events the newest projection rebuild read from the event log and applied (the fill of a Kafka-sourced rebuild, every catch-up and drain)."),
		eventsTotal: desc("events_total", "Events the newest projection rebuild expects to read so far."),
		rate: desc("rate_per_second",
			"How fast the newest projection rebuild's current phase goes over the last 30 seconds, in documents (database fill) or events (Kafka fill, catch-up); absent while unknown.", "unit"),
		eta: desc("eta_seconds",
			"Time the newest projection rebuild's current phase still needs at its recent rate, as of the record's last update; absent without a rate."),
		completion: desc("estimated_completion_timestamp_seconds",
			"When the newest projection rebuild's current phase is expected to end (Unix seconds); absent without a rate."),
		resumes: desc("resumes", "How often the newest projection rebuild was resumed after its runner stopped."),
		started: desc("started_timestamp_seconds", "Start time of the newest projection rebuild (Unix seconds)."),
		heartbeat: desc("heartbeat_timestamp_seconds",
			"Last heartbeat of the newest projection rebuild's runner (Unix seconds) while the rebuild has not ended, 0 otherwise; it beats about every second."),
		up: desc("record_up", "1 when the rebuild record could be read for these metrics, 0 otherwise."),
	}
	if err := r.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *RebuildMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.running, m.phase, m.done, m.total, m.started, m.heartbeat, m.up,
		m.eventsDone, m.eventsTotal, m.rate, m.eta, m.completion, m.resumes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the newest record (or reuses a read
// younger than the cache TTL) and emits the gauges.
func (m *RebuildMetrics) Collect(ch chan<- prometheus.Metric) {
	snap, found, err := m.latest()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if err != nil {
		gauge(m.up, 0)
		return
	}
	gauge(m.up, 1)
	gauge(m.running, boolFloat(found && !snap.Phase.Terminal()))
	gauge(m.done, float64(snap.DocsDone))
	gauge(m.total, float64(snap.DocsTotal))
	gauge(m.eventsDone, float64(snap.EventsDone))
	gauge(m.eventsTotal, float64(snap.EventsTotal))
	gauge(m.resumes, float64(snap.Resumes))
	if unit := snap.WorkUnit(); found && unit != "" && snap.Rate > 0 {
		gauge(m.rate, snap.Rate, string(unit))
	}
	if eta, ok := snap.ETA(); found && ok {
		gauge(m.eta, eta.Seconds())
		if at, ok := snap.EstimatedCompletion(); ok {
			gauge(m.completion, float64(at.UnixNano())/1e9)
		}
	}
	known := false
	for _, p := range rebuildPhases {
		current := found && snap.Phase == p
		known = known || current
		gauge(m.phase, boolFloat(current), string(p))
	}
	if found && !known {
		gauge(m.phase, 1, string(snap.Phase)) // a phase newer than this list
	}
	if found && !snap.StartedAt.IsZero() {
		gauge(m.started, float64(snap.StartedAt.UnixNano())/1e9)
	}
	// Always exported (0 without a live rebuild), so that the alert and the dashboard that
	// name it are checked against a series that exists; they guard it with running == 1.
	heartbeat := 0.0
	if found && !snap.Phase.Terminal() && !snap.HeartbeatAt.IsZero() {
		heartbeat = float64(snap.HeartbeatAt.UnixNano()) / 1e9
	}
	gauge(m.heartbeat, heartbeat)
}

// latest returns the newest record's snapshot, reading it when the cached one is too old.
// Failed reads are cached too, so a struggling database is not asked once per scraper.
func (m *RebuildMetrics) latest() (readmodel.Snapshot, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.readAt.IsZero() && time.Since(m.readAt) < m.ttl {
		return m.snap, m.found, m.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	list, err := m.records.List(ctx, 1)
	m.readAt, m.err, m.found, m.snap = time.Now(), err, false, readmodel.Snapshot{}
	if err == nil && len(list) > 0 && list[0] != nil {
		m.snap, m.found = list[0].Snapshot(), true
	}
	return m.snap, m.found, m.err
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
