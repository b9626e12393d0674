package readmodeltest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// applyCases are the projection's contract (command.ProductProjection): writes are keyed by
// the product id with its version as external version, so they are idempotent and order-free,
// and a delete is a tombstone that no older write can undo.
var applyCases = []fixtureCase{
	{"writes out of order end at the newest version", false, outOfOrderEndsAtTheNewest},
	{"the same version again changes nothing", false, equalVersionIsIdempotent},
	{"a delete hides the product and an older create never resurrects it", false, tombstoneNeverResurrects},
	{"concurrent writes of one id end at the highest version", false, concurrentWritesOfOneID},
	{"concurrent writes of many ids each end at their highest version", false, concurrentWritesOfManyIDs},
	{"a snapshot without id or version is rejected for good", false, incompleteSnapshotIsRejected},
	{"history beyond today's limits is stored and searchable", false, historyBeyondTodaysLimits},
	{"without alias a write fails and is worth a retry", true, writeWithoutAliasIsTransient},
}

func outOfOrderEndsAtTheNewest(t *testing.T, e *env) {
	id := NewID()
	v := func(n int64, name string) product.Snapshot {
		return Product{ID: id, Version: n, Name: name, Category: "order"}.Snapshot(t)
	}
	e.apply(v(3, "Gamma three"), v(1, "Alpha one"), v(2, "Beta two"))
	e.refresh()
	d, ok := e.doc(e.aliasTarget(), id)
	if !ok || d.Version != 3 || d.Deleted {
		t.Fatalf("document = %+v (found %v), want v3 live", d, ok)
	}
	res := e.search(query.SearchProducts{Category: "order"})
	if len(res.Items) != 1 || res.Items[0].Name != "Gamma three" || res.Items[0].Version != 3 || res.Total != 1 {
		t.Fatalf("search = %+v, want only Gamma three v3", res)
	}
	for _, old := range []string{"alpha", "beta"} {
		if res := e.search(query.SearchProducts{Text: old}); res.Total != 0 {
			t.Errorf("q=%s finds %v: an older version overwrote the newest", old, names(res.Items))
		}
	}
}

// An equal version is the same event again (one event per version carries the full
// state), so re-applying it must leave the document as it is. Elasticsearch's
// external_gte (docs/ARCHITECTURE.md, "Guarantees") re-writes it with the same content; other adapters may
// skip the write. Two different states at one version cannot occur and are not pinned.
func equalVersionIsIdempotent(t *testing.T, e *env) {
	id := NewID()
	e.apply(Product{ID: id, Version: 2, Name: "Original widget"}.Snapshot(t))
	e.apply(Product{ID: id, Version: 2, Name: "Original widget"}.Snapshot(t))
	e.refresh()
	res := e.search(query.SearchProducts{Text: "widget"})
	if len(res.Items) != 1 || res.Items[0].Name != "Original widget" || res.Items[0].Version != 2 {
		t.Fatalf("after the same v2 twice: %v (total %d), want one Original widget at v2", names(res.Items), res.Total)
	}
	if d, ok := e.doc(e.aliasTarget(), id); !ok || d.Version != 2 {
		t.Fatalf("document = %+v (found %v), want v2", d, ok)
	}
}

func tombstoneNeverResurrects(t *testing.T, e *env) {
	deleted := NewID()
	e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
	e.refresh()
	if res := e.search(query.SearchProducts{Text: "tombstone"}); res.Total != 1 {
		t.Fatalf("before delete: total %d, want 1", res.Total)
	}
	e.apply(Product{ID: deleted, Version: 2, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1, Deleted: true}.Snapshot(t))
	e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
	// Deleted before it was created (the delete event arrived first).
	early := NewID()
	e.apply(Product{ID: early, Version: 2, Name: "Tombstone chair", Category: "tomb", Deleted: true}.Snapshot(t))
	e.apply(Product{ID: early, Version: 1, Name: "Tombstone chair", Category: "tomb"}.Snapshot(t))
	live := NewID()
	e.apply(Product{ID: live, Version: 1, Name: "Living table", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
	e.refresh()
	for _, q := range []query.SearchProducts{
		{Text: "tombstone"}, {Text: "lamp"}, {Category: "tomb"}, {Category: "tomb", Sort: query.SortPriceAsc},
		{MinPrice: ptr(int64(100)), MaxPrice: ptr(int64(100))}, {Category: "tomb", InStock: ptr(true)}, {Sort: query.SortNewest},
	} {
		res := e.search(q)
		for _, it := range res.Items {
			if it.ID == string(deleted) || it.ID == string(early) {
				t.Errorf("search %+v shows the tombstone %s", q, it.Name)
			}
		}
	}
	if res := e.search(query.SearchProducts{Category: "tomb"}); res.Total != 1 || len(res.Items) != 1 || res.Items[0].ID != string(live) {
		t.Errorf("category tomb: %v (total %d), want only the live table", names(res.Items), res.Total)
	}
	// The old create replayed again after the tombstone has long been written and
	// searchable: still hidden, still a tombstone.
	e.apply(Product{ID: deleted, Version: 1, Name: "Tombstone lamp", Category: "tomb", Amount: 100, Stock: 1}.Snapshot(t))
	e.refresh()
	if res := e.search(query.SearchProducts{Text: "tombstone"}); res.Total != 0 {
		t.Errorf("after a late replay of the create: total %d, want 0", res.Total)
	}
	index := e.aliasTarget()
	for _, id := range []product.ID{deleted, early} {
		if d, ok := e.doc(index, id); !ok || d.Version != 2 || !d.Deleted {
			t.Errorf("tombstone %s = %+v (found %v), want v2 deleted", id, d, ok)
		}
	}
	infos, err := e.Target.ListIndices(e.ctx())
	if err != nil {
		t.Fatalf("ListIndices: %v", err)
	}
	if len(infos) != 1 || infos[0].Live != 1 || infos[0].Tombstones != 2 {
		t.Errorf("ListIndices = %+v, want one index with 1 live and 2 tombstones", infos)
	}
}

func concurrentWritesOfOneID(t *testing.T, e *env) {
	id := NewID()
	var (
		mu   sync.Mutex
		maxV int64
		wg   sync.WaitGroup
		errs = make(chan error, 16*8)
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for range 8 {
				v := 1 + r.Int64N(500)
				s := Product{ID: id, Version: v, Name: "Concurrent v" + strconv.FormatInt(v, 10), Category: "concurrent"}.Snapshot(t)
				if err := e.Projection.Apply(e.ctx(), s); err != nil {
					errs <- fmt.Errorf("apply v%d: %w", v, err)
					return
				}
				mu.Lock()
				maxV = max(maxV, v)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.refresh()
	if d, ok := e.doc(e.aliasTarget(), id); !ok || d.Version != maxV {
		t.Fatalf("document = %+v (found %v), want v%d", d, ok, maxV)
	}
	res := e.search(query.SearchProducts{Category: "concurrent"})
	if want := "Concurrent v" + strconv.FormatInt(maxV, 10); len(res.Items) != 1 || res.Items[0].Name != want || res.Items[0].Version != maxV {
		t.Fatalf("search = %v, want %q (v%d)", res.Items, want, maxV)
	}
}

func concurrentWritesOfManyIDs(t *testing.T, e *env) {
	ids := make([]product.ID, 40)
	for i := range ids {
		ids[i] = NewID()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := shuffledVersions(ids, uint64(g))
			for _, x := range work[:len(work)/2] {
				s := Product{ID: x.id, Version: x.v, Name: "Many v" + strconv.FormatInt(x.v, 10), Category: "many"}.Snapshot(t)
				if err := e.Projection.Apply(e.ctx(), s); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	// Everyone's last word: the highest version of each id, once more, from one writer.
	for _, id := range ids {
		e.apply(Product{ID: id, Version: 5, Name: "Many v5", Category: "many"}.Snapshot(t))
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.refresh()
	docs := e.documents(e.aliasTarget(), 1000)
	if len(docs) != len(ids) {
		t.Fatalf("%d documents, want %d", len(docs), len(ids))
	}
	for _, d := range docs {
		if d.Version != 5 || d.Deleted {
			t.Errorf("document %+v, want v5", d)
		}
	}
	res := e.search(query.SearchProducts{Category: "many", Size: 100})
	for _, it := range res.Items {
		if it.Name != "Many v5" {
			t.Errorf("%s shows %q, want the content of v5", it.ID, it.Name)
		}
	}
}

func incompleteSnapshotIsRejected(t *testing.T, e *env) {
	good := Product{Name: "Valid"}.Snapshot(t)
	noID := good
	noID.ID = ""
	noVersion := good
	noVersion.Version = 0
	for name, s := range map[string]product.Snapshot{"no id": noID, "no version": noVersion} {
		if err := e.Projection.Apply(e.ctx(), s); !errors.Is(err, command.ErrProjectionRejected) {
			t.Errorf("%s: Apply = %v, want ErrProjectionRejected", name, err)
		}
	}
}

func historyBeyondTodaysLimits(t *testing.T, e *env) {
	// A name written when the limit was longer: the read model shows what the event says.
	long := "Heritagelamp " + strings.Repeat("x", 2*product.MaxNameLength)
	s := Product{Name: "placeholder"}.Snapshot(t)
	s.Details = product.UnmarshalDetailsFromHistory(s.Details.SKU, long, "", "lighting", "Acme", 100, "EUR", 1, nil, nil)
	e.apply(s)
	e.refresh()
	res := e.search(query.SearchProducts{Text: "heritagelamp"})
	if len(res.Items) != 1 || res.Items[0].Name != long || res.Items[0].Tags == nil {
		t.Fatalf("legacy product: %+v", res.Items)
	}
}

func writeWithoutAliasIsTransient(t *testing.T, e *env) {
	err := e.Projection.Apply(e.ctx(), Product{Name: "Early bird"}.Snapshot(t))
	if err == nil || errors.Is(err, command.ErrProjectionRejected) {
		t.Fatalf("Apply without alias = %v, want a transient error", err)
	}
}

// idVersion is one write of a concurrent writer: a version of an id.
type idVersion struct {
	id product.ID
	v  int64
}

// shuffledVersions is versions 1 to 5 of every id in an order of its own for each seed.
func shuffledVersions(ids []product.ID, seed uint64) []idVersion {
	r := rand.New(rand.NewPCG(seed, 7))
	var work []idVersion
	for _, id := range ids {
		for v := int64(1); v <= 5; v++ {
			work = append(work, idVersion{id, v})
		}
	}
	r.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
	return work
}
