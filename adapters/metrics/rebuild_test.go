package metrics_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/domain/readmodel"
)

type fakeRecords struct {
	list  []*readmodel.Rebuild
	err   error
	calls atomic.Int64
}

func (f *fakeRecords) List(_ context.Context, limit int) ([]*readmodel.Rebuild, error) {
	f.calls.Add(1)
	if limit != 1 {
		return nil, errors.New("the metrics need the newest record only")
	}
	return f.list, f.err
}

var started = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func record(t *testing.T, to readmodel.Phase, done, total int64) *readmodel.Rebuild {
	t.Helper()
	r, err := readmodel.New("rb-1", readmodel.SourceDatabase, started)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill} {
		if err := r.Advance(p, started.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if p == to {
			break
		}
	}
	r.Progress(done, total, started.Add(2*time.Second))
	if to == readmodel.PhaseSucceeded {
		if err := r.Succeed(started.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

const rebuildNames = "catalog_rebuild_running catalog_rebuild_phase catalog_rebuild_docs_done catalog_rebuild_docs_total catalog_rebuild_started_timestamp_seconds catalog_rebuild_record_up"

func phases(current string) string {
	var b strings.Builder
	b.WriteString("# HELP catalog_rebuild_phase 1 for the phase of the newest projection rebuild, 0 for the other phases.\n# TYPE catalog_rebuild_phase gauge\n")
	for _, p := range []string{"cancelled", "capture_offsets", "catch_up", "create_index", "drain", "failed", "fill", "pending", "succeeded", "switch_alias", "validate"} {
		v := "0"
		if p == current {
			v = "1"
		}
		b.WriteString(`catalog_rebuild_phase{phase="` + p + `"} ` + v + "\n")
	}
	return b.String()
}

func gauges(running, done, total string, startedAt bool) string {
	s := `# HELP catalog_rebuild_docs_done Documents the newest projection rebuild's fill wrote (a Kafka-sourced fill's, once validation counted them).
# TYPE catalog_rebuild_docs_done gauge
catalog_rebuild_docs_done ` + done + `
# HELP catalog_rebuild_docs_total Documents the newest projection rebuild expects.
# TYPE catalog_rebuild_docs_total gauge
catalog_rebuild_docs_total ` + total + `
# HELP catalog_rebuild_record_up 1 when the rebuild record could be read for these metrics, 0 otherwise.
# TYPE catalog_rebuild_record_up gauge
catalog_rebuild_record_up 1
# HELP catalog_rebuild_running 1 while the newest projection rebuild has not ended (succeeded, failed or cancelled).
# TYPE catalog_rebuild_running gauge
catalog_rebuild_running ` + running + "\n"
	if startedAt {
		s += `# HELP catalog_rebuild_started_timestamp_seconds Start time of the newest projection rebuild (Unix seconds).
# TYPE catalog_rebuild_started_timestamp_seconds gauge
catalog_rebuild_started_timestamp_seconds ` + strconv.FormatFloat(float64(started.Unix()), 'g', -1, 64) + "\n"
	}
	return s
}

// TestRebuildHeartbeatMetric: the runner's last heartbeat is exposed while the rebuild runs,
// so an alert can see a runner that stopped beating; 0 once the rebuild has ended.
func TestRebuildHeartbeatMetric(t *testing.T) {
	const help = "# HELP catalog_rebuild_heartbeat_timestamp_seconds Last heartbeat of the newest projection rebuild's runner (Unix seconds) while the rebuild has not ended, 0 otherwise; it beats about every second.\n# TYPE catalog_rebuild_heartbeat_timestamp_seconds gauge\n"
	running := record(t, readmodel.PhaseFill, 250, 1000)
	running.Claim("host/1/abc", started.Add(30*time.Second))
	for name, c := range map[string]struct {
		list []*readmodel.Rebuild
		want string
	}{
		"running":  {[]*readmodel.Rebuild{running}, help + "catalog_rebuild_heartbeat_timestamp_seconds " + strconv.FormatInt(started.Add(30*time.Second).Unix(), 10) + "\n"},
		"finished": {[]*readmodel.Rebuild{record(t, readmodel.PhaseSucceeded, 1000, 1000)}, help + "catalog_rebuild_heartbeat_timestamp_seconds 0\n"},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t)
			if _, err := metrics.NewRebuildMetrics(r, &fakeRecords{list: c.list}); err != nil {
				t.Fatal(err)
			}
			if err := testutil.GatherAndCompare(r.Prometheus(), strings.NewReader(c.want), "catalog_rebuild_heartbeat_timestamp_seconds"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRebuildMetrics(t *testing.T) {
	for _, c := range []struct {
		name    string
		records *fakeRecords
		want    string
	}{
		{"no rebuild yet", &fakeRecords{}, gauges("0", "0", "0", false) + phases("")},
		{"nil record", &fakeRecords{list: []*readmodel.Rebuild{nil}}, gauges("0", "0", "0", false) + phases("")},
		{"fill in progress", &fakeRecords{list: []*readmodel.Rebuild{record(t, readmodel.PhaseFill, 250, 1000)}}, gauges("1", "250", "1000", true) + phases("fill")},
		{"succeeded", &fakeRecords{list: []*readmodel.Rebuild{record(t, readmodel.PhaseSucceeded, 1000, 1000)}}, gauges("0", "1000", "1000", true) + phases("succeeded")},
		{"record unreadable", &fakeRecords{err: errors.New("connection refused")},
			"# HELP catalog_rebuild_record_up 1 when the rebuild record could be read for these metrics, 0 otherwise.\n# TYPE catalog_rebuild_record_up gauge\ncatalog_rebuild_record_up 0\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRegistry(t)
			if _, err := metrics.NewRebuildMetrics(r, c.records); err != nil {
				t.Fatal(err)
			}
			if err := testutil.GatherAndCompare(r.Prometheus(), strings.NewReader(c.want), strings.Fields(rebuildNames)...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRebuildRateAndETAMetrics: while the fill has a rate, the rate (in its unit), the time
// the phase still needs and when it should end are exposed; events and resumes always.
func TestRebuildRateAndETAMetrics(t *testing.T) {
	rec := record(t, readmodel.PhaseFill, 250, 1000)
	rec.SetRate(50)
	rec.ExpectEvents(4)
	rec.AppliedEvents(3, started.Add(2*time.Second))
	rec.Resume(started.Add(2 * time.Second))
	rec.SetRate(50)
	r := newRegistry(t)
	if _, err := metrics.NewRebuildMetrics(r, &fakeRecords{list: []*readmodel.Rebuild{rec}}); err != nil {
		t.Fatal(err)
	}
	end := started.Add(2*time.Second + 15*time.Second).Unix()
	want := `# HELP catalog_rebuild_estimated_completion_timestamp_seconds When the newest projection rebuild's current phase is expected to end (Unix seconds); absent without a rate.
# TYPE catalog_rebuild_estimated_completion_timestamp_seconds gauge
catalog_rebuild_estimated_completion_timestamp_seconds ` + strconv.FormatInt(end, 10) + `
# HELP catalog_rebuild_eta_seconds Time the newest projection rebuild's current phase still needs at its recent rate, as of the record's last update; absent without a rate.
# TYPE catalog_rebuild_eta_seconds gauge
catalog_rebuild_eta_seconds 15
# HELP catalog_rebuild_events_done Events the newest projection rebuild read from the event log and applied (the fill of a Kafka-sourced rebuild, every catch-up and drain).
# TYPE catalog_rebuild_events_done gauge
catalog_rebuild_events_done 3
# HELP catalog_rebuild_events_total Events the newest projection rebuild expects to read so far.
# TYPE catalog_rebuild_events_total gauge
catalog_rebuild_events_total 4
# HELP catalog_rebuild_rate_per_second How fast the newest projection rebuild's current phase goes over the last 30 seconds, in documents (database fill) or events (Kafka fill, catch-up); absent while unknown.
# TYPE catalog_rebuild_rate_per_second gauge
catalog_rebuild_rate_per_second{unit="documents"} 50
# HELP catalog_rebuild_resumes How often the newest projection rebuild was resumed after its runner stopped.
# TYPE catalog_rebuild_resumes gauge
catalog_rebuild_resumes 1
`
	names := []string{"catalog_rebuild_estimated_completion_timestamp_seconds", "catalog_rebuild_eta_seconds", "catalog_rebuild_events_done",
		"catalog_rebuild_events_total", "catalog_rebuild_rate_per_second", "catalog_rebuild_resumes"}
	if err := testutil.GatherAndCompare(r.Prometheus(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Without a rate (validation, say) there is no rate, ETA or completion series.
	done := record(t, readmodel.PhaseSucceeded, 1000, 1000)
	r = newRegistry(t)
	if _, err := metrics.NewRebuildMetrics(r, &fakeRecords{list: []*readmodel.Rebuild{done}}); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(r.Prometheus(), names[:2]...); err != nil || n != 0 {
		t.Fatalf("a finished rebuild exposes %d rate/ETA series (%v)", n, err)
	}
}

// TestRebuildMetricsReadOncePerScrapeBurst: several scrapes in a row read the record once.
func TestRebuildMetricsReadOncePerScrapeBurst(t *testing.T) {
	r := newRegistry(t)
	rec := &fakeRecords{list: []*readmodel.Rebuild{record(t, readmodel.PhaseFill, 1, 2)}}
	if _, err := metrics.NewRebuildMetrics(r, rec); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := r.Prometheus().Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if n := rec.calls.Load(); n != 1 {
		t.Fatalf("%d reads for 3 scrapes within the cache TTL, want 1", n)
	}
}
