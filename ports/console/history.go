package console

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/marketplace/catalog/application/ops"
)

// sample is one point of the charts, taken from a status.
type sample struct {
	At time.Time
	// Backlog is the outbox rows not yet relayed.
	Backlog int64
	// OldestAge is the age of the oldest unrelayed outbox row: how long the newest
	// committed change has waited to reach Kafka at worst.
	OldestAge time.Duration
	// Produced is the sum of the events topic's end offsets; its rate is the relay rate.
	Produced int64
	// Committed is the sum of the projector's committed offsets; its rate is the projection rate.
	Committed int64
	// Lag is the projector group's total lag.
	Lag int64
	// Unhandled is the dead letters nobody replayed or resolved.
	Unhandled int64
	// Healthy is the status's verdict.
	Healthy bool
}

func sampleOf(st ops.Status) sample {
	s := sample{At: st.CheckedAt, Backlog: st.Outbox.Backlog, OldestAge: st.Outbox.OldestAge, Lag: st.Projector.Lag,
		Unhandled: st.DLQ.Unhandled, Healthy: st.Healthy}
	for _, p := range st.Projector.Partitions {
		s.Produced += p.End
		if p.Committed > 0 {
			s.Committed += p.Committed
		}
	}
	return s
}

// history is the charts' ring buffer: the last samples of the process's own status, so the
// charts need no Prometheus. It lives in memory and starts empty with the process.
type history struct {
	mu      sync.Mutex
	samples []sample
	next    int
	full    bool
}

func newHistory(n int) *history { return &history{samples: make([]sample, n)} }

func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples[h.next] = s
	h.next = (h.next + 1) % len(h.samples)
	if h.next == 0 {
		h.full = true
	}
}

// all returns the samples oldest first.
func (h *history) all() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]sample(nil), h.samples[:h.next]...)
	}
	return append(append([]sample(nil), h.samples[h.next:]...), h.samples[:h.next]...)
}

// sample takes a status every Config.SampleInterval until ctx ends. A failed status leaves
// a gap, logged at debug: the pipeline page shows the failure itself.
func (s *Server) sample(ctx context.Context) {
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.SampleInterval)
		st, err := s.deps.Operations.Status(cctx, ops.DefaultThresholds())
		cancel()
		if err == nil {
			s.history.add(sampleOf(st))
		} else if ctx.Err() == nil {
			s.log.DebugContext(ctx, "console: status sample failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rate is the change per second of a counter between two samples; a counter that went back
// (a topic recreated) counts as no progress.
func rate(a, b sample, counter func(sample) int64) float64 {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 {
		return 0
	}
	return max(0, float64(counter(b)-counter(a))/secs)
}

// chart is one SVG line chart.
type chart struct {
	Title  string
	Unit   string
	Points string
	Max    string
	Last   string
	From   time.Time
	To     time.Time
	Empty  bool
}

const chartW, chartH = 600.0, 120.0

// newChart draws values (one per sample, same times) scaled to the chart's box.
func newChart(title, unit string, at []time.Time, values []float64, format func(float64) string) chart {
	c := chart{Title: title, Unit: unit, Empty: len(values) < 2}
	if c.Empty {
		return c
	}
	c.From, c.To = at[0], at[len(at)-1]
	span := c.To.Sub(c.From).Seconds()
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	for i, v := range values {
		x := 0.0
		if span > 0 {
			x = at[i].Sub(c.From).Seconds() / span * chartW
		}
		y := chartH - v/top*(chartH-4) - 2
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	c.Points = strings.TrimSpace(b.String())
	c.Max, c.Last = format(top), format(values[len(values)-1])
	return c
}

// charts turns the history into the charts page's charts.
func charts(samples []sample) []chart {
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	perSec := func(v float64) string { return fmt.Sprintf("%.1f/s", v) }
	secs := func(v float64) string { return formatDuration(time.Duration(v * float64(time.Second))) }
	var backlog, age, lag, dead, relay, proj []float64
	var times, rateTimes []time.Time
	for i, s := range samples {
		times = append(times, s.At)
		backlog = append(backlog, float64(s.Backlog))
		age = append(age, s.OldestAge.Seconds())
		lag = append(lag, float64(s.Lag))
		dead = append(dead, float64(s.Unhandled))
		if i > 0 {
			rateTimes = append(rateTimes, s.At)
			relay = append(relay, rate(samples[i-1], s, func(x sample) int64 { return x.Produced }))
			proj = append(proj, rate(samples[i-1], s, func(x sample) int64 { return x.Committed }))
		}
	}
	return []chart{
		newChart("Outbox backlog", "rows", times, backlog, count),
		newChart("Relay rate (outbox → Kafka)", "events/s", rateTimes, relay, perSec),
		newChart("Commit → Kafka latency (oldest unrelayed change)", "seconds", times, age, secs),
		newChart("Projector lag", "events", times, lag, count),
		newChart("Projection rate (Kafka → index)", "events/s", rateTimes, proj, perSec),
		newChart("Unhandled dead letters", "messages", times, dead, count),
	}
}
