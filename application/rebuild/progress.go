package rebuild

import "time"

// rateWindow measures how fast a counter grows over the most recent span of time, so a rate
// (and the ETA derived from it) follows the current pace instead of averaging over a fill's
// slow start or a pause while the process was down.
type rateWindow struct {
	// span is the window; observations older than it are dropped, keeping the newest of them
	// as the window's start.
	span    time.Duration
	samples []rateSample // oldest first
}

type rateSample struct {
	at time.Time
	n  int64
}

// Bounds of a rateWindow: a rate needs at least minRateSpan of observations, and observations
// closer together than minSampleGap replace each other, so the window holds at most
// span/minSampleGap samples however fast the work goes.
const (
	minRateSpan  = time.Second
	minSampleGap = 250 * time.Millisecond
)

// reset forgets every observation: a new phase counts something else.
func (w *rateWindow) reset() { w.samples = w.samples[:0] }

// observe records that the counter stood at n at at, and returns the rate per second over the
// window; 0 while the observations span less than minRateSpan.
func (w *rateWindow) observe(at time.Time, n int64) float64 {
	if k := len(w.samples); k > 1 && at.Sub(w.samples[k-2].at) < minSampleGap {
		w.samples[k-1] = rateSample{at: at, n: n}
	} else {
		w.samples = append(w.samples, rateSample{at: at, n: n})
	}
	drop := 0
	for drop+1 < len(w.samples) && at.Sub(w.samples[drop+1].at) >= w.span {
		drop++
	}
	if drop > 0 {
		w.samples = append(w.samples[:0], w.samples[drop:]...)
	}
	first := w.samples[0]
	elapsed := at.Sub(first.at)
	if elapsed < minRateSpan {
		return 0
	}
	return float64(n-first.n) / elapsed.Seconds()
}
