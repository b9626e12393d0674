package rebuild_test

import (
	"context"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// TestDeadRunnerWithProgressIsResumed: a process died (no hand-off) in the fill of a rebuild
// that had written its first 30 products; a product of that range changed after its chunk was
// written. Recovery resumes the rebuild under the same id: the fill reads on after the last
// completed chunk (not from the start), documents done count on from 30, the catch-up from the
// position captured before the fill brings the change, and the rebuild succeeds.
func TestDeadRunnerWithProgressIsResumed(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ctx := context.Background()
	ps := r.seed(t, 50)
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID().String()
	}
	sort.Strings(ids)
	dead, _ := readmodel.New("dead-with-progress", readmodel.SourceDatabase, time.Now().Add(-time.Minute))
	dead.Claim("gone-host/1/abc", time.Now().Add(-time.Minute))
	_ = dead.Advance(readmodel.PhaseCreateIndex, time.Now().Add(-time.Minute))
	idx, _ := target{r.w}.CreateIndex(ctx)
	dead.SetIndices(r.w.alias, idx)
	_ = dead.Advance(readmodel.PhaseCapture, time.Now().Add(-time.Minute))
	dead.SetCatchUpFrom(map[int32]int64{0: int64(len(r.w.log))})
	_ = dead.Advance(readmodel.PhaseFill, time.Now().Add(-time.Minute))
	dead.Progress(0, 50, time.Now().Add(-time.Minute))
	for _, id := range ids[:30] {
		if err := (target{r.w}).Write(ctx, idx, []product.Snapshot{r.w.products[id]}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i <= 30; i += 10 {
		if err := dead.FilledChunk(ids[i-1], 10, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.store.Create(ctx, dead)
	var changed *product.Product
	for _, p := range ps {
		if p.ID().String() == ids[5] {
			changed = p
		}
	}
	if err := change(r, changed, func(p *product.Product) error { return p.ChangeStock(77, time.Now()) }); err != nil {
		t.Fatal(err)
	}

	if n, err := r.svc.RecoverInterrupted(ctx); err != nil || n != 1 {
		t.Fatalf("recovery: %d (%v), want the rebuild resumed", n, err)
	}
	end := waitEnd(t, r.svc, "dead-with-progress")
	if end.Phase != readmodel.PhaseSucceeded || end.Resumes != 1 || end.ToIndex != idx || r.w.alias != idx {
		t.Fatalf("resumed rebuild: %s (%q), resumes %d, index %s, alias %s; want succeeded on %s", end.Phase, end.Error, end.Resumes, end.ToIndex, r.w.alias, idx)
	}
	if len(r.w.chunks) == 0 || r.w.chunks[0] != ids[29] {
		t.Errorf("the resumed fill read chunks after %q, want its first after %s", r.w.chunks, ids[29])
	}
	if end.DocsDone != 50 {
		t.Errorf("documents done %d, want 50 (30 before the death, 20 after)", end.DocsDone)
	}
	if doc := r.w.indices[idx][ids[5]]; doc.Version != changed.Version() {
		t.Errorf("the product changed after its chunk: index v%d, database v%d", doc.Version, changed.Version())
	}
}

// TestValidationSettlesRowsThatMovedOnAfterTheCatchUp: products changed, deleted and created
// after the catch-up's end offsets were taken (but before validation reads them) are newer in
// the database than in the new index. Their events are in the log, so validation applies the
// log up to its end and passes; the new index holds them, and the drain starts after them.
func TestValidationSettlesRowsThatMovedOnAfterTheCatchUp(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 30)
	r.beforeValidate(t, func(context.Context, string) {
		_ = change(r, ps[1], func(p *product.Product) error { return p.ChangeStock(5, time.Now()) })
		_ = change(r, ps[2], func(p *product.Product) error { return p.Delete(time.Now()) })
		r.seed(t, 2)
	})
	end := r.rebuildToEnd(t, readmodel.SourceDatabase)
	if end.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("rebuild %s: %s", end.Phase, end.Error)
	}
	ix := r.w.indices[end.ToIndex]
	for id, p := range r.w.products {
		if ix[id].Version != p.Version || ix[id].Deleted() != p.Deleted() {
			t.Errorf("%s: index v%d deleted=%v, database v%d deleted=%v", id, ix[id].Version, ix[id].Deleted(), p.Version, p.Deleted())
		}
	}
	if end.DrainFrom[0] != int64(len(r.w.log)) {
		t.Errorf("drain position %v, want the log end %d reached by validation", end.DrainFrom, len(r.w.log))
	}
}

// TestValidationFailsOnARowNoEventExplains: a row changed in the database without an event
// (a write around the outbox) after the catch-up: nothing will ever bring the new index up to
// it, so validation fails before the switch and names it.
func TestValidationFailsOnARowNoEventExplains(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 12)
	victim := ps[4].ID().String()
	r.beforeValidate(t, func(context.Context, string) {
		r.w.mu.Lock()
		defer r.w.mu.Unlock()
		row := r.w.products[victim]
		row.Version += 3
		r.w.products[victim] = row
	})
	before := r.w.alias
	end := r.rebuildToEnd(t, readmodel.SourceDatabase)
	if end.Phase != readmodel.PhaseFailed || !strings.Contains(end.Error, "older than the database") || !strings.Contains(end.Error, victim) {
		t.Fatalf("rebuild %s (%q), want failed naming %s as older", end.Phase, end.Error, victim)
	}
	if r.w.alias != before {
		t.Fatal("the alias moved")
	}
}

// TestRebuildsCountDocumentsAndEventsApart: a Kafka-sourced rebuild reports the events it
// replayed as events and the documents they made as documents; a database rebuild with no
// writes going on reads no events.
func TestRebuildsCountDocumentsAndEventsApart(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 30)
	for _, p := range ps[:10] {
		_ = change(r, p, func(p *product.Product) error { return p.ChangeStock(7, time.Now()) })
	}
	_ = change(r, ps[11], func(p *product.Product) error { return p.Delete(time.Now()) })
	events := int64(len(r.w.log)) // 30 creations, 10 changes, 1 deletion
	for _, c := range []struct {
		src            readmodel.Source
		events, eTotal int64
	}{{readmodel.SourceKafka, events, events}, {readmodel.SourceDatabase, 0, 0}} {
		end := r.rebuildToEnd(t, c.src)
		if end.Phase != readmodel.PhaseSucceeded {
			t.Fatalf("%s: %s %s", c.src, end.Phase, end.Error)
		}
		if end.DocsDone != 30 || end.DocsTotal != 30 || end.EventsDone != c.events || end.EventsTotal != c.eTotal {
			t.Errorf("%s rebuild: documents %d/%d, events %d/%d; want documents 30/30, events %d/%d",
				c.src, end.DocsDone, end.DocsTotal, end.EventsDone, end.EventsTotal, c.events, c.eTotal)
		}
	}
}

// TestFillReportsRateAndETA: with one chunk of 10 products written a second, the record says
// 10 documents per second during the fill, and an ETA of the products left at that rate.
func TestFillReportsRateAndETA(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	r := newRig(t, rebuild.Config{})
	r.seed(t, 100)
	cfg := r.cfg
	cfg.Now = clock.Now
	r.svc = r.service(t, cfg)
	type seen struct {
		phase readmodel.Phase
		done  int64
		rate  float64
		eta   time.Duration
		ok    bool
	}
	var got []seen
	var id string
	started := make(chan struct{})
	r.w.beforeWrite = func(string) {
		<-started
		rec, _ := r.svc.Get(context.Background(), id)
		eta, ok := rec.ETA()
		got = append(got, seen{rec.Phase, rec.DocsDone, rec.Rate, eta, ok})
		clock.Advance(time.Second)
	}
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	id = s.ID
	close(started)
	if end := waitEnd(t, r.svc, id); end.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("rebuild %s: %s", end.Phase, end.Error)
	}
	if got[0].ok || got[0].rate != 0 {
		t.Errorf("before the first chunk was written: rate %v, ETA %v (%v); want unknown", got[0].rate, got[0].eta, got[0].ok)
	}
	for _, g := range got[2:10] {
		want := time.Duration(100-g.done) * time.Second / 10
		if g.phase != readmodel.PhaseFill || g.rate != 10 || !g.ok || g.eta != want {
			t.Errorf("%s at %d documents: rate %v/s, ETA %v (%v); want fill at 10/s, ETA %v", g.phase, g.done, g.rate, g.eta, g.ok, want)
		}
	}
}

// TestKafkaFillResumesFromItsLogPosition: a Kafka-sourced rebuild handed off in the middle of
// its fill is resumed by another replica from the log position of its last written batch, not
// from the beginning: events done count on, and the rebuild succeeds with every product.
func TestKafkaFillResumesFromItsLogPosition(t *testing.T) {
	r := newRig(t, rebuild.Config{HeartbeatInterval: 5 * time.Millisecond})
	r.seed(t, 60) // 60 events: six batches of the fake log
	var writes atomic.Int64
	hold, in := make(chan struct{}), make(chan struct{})
	r.w.beforeWrite = func(index string) {
		if index != r.w.alias && writes.Add(1) == 3 {
			close(in)
			<-hold
		}
	}
	s, err := r.svc.Start(context.Background(), readmodel.SourceKafka)
	if err != nil {
		t.Fatal(err)
	}
	<-in
	r.svc.HandOffAll()
	close(hold)
	r.svc.Wait()
	off, _ := r.svc.Get(context.Background(), s.ID)
	if off.Phase != readmodel.PhaseFill || off.Owner != "" || off.FillAt[0] < 20 || off.EventsDone != off.FillAt[0] {
		t.Fatalf("handed off: %s owned by %q, log position %v, %d events done; want the fill at 20 or more, events done up to it", off.Phase, off.Owner, off.FillAt, off.EventsDone)
	}
	r.w.beforeWrite = nil
	r.w.reads = nil
	other := r.replica(t, rebuild.Config{Owner: "other-replica"})
	if n, err := other.RecoverInterrupted(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery: %d (%v)", n, err)
	}
	end := waitEnd(t, other, s.ID)
	if end.Phase != readmodel.PhaseSucceeded || end.Resumes != 1 || end.DocsDone != 60 || end.EventsDone != 60 {
		t.Fatalf("resumed Kafka rebuild: %s (%q), resumes %d, %d documents, %d events; want succeeded once resumed, 60 and 60",
			end.Phase, end.Error, end.Resumes, end.DocsDone, end.EventsDone)
	}
	if len(r.w.reads) == 0 || r.w.reads[0][0] != off.FillAt[0] {
		t.Errorf("the resumed fill read the log from %v, want from the handed-off position %v", r.w.reads, off.FillAt)
	}
}
