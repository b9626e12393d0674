package rebuild_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// rebuildOnce runs a database rebuild to its end and returns the new live index.
func (r *rig) rebuildOnce(t *testing.T) string {
	t.Helper()
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, r.svc, s.ID)
	if end.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("rebuild %s: %s", end.Phase, end.Error)
	}
	return end.ToIndex
}

// matchesDatabase fails for every product whose document in index is missing or not at the
// database's version (tombstones included): what `catalog verify` checks.
func (r *rig) matchesDatabase(t *testing.T, index string) {
	t.Helper()
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for id, want := range r.w.products {
		got, ok := r.w.indices[index][id]
		if !ok || got.Version != want.Version || got.Deleted() != want.Deleted() {
			t.Errorf("%s: product %s is v%d deleted=%v in the database, the index has v%d deleted=%v (found %v)",
				index, id, want.Version, want.Deleted(), got.Version, got.Deleted(), ok)
		}
	}
}

// afterADelete is the situation of most rollback tests: five products projected into the
// first index, a rebuild onto the second, then a delete the projector writes to the second
// only. It returns the rig, the products and both indices.
func afterADelete(t *testing.T, cfg rebuild.Config) (r *rig, ps []*product.Product, first, second string) {
	t.Helper()
	r = newRig(t, cfg)
	ps = r.seed(t, 5)
	r.w.project()
	first = r.w.alias
	second = r.rebuildOnce(t)
	if err := change(r, ps[0], func(p *product.Product) error { return p.Delete(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	r.w.project()
	return r, ps, first, second
}

// TestRollbackCatchesUpThePreviousIndex: after a rebuild, a product is deleted, another
// changed and a third created; the live projector writes them to the new index only. A
// rollback must not bring back the old state: the previous index is caught up from where
// the projector left it before it serves, and what the projector writes to the rebuilt
// index during that catch-up is drained after the switch.
func TestRollbackCatchesUpThePreviousIndex(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 5)
	r.w.project()
	first := r.w.alias
	second := r.rebuildOnce(t)

	now := time.Now()
	if err := change(r, ps[0], func(p *product.Product) error { return p.Delete(now) }); err != nil {
		t.Fatal(err)
	}
	if err := change(r, ps[1], func(p *product.Product) error { return p.ChangeStock(42, now) }); err != nil {
		t.Fatal(err)
	}
	r.seed(t, 1)
	r.w.project() // into second: the alias is there
	// During the catch-up one more change arrives and the projector writes it to second.
	r.w.onRead = func() {
		r.w.onRead = nil
		if err := change(r, ps[2], func(p *product.Product) error { return p.ChangeStock(7, now) }); err != nil {
			t.Error(err)
		}
		r.w.project()
	}

	rb, err := r.svc.RollbackAlias(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rb.From != second || rb.To != first || r.w.alias != first {
		t.Fatalf("rollback %s -> %s, alias on %s; want %s -> %s", rb.From, rb.To, r.w.alias, second, first)
	}
	if rb.Since[0] != 5 || rb.CaughtUp != 3 || rb.Drained != 1 {
		t.Errorf("since %v, caught up %d, drained %d; want since offset 5, 3 events caught up and 1 drained", rb.Since, rb.CaughtUp, rb.Drained)
	}
	r.matchesDatabase(t, first)
	if pos, ok, _ := r.store.IndexPosition(context.Background(), first); ok {
		t.Errorf("the live index still has a recorded position %v after its catch-up", pos)
	}
	if pos, ok, _ := r.store.IndexPosition(context.Background(), second); !ok || pos[0] != 9 {
		t.Errorf("the index the alias left has position %v (recorded %v), want the projector's committed offset 9", pos, ok)
	}
}

// TestRollbackFromWhereTheProjectorWas: the projector lagged behind the rebuild's catch-up
// when the alias switched, so events before the catch-up position reached the new index only.
// The previous index's position is the projector's committed offset at the switch, not the
// rebuild's catch-up position: a rollback applies those events too.
func TestRollbackFromWhereTheProjectorWas(t *testing.T) {
	r := newRig(t, rebuild.Config{})
	ps := r.seed(t, 5)
	r.w.project()
	first := r.w.alias
	now := time.Now()
	// Written while the projector is stalled: the rebuild gets them, the old index does not.
	if err := change(r, ps[0], func(p *product.Product) error { return p.Delete(now) }); err != nil {
		t.Fatal(err)
	}
	r.seed(t, 1)
	r.rebuildOnce(t)
	r.w.project() // the projector catches up, into the new index

	rb, err := r.svc.RollbackAlias(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rb.Since[0] != 5 || r.w.alias != first {
		t.Fatalf("rolled back to %s from position %v, want %s from the projector's offset 5", r.w.alias, rb.Since, first)
	}
	r.matchesDatabase(t, first)
}

// TestRollbackRefusesWhatItCannotCatchUp: an index of an older mapping, an index with no
// recorded position and one whose missing events are past retention are refused with their
// reason, and the alias stays where it is.
func TestRollbackRefusesWhatItCannotCatchUp(t *testing.T) {
	for name, tc := range map[string]struct {
		damage func(r *rig, previous string)
		want   error
		says   string
	}{
		"outdated mapping": {func(r *rig, previous string) { r.w.mapping = map[string]int{previous: 0} }, rebuild.ErrRollbackMappingOutdated, "catalog rebuild"},
		"no position": {func(r *rig, previous string) {
			_ = r.store.ClearIndexPosition(context.Background(), previous)
		}, rebuild.ErrRollbackPositionUnknown, "catalog rebuild"},
		"past retention": {func(r *rig, _ string) { r.w.logStart = 6 }, rebuild.ErrRollbackNotRetained, "catalog rebuild"},
	} {
		t.Run(name, func(t *testing.T) {
			r, _, first, second := afterADelete(t, rebuild.Config{})
			tc.damage(r, first)
			_, err := r.svc.RollbackAlias(context.Background())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("rollback: %v, want %v saying %q", err, tc.want, tc.says)
			}
			if r.w.alias != second {
				t.Fatalf("a refused rollback moved the alias to %s", r.w.alias)
			}
		})
	}
}

// TestRollbackInterrupted: a rollback cancelled during its catch-up leaves the alias where it
// was and is simply run again; one whose drain after the switch cannot complete leaves the
// live index marked behind, and recovery catches it up.
func TestRollbackInterrupted(t *testing.T) {
	t.Run("during the catch-up", func(t *testing.T) {
		r, _, first, second := afterADelete(t, rebuild.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		r.w.onRead = func() { r.w.onRead = nil; cancel() }
		if _, err := r.svc.RollbackAlias(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("rollback cancelled in its catch-up: %v", err)
		}
		if r.w.alias != second {
			t.Fatalf("alias on %s after an interrupted catch-up, want %s", r.w.alias, second)
		}
		if _, err := r.svc.RollbackAlias(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r.w.alias != first {
			t.Fatalf("alias on %s, want %s", r.w.alias, first)
		}
		r.matchesDatabase(t, first)
	})
	t.Run("after the switch", func(t *testing.T) {
		r, ps, first, _ := afterADelete(t, rebuild.Config{DrainTimeout: 300 * time.Millisecond})
		now := time.Now()
		// During the catch-up the projector writes one more change to the rebuilt index;
		// then the event log becomes unreachable right after the switch.
		r.w.onRead = func() {
			r.w.onRead = nil
			if err := change(r, ps[1], func(p *product.Product) error { return p.ChangeStock(3, now) }); err != nil {
				t.Error(err)
			}
			r.w.project()
		}
		r.w.afterSwitch = func() {
			r.w.mu.Lock()
			r.w.readErr = errors.New("kafka unreachable")
			r.w.mu.Unlock()
		}
		_, err := r.svc.RollbackAlias(context.Background())
		if err == nil || !strings.Contains(err.Error(), "behind") {
			t.Fatalf("rollback whose drain fails: %v, want an error that says the index is behind", err)
		}
		if r.w.alias != first {
			t.Fatalf("alias on %s, want %s (the switch happened)", r.w.alias, first)
		}
		if _, ok, _ := r.store.IndexPosition(context.Background(), first); !ok {
			t.Fatal("the live index that missed its drain has no recorded position: status could not report it")
		}
		r.w.mu.Lock()
		r.w.afterSwitch, r.w.readErr = nil, nil
		r.w.mu.Unlock()
		if _, err := r.svc.RecoverInterrupted(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := r.store.IndexPosition(context.Background(), first); ok {
			t.Fatal("recovery left the live index marked behind")
		}
		r.matchesDatabase(t, first)
	})
}

// TestRebuildRecordsPositionsAroundTheSwitch: a rebuild whose drain cannot complete leaves
// the new live index marked behind (status reports it, recovery catches it up), and the old
// one marked where the projector left it.
func TestRebuildRecordsPositionsAroundTheSwitch(t *testing.T) {
	r := newRig(t, rebuild.Config{DrainTimeout: 300 * time.Millisecond})
	ps := r.seed(t, 5)
	r.w.project()
	first := r.w.alias
	r.w.afterSwitch = func() {
		r.w.mu.Lock()
		r.w.readErr = errors.New("kafka unreachable")
		r.w.mu.Unlock()
		// Written and projected into the new index after the switch.
		if err := change(r, ps[0], func(p *product.Product) error { return p.ChangeStock(5, time.Now()) }); err != nil {
			t.Error(err)
		}
		r.w.project()
	}
	s, err := r.svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, r.svc, s.ID)
	if end.Phase != readmodel.PhaseFailed || r.w.alias != end.ToIndex {
		t.Fatalf("rebuild %s (%s), alias on %s: want failed in the drain with the alias on %s", end.Phase, end.Error, r.w.alias, end.ToIndex)
	}
	if pos, ok, _ := r.store.IndexPosition(context.Background(), end.ToIndex); !ok || pos[0] != 5 {
		t.Errorf("new live index position %v (%v), want the catch-up offset 5", pos, ok)
	}
	if pos, ok, _ := r.store.IndexPosition(context.Background(), first); !ok || pos[0] != 5 {
		t.Errorf("old index position %v (%v), want the projector's offset 5", pos, ok)
	}
	r.w.mu.Lock()
	r.w.afterSwitch, r.w.readErr = nil, nil
	r.w.mu.Unlock()
	if _, err := r.svc.RecoverInterrupted(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r.store.IndexPosition(context.Background(), end.ToIndex); ok {
		t.Error("recovery left the live index marked behind")
	}
	r.matchesDatabase(t, end.ToIndex)
}
