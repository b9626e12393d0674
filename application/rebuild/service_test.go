package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

type rig struct {
	w     *world
	store *memStore
	svc   *rebuild.Service
	cfg   rebuild.Config
}

func newRig(t *testing.T, cfg rebuild.Config) *rig {
	t.Helper()
	cfg.BatchSize = 10
	cfg.ValidatePageSize = 7
	if cfg.ProjectorGroup == "" {
		cfg.ProjectorGroup = "projector"
	}
	r := &rig{w: newWorld(), store: newMemStore(), cfg: cfg}
	r.svc = r.service(t, cfg)
	// The live read model: an index behind the alias.
	name, _ := target{r.w}.CreateIndex(context.Background())
	r.w.alias = name
	return r
}

// service is a rebuild service with cfg on the rig's world and store.
func (r *rig) service(t *testing.T, cfg rebuild.Config) *rebuild.Service {
	t.Helper()
	svc, err := rebuild.NewService(cfg, r.store, r.w, eventLog{r.w}, target{r.w}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.HandOffAll(); svc.Wait() })
	return svc
}

// beforeValidate replaces the rig's service by one whose BeforeValidate hook is hook.
func (r *rig) beforeValidate(t *testing.T, hook func(ctx context.Context, index string)) {
	t.Helper()
	cfg := r.cfg
	cfg.BeforeValidate = hook
	r.svc = r.service(t, cfg)
}

// rebuildToEnd runs a rebuild from src to its end.
func (r *rig) rebuildToEnd(t *testing.T, src readmodel.Source) readmodel.Snapshot {
	t.Helper()
	s, err := r.svc.Start(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return waitEnd(t, r.svc, s.ID)
}

// seed writes n products through the "write path" (row + event).
func (r *rig) seed(t *testing.T, n int) []*product.Product {
	t.Helper()
	var out []*product.Product
	for i := 0; i < n; i++ {
		now := time.Now()
		d, err := product.NewDetails(fmt.Sprintf("SKU-%d", i), "P", "", "c", "b", 100, "EUR", 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := product.New(product.NewID(now), d, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.PopEvents() {
			r.w.write(e)
		}
		out = append(out, p)
	}
	return out
}

func change(r *rig, p *product.Product, f func(*product.Product) error) error {
	if err := f(p); err != nil {
		return err
	}
	for _, e := range p.PopEvents() {
		r.w.write(e)
	}
	return nil
}

func waitEnd(t *testing.T, svc *rebuild.Service, id string) readmodel.Snapshot {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s, err := svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Phase.Terminal() {
			return s
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("rebuild did not end")
	return readmodel.Snapshot{}
}

func TestRebuildFromDatabaseWithLiveWritesSwitchesToACompleteIndex(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 95)
	var batches atomic.Int64
	r.w.gate = func() {
		// Live writes during the fill: a change, a delete and a create; the catch-up and the
		// drain must bring them into the new index.
		switch batches.Add(1) {
		case 2:
			_ = change(r, ps[3], func(p *product.Product) error { return p.ChangeStock(99, time.Now()) })
			_ = change(r, ps[4], func(p *product.Product) error { return p.Delete(time.Now()) })
			r.seed(t, 1)
		}
	}
	before := r.w.alias
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, r.svc, s.ID)
	if end.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("rebuild %s: %s", end.Phase, end.Error)
	}
	if r.w.alias == before || r.w.alias != end.ToIndex || end.FromIndex != before {
		t.Fatalf("alias %s, record from %s to %s, before %s", r.w.alias, end.FromIndex, end.ToIndex, before)
	}
	ix := r.w.indices[r.w.alias]
	if len(ix) != len(r.w.products) {
		t.Fatalf("new index has %d documents, database %d products", len(ix), len(r.w.products))
	}
	for id, p := range r.w.products {
		if ix[id].Version != p.Version || ix[id].Deleted() != p.Deleted() {
			t.Errorf("%s: index v%d deleted=%v, database v%d deleted=%v", id, ix[id].Version, ix[id].Deleted(), p.Version, p.Deleted())
		}
	}
	for _, p := range []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill, readmodel.PhaseCatchUp,
		readmodel.PhaseValidate, readmodel.PhaseSwitch, readmodel.PhaseDrain, readmodel.PhaseSucceeded} {
		if _, ok := end.PhaseStarts[p]; !ok {
			t.Errorf("phase %s not recorded", p)
		}
	}
}

func TestKafkaAndDatabaseSourcesGiveTheSameDocuments(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 30)
	for _, p := range ps[:10] {
		_ = change(r, p, func(p *product.Product) error { return p.ChangeStock(7, time.Now()) })
	}
	_ = change(r, ps[11], func(p *product.Product) error { return p.Delete(time.Now()) })
	docs := map[readmodel.Source]map[string]int64{}
	for _, src := range []readmodel.Source{readmodel.SourceDatabase, readmodel.SourceKafka} {
		s, err := r.svc.Start(context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		if end := waitEnd(t, r.svc, s.ID); end.Phase != readmodel.PhaseSucceeded {
			t.Fatalf("%s: %s %s", src, end.Phase, end.Error)
		}
		docs[src] = map[string]int64{}
		for id, d := range r.w.indices[r.w.alias] {
			docs[src][id] = d.Version
		}
	}
	if fmt.Sprint(docs[readmodel.SourceDatabase]) != fmt.Sprint(docs[readmodel.SourceKafka]) {
		t.Fatalf("sources differ:\n%v\n%v", docs[readmodel.SourceDatabase], docs[readmodel.SourceKafka])
	}
}

func TestValidationFailureLeavesTheAliasAndRecordsWhy(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	r.seed(t, 20)
	var victim string
	r.beforeValidate(t, func(_ context.Context, index string) {
		r.w.mu.Lock()
		defer r.w.mu.Unlock()
		for id := range r.w.indices[index] {
			victim = id
			delete(r.w.indices[index], id)
			break
		}
	})
	before := r.w.alias
	end := r.rebuildToEnd(t, readmodel.SourceDatabase)
	if end.Phase != readmodel.PhaseFailed || !strings.Contains(end.Error, "missing") || !strings.Contains(end.Error, victim) {
		t.Fatalf("rebuild %s: %q (victim %s)", end.Phase, end.Error, victim)
	}
	if r.w.alias != before {
		t.Fatal("a failed validation moved the alias")
	}
	if _, ok := r.w.indices[end.ToIndex]; ok {
		t.Fatal("the invalid index was left behind")
	}
}

func TestPhantomAndStaleDocumentsFailValidation(t *testing.T) {
	for name, damage := range map[string]func(w *world, index string){
		"phantom": func(w *world, index string) {
			now := time.Now()
			w.indices[index]["0190a0b0-0000-7000-8000-0000000000ff"] = product.Snapshot{ID: product.NewID(now), Version: 1}
		},
		"stale": func(w *world, index string) {
			for id, d := range w.indices[index] {
				d.Version = 0
				w.indices[index][id] = d
				return
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rebuild.Config{})
			r.seed(t, 12)
			r.beforeValidate(t, func(_ context.Context, index string) {
				r.w.mu.Lock()
				defer r.w.mu.Unlock()
				damage(r.w, index)
			})
			if end := r.rebuildToEnd(t, readmodel.SourceDatabase); end.Phase != readmodel.PhaseFailed {
				t.Fatalf("damage %s passed validation", name)
			}
		})
	}
}

func TestOneRebuildAtATimeAndCancel(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	r.seed(t, 50)
	hold := make(chan struct{})
	entered := make(chan struct{}, 1)
	r.w.gate = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-hold
	}
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if _, err := r.svc.Start(context.Background(), readmodel.SourceDatabase); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("second start: %v, want ErrAlreadyRunning", err)
	}
	if _, err := r.svc.RollbackAlias(context.Background()); !errors.Is(err, readmodel.ErrAlreadyRunning) {
		t.Fatalf("rollback during a rebuild: %v", err)
	}
	before := r.w.alias
	if _, err := r.svc.Cancel(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	close(hold)
	end := waitEnd(t, r.svc, s.ID)
	if end.Phase != readmodel.PhaseCancelled {
		t.Fatalf("phase %s after cancel", end.Phase)
	}
	if _, ok := r.w.indices[end.ToIndex]; ok || r.w.alias != before {
		t.Fatal("cancel left the unfinished index or moved the alias")
	}
	if _, err := r.svc.Cancel(context.Background(), s.ID); !errors.Is(err, readmodel.ErrFinished) {
		t.Fatalf("cancel of a finished rebuild: %v", err)
	}
	r.w.gate = nil
	s2, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatalf("start after cancel: %v", err)
	}
	if end := waitEnd(t, r.svc, s2.ID); end.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("%s: %s", end.Phase, end.Error)
	}
}

func TestInterruptedRebuildIsRecoveredAsFailed(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	// A record left in the fill phase by a process of a release before resumable fills (it
	// recorded no catch-up position) that died a minute ago, with its unfinished index.
	dead, _ := readmodel.New("dead-1", readmodel.SourceDatabase, time.Now().Add(-time.Minute))
	_ = dead.Advance(readmodel.PhaseCreateIndex, time.Now())
	idx, _ := target{r.w}.CreateIndex(context.Background())
	dead.SetIndices(r.w.alias, idx)
	_ = dead.Advance(readmodel.PhaseFill, time.Now())
	_ = r.store.Create(context.Background(), dead)
	n, err := r.svc.RecoverInterrupted(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("recovered %d (%v), want 1", n, err)
	}
	got, _ := r.svc.Get(context.Background(), "dead-1")
	if got.Phase != readmodel.PhaseFailed || !strings.Contains(got.Error, "interrupted") {
		t.Fatalf("record %s %q", got.Phase, got.Error)
	}
	if _, ok := r.w.indices[idx]; ok {
		t.Fatal("the dead rebuild's index was not deleted")
	}
}

// TestRebuildInterruptedAfterTheSwitchIsDrainedOnRecovery: a process died in the drain, with
// the alias already on the new index. The events after the catch-up position (applied by the
// live projector to the old index only) are drained into the new one on recovery, and the
// rebuild ends succeeded; the live index is not deleted.
func TestRebuildInterruptedAfterTheSwitchIsDrainedOnRecovery(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ctx := context.Background()
	products := r.seed(t, 6)
	old := r.w.alias
	// The dead rebuild: the new index holds everything up to the catch-up position (4 events),
	// then the alias was switched and the process died before draining events 5 and 6.
	dead, _ := readmodel.New("dead-drain", readmodel.SourceDatabase, time.Now().Add(-time.Minute))
	_ = dead.Advance(readmodel.PhaseCreateIndex, time.Now())
	idx, _ := target{r.w}.CreateIndex(ctx)
	dead.SetIndices(old, idx)
	caught := 4
	for _, e := range r.w.log[:caught] {
		if err := (target{r.w}).Write(ctx, idx, []product.Snapshot{e.State}); err != nil {
			t.Fatal(err)
		}
	}
	dead.SetDrainFrom(map[int32]int64{0: int64(caught)})
	_ = dead.Advance(readmodel.PhaseDrain, time.Now())
	_ = r.store.Create(ctx, dead)
	r.w.alias = idx
	// One more change after the death: the live projector wrote it to the new index itself.
	if err := change(r, products[0], func(p *product.Product) error { return p.ChangeStock(9, time.Now()) }); err != nil {
		t.Fatal(err)
	}

	n, err := r.svc.RecoverInterrupted(ctx)
	if err != nil || n != 1 {
		t.Fatalf("recovered %d (%v), want 1", n, err)
	}
	got, _ := r.svc.Get(ctx, "dead-drain")
	if got.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("record %s %q, want succeeded after the drain", got.Phase, got.Error)
	}
	if r.w.alias != idx || r.w.indices[idx] == nil {
		t.Fatalf("alias on %s, index present %v: the live index must stay", r.w.alias, r.w.indices[idx] != nil)
	}
	for _, p := range products {
		doc, ok := r.w.indices[idx][p.ID().String()]
		if !ok || doc.Version != r.w.products[p.ID().String()].Version {
			t.Errorf("product %s: index has %+v (found %v), want version %d", p.ID(), doc.Version, ok, r.w.products[p.ID().String()].Version)
		}
	}
}

func TestRollbackAndPrune(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	r.seed(t, 5)
	first := r.w.alias
	var names []string
	for i := 0; i < 3; i++ {
		s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
		if err != nil {
			t.Fatal(err)
		}
		end := waitEnd(t, r.svc, s.ID)
		names = append(names, end.ToIndex)
	}
	rb, err := r.svc.RollbackAlias(context.Background())
	if err != nil || rb.From != names[2] || rb.To != names[1] || r.w.alias != names[1] {
		t.Fatalf("rollback %s -> %s (%v), alias %s", rb.From, rb.To, err, r.w.alias)
	}
	deleted, err := r.svc.PruneIndices(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// Live: names[1]. Kept: the newest other (names[2]). Deleted: names[0] and first.
	if len(deleted) != 2 || r.w.indices[names[1]] == nil || r.w.indices[names[2]] == nil {
		t.Fatalf("pruned %v", deleted)
	}
	if d, _ := r.svc.PruneIndices(context.Background(), 0); len(d) != 1 || r.w.indices[names[1]] == nil {
		t.Fatalf("prune 0 deleted %v; the live index must stay", d)
	}
	for _, keep := range []int{-1, rebuild.MaxPruneKeep + 1} {
		if d, err := r.svc.PruneIndices(context.Background(), keep); !errors.Is(err, readmodel.ErrInvalid) || len(d) != 0 {
			t.Errorf("prune keep %d: deleted %v, %v; want %v", keep, d, err, readmodel.ErrInvalid)
		}
	}
	_ = first
	if _, err := r.svc.RollbackAlias(context.Background()); !errors.Is(err, rebuild.ErrNoPreviousIndex) {
		t.Fatalf("rollback with nothing older: %v", err)
	}
}
