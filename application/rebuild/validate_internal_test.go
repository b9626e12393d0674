package rebuild

import (
	"testing"
	"time"
)

func TestPredecessor(t *testing.T) {
	cases := map[string]string{
		"01900000-0000-7000-8000-000000000001": "01900000-0000-7000-8000-000000000000",
		"01900000-0000-7000-8000-000000000010": "01900000-0000-7000-8000-00000000000f",
		"01900000-0000-7000-8000-0000000000a0": "01900000-0000-7000-8000-00000000009f",
		"01900000-0000-7000-8000-000000000000": "01900000-0000-7000-7fff-ffffffffffff",
		"00000000-0000-0000-0000-000000000001": "00000000-0000-0000-0000-000000000000",
		"00000000-0000-0000-0000-000000000000": "",
		"not-a-uuid":                           "not-a-uui",
		"01900000-0000-7000-8000-00000000000A": "01900000-0000-7000-8000-00000000000", // not canonical
		"":                                     "",
	}
	for in, want := range cases {
		got := predecessor(in)
		if got != want {
			t.Errorf("predecessor(%q) = %q, want %q", in, got, want)
		}
		if in != "" && got >= in {
			t.Errorf("predecessor(%q) = %q does not sort before it", in, got)
		}
	}
}

// TestRateWindow: the rate follows the last window's pace, not the average since the start;
// it is unknown (0) until the observations span a second; observations closer than the
// sample gap do not grow the window's memory.
func TestRateWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := rateWindow{span: 10 * time.Second}
	if got := w.observe(t0, 0); got != 0 {
		t.Fatalf("first observation: rate %v, want unknown", got)
	}
	if got := w.observe(t0.Add(500*time.Millisecond), 50); got != 0 {
		t.Fatalf("half a second in: rate %v, want unknown", got)
	}
	if got := w.observe(t0.Add(2*time.Second), 200); got != 100 {
		t.Fatalf("200 in 2 s: rate %v, want 100", got)
	}
	// Slow for 20 s (10/s), then fast for 10 s (1000/s): the window sees only the fast part.
	n := int64(200)
	for s := 3; s <= 22; s++ {
		n += 10
		w.observe(t0.Add(time.Duration(s)*time.Second), n)
	}
	var got float64
	for s := 23; s <= 32; s++ {
		n += 1000
		got = w.observe(t0.Add(time.Duration(s)*time.Second), n)
	}
	if got != 1000 {
		t.Fatalf("after 10 s at 1000/s, a 10 s window says %v", got)
	}
	for i := range 1000 {
		w.observe(t0.Add(32*time.Second+time.Duration(i)*time.Millisecond), n)
	}
	if len(w.samples) > 60 {
		t.Errorf("the window keeps %d samples", len(w.samples))
	}
	w.reset()
	if got := w.observe(t0.Add(time.Minute), n); got != 0 {
		t.Errorf("after a reset: rate %v, want unknown", got)
	}
}
