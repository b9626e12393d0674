package rebuild_test

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/rebuild"
)

// TestRunnerLost: an unfinished record's runner is lost once its heartbeat is older than the
// timeout; a finished record never has a lost runner; a claim beats.
func TestRunnerLost(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := rebuild.New("rb", rebuild.SourceDatabase, t0)
	if err != nil {
		t.Fatal(err)
	}
	r.Claim("host/1/abc", t0.Add(time.Second))
	if err := r.Advance(rebuild.PhaseFill, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	if snap.Owner != "host/1/abc" || !snap.HeartbeatAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("claimed record: owner %q heartbeat %v", snap.Owner, snap.HeartbeatAt)
	}
	for _, c := range []struct {
		at   time.Duration
		lost bool
	}{{6 * time.Second, false}, {11 * time.Second, false}, {11*time.Second + time.Millisecond, true}} {
		if got := snap.RunnerLost(t0.Add(c.at), 10*time.Second); got != c.lost {
			t.Errorf("%s after the start (heartbeat at +1s, timeout 10s): lost = %v, want %v", c.at, got, c.lost)
		}
	}
	back, err := rebuild.UnmarshalRebuildFromDatabase(snap)
	if err != nil {
		t.Fatal(err)
	}
	if b := back.Snapshot(); b.Owner != snap.Owner || !b.HeartbeatAt.Equal(snap.HeartbeatAt) {
		t.Errorf("after the round trip: owner %q heartbeat %v", b.Owner, b.HeartbeatAt)
	}
	if err := r.Fail("x", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r.Snapshot().RunnerLost(t0.Add(time.Hour), 10*time.Second) {
		t.Error("a finished rebuild has a lost runner")
	}
}
