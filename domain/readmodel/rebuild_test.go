package readmodel_test

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/readmodel"
)

// TestRunnerLost: an unfinished record's runner is lost once its heartbeat is older than the
// timeout; a finished record never has a lost runner; a claim beats.
func TestRunnerLost(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := readmodel.New("rb", readmodel.SourceDatabase, t0)
	if err != nil {
		t.Fatal(err)
	}
	r.Claim("host/1/abc", t0.Add(time.Second))
	if err := r.Advance(readmodel.PhaseFill, t0.Add(2*time.Second)); err != nil {
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
	back, err := readmodel.UnmarshalRebuildFromDatabase(snap)
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

// TestETA: the current phase's work, in its unit, at the recorded rate, from the record's
// last update; none without a rate, outside the fill and the catch-up, or once finished.
func TestETA(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	db := readmodel.Snapshot{Source: readmodel.SourceDatabase, Phase: readmodel.PhaseFill, DocsDone: 400, DocsTotal: 1000,
		EventsDone: 7, EventsTotal: 9, Rate: 100, UpdatedAt: t0}
	if eta, ok := db.ETA(); !ok || eta != 6*time.Second || db.WorkUnit() != readmodel.UnitDocuments {
		t.Errorf("database fill: ETA %v (%v) in %s, want 6s in documents", eta, ok, db.WorkUnit())
	}
	if at, ok := db.EstimatedCompletion(); !ok || !at.Equal(t0.Add(6*time.Second)) {
		t.Errorf("database fill ends at %v (%v), want %v", at, ok, t0.Add(6*time.Second))
	}
	kafka := db
	kafka.Source, kafka.EventsDone, kafka.EventsTotal = readmodel.SourceKafka, 1000, 5000
	if eta, ok := kafka.ETA(); !ok || eta != 40*time.Second || kafka.WorkUnit() != readmodel.UnitEvents {
		t.Errorf("kafka fill: ETA %v (%v) in %s, want 40s in events", eta, ok, kafka.WorkUnit())
	}
	catchUp := db
	catchUp.Phase, catchUp.EventsDone, catchUp.EventsTotal = readmodel.PhaseCatchUp, 100, 300
	if eta, ok := catchUp.ETA(); !ok || eta != 2*time.Second {
		t.Errorf("catch-up: ETA %v (%v), want 2s", eta, ok)
	}
	for name, s := range map[string]readmodel.Snapshot{
		"no rate":  {Source: readmodel.SourceDatabase, Phase: readmodel.PhaseFill, DocsDone: 1, DocsTotal: 9},
		"validate": {Source: readmodel.SourceDatabase, Phase: readmodel.PhaseValidate, DocsDone: 1, DocsTotal: 9, Rate: 5},
		"failed":   {Source: readmodel.SourceDatabase, Phase: readmodel.PhaseFailed, DocsDone: 1, DocsTotal: 9, Rate: 5},
	} {
		if eta, ok := s.ETA(); ok {
			t.Errorf("%s: ETA %v, want none", name, eta)
		}
	}
}

// TestResumable: an unfinished rebuild up to its switch can go on, once it knows where its
// catch-up starts; a finished one, one past the switch, or a fill without a catch-up position
// (a release before resumable fills) cannot.
func TestResumable(t *testing.T) {
	pos := map[int32]int64{0: 5}
	for _, c := range []struct {
		phase   readmodel.Phase
		catchUp map[int32]int64
		want    bool
	}{
		{readmodel.PhasePending, nil, true},
		{readmodel.PhaseCreateIndex, nil, true},
		{readmodel.PhaseCapture, nil, true},
		{readmodel.PhaseFill, nil, false},
		{readmodel.PhaseFill, pos, true},
		{readmodel.PhaseFill, map[int32]int64{}, true},
		{readmodel.PhaseCatchUp, pos, true},
		{readmodel.PhaseValidate, pos, true},
		{readmodel.PhaseSwitch, pos, true},
		{readmodel.PhaseDrain, pos, false},
		{readmodel.PhaseFailed, pos, false},
	} {
		if got := (readmodel.Snapshot{Phase: c.phase, CatchUpFrom: c.catchUp}).Resumable(); got != c.want {
			t.Errorf("%s with catch-up position %v: resumable %v, want %v", c.phase, c.catchUp, got, c.want)
		}
	}
}

// TestFilledChunkMovesForwardAndSurvivesTheRoundTrip: a fill's cursor and documents move
// forward together, a chunk that does not come after the cursor is refused, and the resume
// state (cursor, catch-up position, an empty one included, events, rate, resumes) survives
// the database round trip.
func TestFilledChunkMovesForwardAndSurvivesTheRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r, _ := readmodel.New("rb", readmodel.SourceDatabase, t0)
	if err := r.FilledChunk("b", 10, t0); err == nil {
		t.Error("a chunk outside the fill was accepted")
	}
	_ = r.Advance(readmodel.PhaseCapture, t0)
	r.SetCatchUpFrom(nil)
	_ = r.Advance(readmodel.PhaseFill, t0)
	r.Progress(0, 15, t0)
	if err := r.FilledChunk("b", 10, t0); err != nil {
		t.Fatal(err)
	}
	if err := r.FilledChunk("a", 10, t0); err == nil {
		t.Error("a chunk before the cursor was accepted")
	}
	if err := r.FilledChunk("c", 10, t0); err != nil {
		t.Fatal(err)
	}
	r.ExpectEvents(4)
	r.AppliedEvents(6, t0)
	r.SetRate(12.5)
	r.Resume(t0)
	snap := r.Snapshot()
	if snap.FillAfter != "c" || snap.DocsDone != 20 || snap.DocsTotal != 20 || snap.EventsDone != 6 || snap.EventsTotal != 6 || snap.Resumes != 1 || snap.Rate != 0 {
		t.Fatalf("after two chunks, six events and a resume: %+v", snap)
	}
	back, err := readmodel.UnmarshalRebuildFromDatabase(snap)
	if err != nil {
		t.Fatal(err)
	}
	b := back.Snapshot()
	if b.CatchUpFrom == nil || b.FillAfter != "c" || b.DocsDone != 20 || b.EventsDone != 6 || b.Resumes != 1 {
		t.Errorf("after the round trip: %+v", b)
	}
}
