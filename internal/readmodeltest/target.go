package readmodeltest

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// targetCases are the rebuild target's contract (rebuild.Target): a rebuild fills a new index
// by name while the alias keeps serving the old one, then moves the alias in one conditional
// step; the live index is never deleted.
var targetCases = []fixtureCase{
	{"new indices are named alias_vN_timestamp, in creation order, without an alias", true, createIndexNames},
	{"rebuild writes go to the named index, keep the highest version and page in id order", false, writeAndDocuments},
	{"the alias switch is conditional and atomic", false, switchAliasIsConditional},
	{"deleting an index refuses the live one", false, deleteIndexRefusesTheLiveOne},
	{"indices are listed newest first with their counts", false, listIndices},
	{"without an alias a rebuild creates the first one", true, withoutAlias},
}

func createIndexNames(t *testing.T, e *env) {
	m := e.Target.MappingVersion()
	if m < 1 {
		t.Fatalf("MappingVersion = %d", m)
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(e.Alias) + `_v` + strconv.Itoa(m) + `_([0-9]{8}_[0-9]{6})$`)
	before := time.Now().UTC().Add(-2 * time.Second)
	a := e.createIndex()
	b := e.createIndex()
	for _, name := range []string{a, b} {
		sub := re.FindStringSubmatch(name)
		if sub == nil {
			t.Fatalf("index name %q is not %s_v%d_YYYYMMDD_HHMMSS", name, e.Alias, m)
		}
		at, err := time.ParseInLocation("20060102_150405", sub[1], time.UTC)
		if err != nil || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("index %s: time %v not now (%v)", name, at, err)
		}
	}
	if a == b || b < a {
		t.Errorf("second index %s is not after the first %s", b, a)
	}
	// Creating an index does not create the alias.
	if _, err := e.Target.AliasTarget(e.ctx()); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Errorf("AliasTarget after CreateIndex = %v, want ErrNoAlias", err)
	}
}

func writeAndDocuments(t *testing.T, e *env) {
	live := e.aliasTarget()
	index := e.createIndex()
	want := map[string]rebuild.DocVersion{}
	first := rebuildFirstBatch(t, want)
	if err := e.Target.Write(e.ctx(), index, first); err != nil {
		t.Fatalf("Write: %v", err)
	}
	second := rebuildSecondBatch(t, first, want)
	if err := e.Target.Write(e.ctx(), index, second); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Target.Write(e.ctx(), index, nil); err != nil {
		t.Errorf("Write of nothing: %v", err)
	}
	if err := e.Target.Refresh(e.ctx(), index); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	wantList := make([]rebuild.DocVersion, 0, len(want))
	for _, d := range want {
		wantList = append(wantList, d)
	}
	slices.SortFunc(wantList, func(a, b rebuild.DocVersion) int { return cmp.Compare(a.ID, b.ID) })
	checkDocumentsPaging(t, e, index, wantList)
	// The rebuild's index is not the live one.
	if docs := e.documents(live, 100); len(docs) != 0 {
		t.Errorf("the live index got %d documents written by name to %s", len(docs), index)
	}
	if res := e.search(query.SearchProducts{Text: "rebuilt"}); res.Total != 0 {
		t.Errorf("search through the alias sees the new index before the switch: %v", names(res.Items))
	}
	checkWritesOutsideTheAliasFail(t, e, index, first[0])
}

// rebuildFirstBatch is a rebuild's first write: 23 products at versions 1 to 4, every fifth
// a tombstone, recorded in want.
func rebuildFirstBatch(t *testing.T, want map[string]rebuild.DocVersion) []product.Snapshot {
	var first []product.Snapshot
	for i := range 23 {
		p := Product{Version: int64(1 + i%4), Name: fmt.Sprintf("Rebuilt %d", i), Deleted: i%5 == 0}
		s := p.Snapshot(t)
		first = append(first, s)
		want[string(s.ID)] = rebuild.DocVersion{ID: string(s.ID), Version: s.Version, Deleted: s.Deleted()}
	}
	return first
}

// rebuildSecondBatch is a second write over the first: older versions lose, the same event
// again changes nothing, newer ones win, and within one call the highest version of an id
// wins whatever its position. want is updated to what must remain.
func rebuildSecondBatch(t *testing.T, first []product.Snapshot, want map[string]rebuild.DocVersion) []product.Snapshot {
	var second []product.Snapshot
	for i, s := range first[:12] {
		var v int64
		var deleted bool
		switch i % 3 {
		case 0:
			v = s.Version - 1 // older, or 0 which is skipped below
		case 1:
			second = append(second, s) // the same event again (see "the same version again changes nothing")
			continue
		case 2:
			v, deleted = s.Version+3, true
		}
		if v < 1 {
			continue
		}
		n := Product{ID: s.ID, Version: v, Name: "Changed", Deleted: deleted}.Snapshot(t)
		if i%3 == 2 {
			older := Product{ID: s.ID, Version: v - 1, Name: "Changed older"}.Snapshot(t)
			second = append(second, n, older)
			want[string(s.ID)] = rebuild.DocVersion{ID: string(s.ID), Version: v, Deleted: deleted}
			continue
		}
		second = append(second, n)
	}
	return second
}

// checkDocumentsPaging reads index back by several page sizes and from an afterID that is
// no document's id: every way gives want, in id order.
func checkDocumentsPaging(t *testing.T, e *env, index string, want []rebuild.DocVersion) {
	t.Helper()
	for _, pageSize := range []int{1, 7, 23, 1000} {
		got := e.documents(index, pageSize)
		if d := diffDocs(got, want); d != "" {
			t.Errorf("Documents by %d: %s", pageSize, d)
		}
	}
	// afterID need not be a document's id.
	mid := want[10].ID
	page, err := e.Target.Documents(e.ctx(), index, mid[:20], 1000)
	if err != nil {
		t.Fatalf("Documents: %v", err)
	}
	var wantAfter []rebuild.DocVersion
	for _, d := range want {
		if d.ID > mid[:20] {
			wantAfter = append(wantAfter, d)
		}
	}
	if d := diffDocs(page, wantAfter); d != "" {
		t.Errorf("Documents after %q: %s", mid[:20], d)
	}
	if _, err := e.Target.Documents(e.ctx(), index, "", 0); err == nil {
		t.Errorf("Documents with limit 0 succeeded")
	}
}

// checkWritesOutsideTheAliasFail: writes to indices that do not exist, or are not the
// alias's, fail, and so does a document without version.
func checkWritesOutsideTheAliasFail(t *testing.T, e *env, index string, doc product.Snapshot) {
	t.Helper()
	missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
	for _, name := range []string{missing, "someone_else", e.Alias} {
		if err := e.Target.Write(e.ctx(), name, []product.Snapshot{doc}); err == nil {
			t.Errorf("Write to %q succeeded", name)
		}
		if _, err := e.Target.Documents(e.ctx(), name, "", 10); err == nil {
			t.Errorf("Documents of %q succeeded", name)
		}
	}
	bad := doc
	bad.Version = 0
	if err := e.Target.Write(e.ctx(), index, []product.Snapshot{bad}); err == nil {
		t.Errorf("Write of a document without version succeeded")
	}
}

func switchAliasIsConditional(t *testing.T, e *env) {
	old := e.aliasTarget()
	e.apply(Product{Name: "Old index item", Category: "switch"}.Snapshot(t))
	e.refresh()
	other := e.createIndex()
	next := e.createIndex()
	if err := e.Target.Write(e.ctx(), next, []product.Snapshot{Product{Name: "New index item", Category: "switch"}.Snapshot(t)}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Target.RestoreSettings(e.ctx(), next); err != nil {
		t.Fatalf("RestoreSettings: %v", err)
	}
	if err := e.Target.Refresh(e.ctx(), next); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
	for name, from := range map[string]string{"another index": other, "a missing index": missing, "no alias": ""} {
		err := e.Target.SwitchAlias(e.ctx(), from, next)
		if !errors.Is(err, readmodel.ErrAliasMoved) {
			t.Errorf("SwitchAlias from %s (%q) = %v, want ErrAliasMoved", name, from, err)
		}
		if got := e.aliasTarget(); got != old {
			t.Fatalf("alias moved to %s by a refused switch", got)
		}
	}
	if err := e.Target.SwitchAlias(e.ctx(), old, next); err != nil {
		t.Fatalf("SwitchAlias: %v", err)
	}
	if got := e.aliasTarget(); got != next {
		t.Fatalf("alias = %s, want %s", got, next)
	}
	// A retry of a switch whose answer was lost succeeds.
	if err := e.Target.SwitchAlias(e.ctx(), old, next); err != nil {
		t.Errorf("repeated SwitchAlias: %v", err)
	}
	res := e.search(query.SearchProducts{Category: "switch"})
	if len(res.Items) != 1 || res.Items[0].Name != "New index item" {
		t.Errorf("after the switch search shows %v, want the new index's item", names(res.Items))
	}
	// Writes through the alias go to the new index now.
	e.apply(Product{Name: "Written after switch", Category: "switch"}.Snapshot(t))
	e.refresh()
	if docs := e.documents(next, 100); len(docs) != 2 {
		t.Errorf("new index has %d documents, want 2", len(docs))
	}
	if docs := e.documents(old, 100); len(docs) != 1 {
		t.Errorf("old index has %d documents, want 1", len(docs))
	}
	// Rollback is a switch back.
	if err := e.Target.SwitchAlias(e.ctx(), next, old); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	res = e.search(query.SearchProducts{Category: "switch"})
	if len(res.Items) != 1 || res.Items[0].Name != "Old index item" {
		t.Errorf("after the rollback search shows %v", names(res.Items))
	}
	if err := e.Target.SwitchAlias(e.ctx(), old, old); err == nil {
		t.Errorf("SwitchAlias to itself succeeded")
	}
	if err := e.Target.SwitchAlias(e.ctx(), old, missing); err == nil || e.aliasTarget() != old {
		t.Errorf("SwitchAlias to a missing index = %v (alias %s)", err, e.aliasTarget())
	}
}

func deleteIndexRefusesTheLiveOne(t *testing.T, e *env) {
	live := e.aliasTarget()
	old := e.createIndex()
	if err := e.Target.DeleteIndex(e.ctx(), live); err == nil {
		t.Fatalf("DeleteIndex of the live index succeeded")
	}
	if got := e.aliasTarget(); got != live {
		t.Fatalf("alias = %s after refused delete, want %s", got, live)
	}
	e.apply(Product{Name: "Still served", Category: "delete"}.Snapshot(t))
	e.refresh()
	if res := e.search(query.SearchProducts{Category: "delete"}); res.Total != 1 {
		t.Errorf("live index lost documents: total %d", res.Total)
	}
	if err := e.Target.DeleteIndex(e.ctx(), old); err != nil {
		t.Fatalf("DeleteIndex(%s): %v", old, err)
	}
	infos, err := e.Target.ListIndices(e.ctx())
	if err != nil {
		t.Fatalf("ListIndices: %v", err)
	}
	if len(infos) != 1 || infos[0].Name != live {
		t.Errorf("after delete: %+v, want only %s", infos, live)
	}
	if err := e.Target.DeleteIndex(e.ctx(), old); err == nil {
		t.Errorf("second DeleteIndex(%s) succeeded", old)
	}
	if err := e.Target.Write(e.ctx(), old, []product.Snapshot{Product{Name: "Ghost"}.Snapshot(t)}); err == nil {
		t.Errorf("Write to a deleted index succeeded")
	}
	if err := e.Target.DeleteIndex(e.ctx(), "someone_else"); err == nil {
		t.Errorf("DeleteIndex of a foreign index succeeded")
	}
}

func listIndices(t *testing.T, e *env) {
	live := e.aliasTarget()
	e.apply(
		Product{Name: "Listed one"}.Snapshot(t), Product{Name: "Listed two"}.Snapshot(t),
		Product{Name: "Listed three"}.Snapshot(t), Product{Name: "Listed gone", Version: 2, Deleted: true}.Snapshot(t),
	)
	e.refresh()
	newer := e.createIndex()
	if err := e.Target.Write(e.ctx(), newer, []product.Snapshot{
		Product{Name: "Rebuilt one"}.Snapshot(t), Product{Name: "Rebuilt gone", Version: 3, Deleted: true}.Snapshot(t),
	}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Target.Refresh(e.ctx(), newer); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	infos, err := e.Target.ListIndices(e.ctx())
	if err != nil {
		t.Fatalf("ListIndices: %v", err)
	}
	if len(infos) != 2 {
		t.Fatalf("ListIndices = %+v, want 2 indices", infos)
	}
	want := []rebuild.IndexInfo{
		{Name: newer, MappingVersion: e.Target.MappingVersion(), Live: 1, Tombstones: 1},
		{Name: live, MappingVersion: e.Target.MappingVersion(), Live: 3, Tombstones: 1, Aliased: true},
	}
	for i, w := range want {
		g := infos[i]
		if g.Name != w.Name || g.MappingVersion != w.MappingVersion || g.Live != w.Live || g.Tombstones != w.Tombstones || g.Aliased != w.Aliased {
			t.Errorf("index %d = %+v, want %+v (newest first)", i, g, w)
		}
		if g.Created.IsZero() || g.Created.UTC().Format("20060102_150405") != g.Name[len(g.Name)-15:] {
			t.Errorf("index %s: Created %v does not match its name", g.Name, g.Created)
		}
	}
}

func withoutAlias(t *testing.T, e *env) {
	if _, err := e.Target.AliasTarget(e.ctx()); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Fatalf("AliasTarget = %v, want ErrNoAlias", err)
	}
	if _, err := e.Search.Search(e.ctx(), query.SearchProducts{Text: "x"}); err == nil || errors.Is(err, query.ErrInvalidSearch) {
		t.Errorf("Search without alias = %v, want a read-model error, not a client error", err)
	}
	infos, err := e.Target.ListIndices(e.ctx())
	if err != nil || len(infos) != 0 {
		t.Errorf("ListIndices = %+v, %v; want none", infos, err)
	}
	index := e.createIndex()
	if err := e.Target.Write(e.ctx(), index, []product.Snapshot{Product{Name: "Restored item"}.Snapshot(t)}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Target.Refresh(e.ctx(), index); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	missing := e.Alias + "_v" + strconv.Itoa(e.Target.MappingVersion()) + "_20000101_000000"
	if err := e.Target.SwitchAlias(e.ctx(), missing, index); !errors.Is(err, readmodel.ErrAliasMoved) {
		t.Errorf("SwitchAlias from an index without alias = %v, want ErrAliasMoved", err)
	}
	if err := e.Target.SwitchAlias(e.ctx(), "", index); err != nil {
		t.Fatalf("SwitchAlias(\"\", %s): %v", index, err)
	}
	if got := e.aliasTarget(); got != index {
		t.Fatalf("alias = %s, want %s", got, index)
	}
	infos, err = e.Target.ListIndices(e.ctx())
	if err != nil || len(infos) != 1 || !infos[0].Aliased || infos[0].Live != 1 {
		t.Errorf("ListIndices = %+v, %v; want %s aliased with 1 live document", infos, err, index)
	}
	if res := e.search(query.SearchProducts{Text: "restored"}); res.Total != 1 {
		t.Errorf("search after the alias was created: total %d", res.Total)
	}
	// EnsureAlias keeps an existing alias.
	got, err := e.EnsureAlias(e.ctx())
	if err != nil || got != index {
		t.Errorf("EnsureAlias = %s, %v; want %s", got, err, index)
	}
}

// diffDocs describes how got differs from want, or is empty when they are equal.
func diffDocs(got, want []rebuild.DocVersion) string {
	if slices.Equal(got, want) {
		return ""
	}
	var out []string
	if len(got) != len(want) {
		out = append(out, fmt.Sprintf("%d documents, want %d", len(got), len(want)))
	}
	gotByID := map[string]rebuild.DocVersion{}
	for _, d := range got {
		gotByID[d.ID] = d
	}
	for _, w := range want {
		g, ok := gotByID[w.ID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s missing (want v%d deleted=%v)", w.ID, w.Version, w.Deleted))
		case g != w:
			out = append(out, fmt.Sprintf("%s is v%d deleted=%v, want v%d deleted=%v", w.ID, g.Version, g.Deleted, w.Version, w.Deleted))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("order differs: got %v", got))
	}
	return strings.Join(out, "; ")
}
