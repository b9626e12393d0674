package elasticsearch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// target returns the rebuild target of the test's alias, closed at the end of the test.
func (e *rmEnv) target() *elasticsearch.Target {
	e.t.Helper()
	tg, err := elasticsearch.NewTarget(e.client, e.ix, e.cfg)
	if err != nil {
		e.t.Fatalf("NewTarget: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tg.Close(ctx)
	})
	return tg
}

// indexSettings returns the index settings of name (without the "index." prefix).
func (e *rmEnv) indexSettings(name string) map[string]any {
	e.t.Helper()
	var s map[string]struct {
		Settings struct {
			Index map[string]any `json:"index"`
		} `json:"settings"`
	}
	e.rawJSON(http.MethodGet, "/"+name+"/_settings", nil, &s)
	return s[name].Settings.Index
}

// writeIndices reports which indices hold the alias and which of them is the write index.
func (e *rmEnv) writeIndices() (all, writers []string) {
	e.t.Helper()
	var res map[string]struct {
		Aliases map[string]struct {
			IsWriteIndex bool `json:"is_write_index"`
		} `json:"aliases"`
	}
	if e.rawJSON(http.MethodGet, "/_alias/"+e.cfg.Alias, nil, &res) == http.StatusNotFound {
		return nil, nil
	}
	for index, v := range res {
		all = append(all, index)
		if v.Aliases[e.cfg.Alias].IsWriteIndex {
			writers = append(writers, index)
		}
	}
	return all, writers
}

// rmSnapshots returns n snapshots with random versions; about every tenth is a tombstone.
func rmSnapshots(t testing.TB, n int) []product.Snapshot {
	t.Helper()
	out := make([]product.Snapshot, n)
	for i := range out {
		p := readmodeltest.Product{
			ID: readmodeltest.NewID(), Version: 1 + rand.Int64N(50),
			Name: fmt.Sprintf("Rebuild item %d", i), Description: "A product written by a rebuild test",
			Category: "Tools", Brand: "Acme", Amount: 100 + int64(i), Stock: int64(i % 7),
			Attributes: map[string]string{"color": []string{"red", "green", "blue"}[i%3], "size": "m"},
			Deleted:    i%10 == 3,
		}
		out[i] = p.Snapshot(t)
	}
	return out
}

func TestTargetCreateIndexAndRestoreSettings(t *testing.T) {
	e := rmSetup(t, func(c *elasticsearch.Config) {
		c.Replicas = nil // auto-expand: what RestoreSettings must put back
		c.RefreshInterval = 2 * time.Second
	})
	tg := e.target()
	ctx := e.ctx()
	if tg.MappingVersion() != elasticsearch.MappingVersion {
		t.Fatalf("MappingVersion = %d, want %d", tg.MappingVersion(), elasticsearch.MappingVersion)
	}
	name, err := tg.CreateIndex(ctx)
	if err != nil {
		t.Fatalf("CreateIndex: %v", err)
	}
	re := regexp.MustCompile(fmt.Sprintf(`^%s_v%d_[0-9]{8}_[0-9]{6}$`, regexp.QuoteMeta(e.cfg.Alias), elasticsearch.MappingVersion))
	if !re.MatchString(name) {
		t.Fatalf("index %q is not %s_v%d_YYYYMMDD_HHMMSS", name, e.cfg.Alias, elasticsearch.MappingVersion)
	}
	if got := e.aliasIndices(); len(got) != 0 {
		t.Fatalf("CreateIndex touched the alias: %v", got)
	}
	s := e.indexSettings(name)
	if s["refresh_interval"] != "-1" || s["number_of_replicas"] != "0" || s["auto_expand_replicas"] != "false" {
		t.Errorf("bulk-load settings: refresh_interval %v, replicas %v, auto_expand %v; want -1, 0, false",
			s["refresh_interval"], s["number_of_replicas"], s["auto_expand_replicas"])
	}
	if err := tg.RestoreSettings(ctx, name); err != nil {
		t.Fatalf("RestoreSettings: %v", err)
	}
	s = e.indexSettings(name)
	if s["refresh_interval"] != "2s" || s["auto_expand_replicas"] != elasticsearch.DefaultAutoExpandReplicas {
		t.Errorf("restored settings: refresh_interval %v, auto_expand %v; want 2s, %s",
			s["refresh_interval"], s["auto_expand_replicas"], elasticsearch.DefaultAutoExpandReplicas)
	}
}

func TestTargetWriteAndDocumentsPaging(t *testing.T) {
	e := rmSetup(t, nil)
	tg := e.target()
	ctx := e.ctx()
	index, err := tg.CreateIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n, batch = 5000, 500
	docs := rmSnapshots(t, n)
	// Concurrent writers share the target's bulk indexer.
	var wg sync.WaitGroup
	errs := make(chan error, n/batch)
	for from := 0; from < n; from += batch {
		wg.Go(func() {
			if err := tg.Write(ctx, index, docs[from:from+batch]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Write: %v", err)
	}
	if err := tg.Refresh(ctx, index); err != nil {
		t.Fatalf("Refresh: %v", err)
	}

	want := make(map[string]rebuild.DocVersion, n)
	for _, s := range docs {
		want[string(s.ID)] = rebuild.DocVersion{ID: string(s.ID), Version: s.Version, Deleted: s.Deleted()}
	}
	var got []rebuild.DocVersion
	after, pages := "", 0
	for {
		page, err := tg.Documents(ctx, index, after, 1000)
		if err != nil {
			t.Fatalf("Documents after %q: %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 1000 {
			t.Fatalf("page of %d documents, limit 1000", len(page))
		}
		pages++
		got = append(got, page...)
		after = page[len(page)-1].ID
	}
	if pages != n/1000 {
		t.Errorf("%d pages, want %d", pages, n/1000)
	}
	if len(got) != n {
		t.Fatalf("Documents returned %d documents, want %d", len(got), n)
	}
	tombstones := 0
	for i, d := range got {
		if i > 0 && got[i-1].ID >= d.ID {
			t.Fatalf("documents out of order or repeated at %d: %q then %q", i, got[i-1].ID, d.ID)
		}
		if w, ok := want[d.ID]; !ok || w != d {
			t.Fatalf("document %+v, want %+v (known %v)", d, w, ok)
		}
		if d.Deleted {
			tombstones++
		}
	}
	if tombstones != n/10 {
		t.Errorf("%d tombstones, want %d", tombstones, n/10)
	}

	// The body is the live projection's document.
	var stored rmStoredDoc
	e.rawJSON(http.MethodGet, fmt.Sprintf("/%s/_doc/%s", index, docs[3].ID), nil, &stored)
	if !stored.Found || stored.Version != docs[3].Version || stored.Source["deleted"] != true ||
		stored.Source["name"] != "Rebuild item 3" || stored.Source["version"] != float64(docs[3].Version) ||
		stored.Source["deleted_at"] == nil {
		t.Errorf("stored tombstone = %+v", stored)
	}
	if price, _ := stored.Source["price"].(map[string]any); price["amount"] != float64(103) || price["currency"] != "EUR" {
		t.Errorf("stored price = %v", stored.Source["price"])
	}

	// Paging edges: an id past the last gives nothing, limits are validated and capped.
	if page, err := tg.Documents(ctx, index, got[len(got)-1].ID, 10); err != nil || len(page) != 0 {
		t.Errorf("Documents after the last id = %d, %v; want none", len(page), err)
	}
	if _, err := tg.Documents(ctx, index, "", 0); err == nil {
		t.Error("Documents with limit 0 succeeded")
	}
	if page, err := tg.Documents(ctx, index, "", 1_000_000); err != nil || len(page) != n {
		t.Errorf("Documents with a huge limit = %d, %v; want all %d (capped at %d)", len(page), err, n, elasticsearch.MaxDocumentsPage)
	}
	if _, err := tg.Documents(ctx, "someone_elses_index", "", 10); !errors.Is(err, elasticsearch.ErrForeignIndex) {
		t.Errorf("Documents of a foreign index = %v, want ErrForeignIndex", err)
	}
	live, dead, err := e.ix.Count(ctx, index)
	if err != nil || live != n-n/10 || dead != n/10 {
		t.Errorf("Count = %d live, %d tombstones, %v", live, dead, err)
	}
}

func TestTargetWriteOlderVersionKeepsNewer(t *testing.T) {
	e := rmSetup(t, nil)
	tg := e.target()
	ctx := e.ctx()
	index, err := tg.CreateIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := readmodeltest.NewID()
	v := func(n int64, name string) product.Snapshot {
		return readmodeltest.Product{ID: id, Version: n, Name: name, Amount: 100 * n}.Snapshot(t)
	}
	if err := tg.Write(ctx, index, []product.Snapshot{v(5, "Newer")}); err != nil {
		t.Fatalf("Write v5: %v", err)
	}
	// Older versions lose without an error, also in the same batch as the newer one.
	if err := tg.Write(ctx, index, []product.Snapshot{v(3, "Older"), v(5, "Newer"), v(1, "Oldest")}); err != nil {
		t.Fatalf("Write older versions: %v", err)
	}
	if err := tg.Refresh(ctx, index); err != nil {
		t.Fatal(err)
	}
	docs, err := tg.Documents(ctx, index, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0] != (rebuild.DocVersion{ID: string(id), Version: 5}) {
		t.Fatalf("Documents = %+v, want %s v5", docs, id)
	}
	var stored rmStoredDoc
	e.rawJSON(http.MethodGet, fmt.Sprintf("/%s/_doc/%s", index, id), nil, &stored)
	if stored.Source["name"] != "Newer" {
		t.Fatalf("stored name %v, want the newer version's", stored.Source["name"])
	}

	// Writes go to the named index only, never through the alias, and never create an index.
	if err := tg.Write(ctx, e.cfg.Alias, []product.Snapshot{v(6, "Alias")}); !errors.Is(err, elasticsearch.ErrForeignIndex) {
		t.Errorf("Write to the alias = %v, want ErrForeignIndex", err)
	}
	missing := readmodel.IndexName(e.cfg.Alias, elasticsearch.MappingVersion, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := tg.Write(ctx, missing, []product.Snapshot{v(6, "Missing")}); !errors.Is(err, elasticsearch.ErrIndexNotFound) {
		t.Errorf("Write to a missing index = %v, want ErrIndexNotFound", err)
	}
	if status := e.rawJSON(http.MethodHead, "/"+missing, nil, nil); status != http.StatusNotFound {
		t.Errorf("Write created %s (HEAD %d)", missing, status)
	}
	if err := tg.Write(ctx, index, []product.Snapshot{{ID: id}}); err == nil {
		t.Error("Write of a snapshot without version succeeded")
	}
}

func TestTargetWriteFailsOnRejectedItems(t *testing.T) {
	e := rmSetup(t, nil)
	tg := e.target()
	ctx := e.ctx()
	index, err := tg.CreateIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A read-only index refuses every item for good (403 cluster_block_exception): the
	// rebuild must fail, not lose the documents silently.
	e.rawJSON(http.MethodPut, "/"+index+"/_settings", map[string]any{"index.blocks.write": true}, nil)
	t.Cleanup(func() {
		e.rawJSON(http.MethodPut, "/"+index+"/_settings", map[string]any{"index.blocks.write": nil}, nil)
	})
	err = tg.Write(ctx, index, rmSnapshots(t, 20))
	if err == nil {
		t.Fatal("Write to a write-blocked index succeeded")
	}
	t.Logf("Write to a write-blocked index: %v", err)
}

func TestTargetAliasLifecycle(t *testing.T) {
	e := rmSetup(t, nil)
	tg := e.target()
	ctx := e.ctx()
	if _, err := tg.AliasTarget(ctx); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Fatalf("AliasTarget without alias = %v, want ErrNoAlias", err)
	}
	create := func() string {
		t.Helper()
		name, err := tg.CreateIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	expectAlias := func(want string) {
		t.Helper()
		all, writers := e.writeIndices()
		if len(all) != 1 || all[0] != want || len(writers) != 1 || writers[0] != want {
			t.Fatalf("alias on %v (write index %v), want only %s as the write index", all, writers, want)
		}
		if got, err := tg.AliasTarget(ctx); err != nil || got != want {
			t.Fatalf("AliasTarget = %q, %v; want %s", got, err, want)
		}
	}

	// From nowhere: the alias is created on the new index, as its write index.
	a := create()
	if err := tg.Write(ctx, a, rmSnapshots(t, 3)); err != nil {
		t.Fatal(err)
	}
	if err := tg.SwitchAlias(ctx, "", a); err != nil {
		t.Fatalf("SwitchAlias from nowhere: %v", err)
	}
	expectAlias(a)

	// From nowhere while the alias exists: moved, nothing changes.
	b := create()
	if err := tg.SwitchAlias(ctx, "", b); !errors.Is(err, readmodel.ErrAliasMoved) {
		t.Fatalf("SwitchAlias from nowhere while the alias exists = %v, want ErrAliasMoved", err)
	}
	expectAlias(a)

	// Readers see exactly one index during many switches.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var observations atomic.Int64
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				all, _ := e.writeIndices()
				if len(all) != 1 || (all[0] != a && all[0] != b) {
					t.Errorf("alias during switches on %v", all)
				}
				observations.Add(1)
			}
		})
	}
	from, to := a, b
	for range 10 {
		if err := tg.SwitchAlias(ctx, from, to); err != nil {
			t.Fatalf("SwitchAlias %s -> %s: %v", from, to, err)
		}
		from, to = to, from
	}
	close(stop)
	readers.Wait()
	t.Logf("%d alias observations during 10 switches", observations.Load())
	expectAlias(a)
	if err := tg.SwitchAlias(ctx, a, b); err != nil {
		t.Fatalf("SwitchAlias %s -> %s: %v", a, b, err)
	}
	expectAlias(b)

	// A stale from (the alias moved to b meanwhile): ErrAliasMoved, the alias stays on b.
	c := create()
	if err := tg.SwitchAlias(ctx, a, c); !errors.Is(err, readmodel.ErrAliasMoved) {
		t.Fatalf("SwitchAlias from a stale index = %v, want ErrAliasMoved", err)
	}
	expectAlias(b)
	// Repeating a switch that already happened (its answer was lost) succeeds.
	if err := tg.SwitchAlias(ctx, a, b); err != nil {
		t.Fatalf("repeated SwitchAlias %s -> %s: %v", a, b, err)
	}
	expectAlias(b)
	// A missing to changes nothing and is not a moved alias.
	missing := readmodel.IndexName(e.cfg.Alias, elasticsearch.MappingVersion, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := tg.SwitchAlias(ctx, b, missing); err == nil || errors.Is(err, readmodel.ErrAliasMoved) {
		t.Fatalf("SwitchAlias to a missing index = %v, want a non-moved error", err)
	}
	expectAlias(b)
	// An index with the right name but not created by CreateIndex (auto-created by a stray
	// write, with dynamic mapping) never becomes live.
	stray := readmodel.IndexName(e.cfg.Alias, elasticsearch.MappingVersion, time.Date(2002, 2, 2, 0, 0, 0, 0, time.UTC))
	// (The test cluster may forbid auto-creation, so the index is created the same way by hand.)
	if status := e.rawJSON(http.MethodPut, "/"+stray, map[string]any{"settings": map[string]any{"number_of_replicas": 0}}, nil); status != http.StatusOK {
		t.Fatalf("create %s: status %d", stray, status)
	}
	e.rawJSON(http.MethodPut, "/"+stray+"/_doc/x", map[string]any{"id": "x"}, nil)
	if err := tg.SwitchAlias(ctx, b, stray); err == nil {
		t.Fatalf("SwitchAlias to an auto-created index succeeded")
	}
	expectAlias(b)

	if err := tg.Refresh(ctx, a); err != nil {
		t.Fatal(err)
	}
	// ListIndices: newest first, the aliased one marked, counts per index.
	list, err := tg.ListIndices(ctx)
	if err != nil {
		t.Fatalf("ListIndices: %v", err)
	}
	var names []string
	for _, ix := range list {
		names = append(names, ix.Name)
		if ix.Aliased != (ix.Name == b) {
			t.Errorf("%s: Aliased %v", ix.Name, ix.Aliased)
		}
		if ix.MappingVersion != elasticsearch.MappingVersion || ix.Created.IsZero() {
			t.Errorf("%s: mapping version %d, created %v", ix.Name, ix.MappingVersion, ix.Created)
		}
	}
	if want := []string{c, b, a, stray}; !slices.Equal(names, want) {
		t.Errorf("ListIndices = %v, want newest first %v", names, want)
	}
	if list[2].Name == a && list[2].Live+list[2].Tombstones != 3 {
		t.Errorf("%s holds %d live and %d tombstones, want 3 documents", a, list[2].Live, list[2].Tombstones)
	}

	// The aliased index cannot be deleted, the others can.
	if err := tg.DeleteIndex(ctx, b); !errors.Is(err, elasticsearch.ErrIndexInUse) {
		t.Fatalf("DeleteIndex of the aliased index = %v, want ErrIndexInUse", err)
	}
	if err := tg.DeleteIndex(ctx, c); err != nil {
		t.Fatalf("DeleteIndex %s: %v", c, err)
	}
	// The live index deleted by accident: the alias goes with it, and a switch from it
	// reports the moved alias.
	e.rawJSON(http.MethodDelete, "/"+b, nil, nil)
	if _, err := tg.AliasTarget(ctx); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Fatalf("AliasTarget after the live index was deleted = %v, want ErrNoAlias", err)
	}
	if err := tg.SwitchAlias(ctx, b, a); !errors.Is(err, readmodel.ErrAliasMoved) {
		t.Fatalf("SwitchAlias from a deleted index = %v, want ErrAliasMoved", err)
	}
	if err := tg.SwitchAlias(ctx, "", a); err != nil {
		t.Fatalf("SwitchAlias from nowhere after the deletion: %v", err)
	}
	expectAlias(a)
}

func TestTargetWriteAfterClose(t *testing.T) {
	e := rmSetup(t, nil)
	tg := e.target()
	ctx := e.ctx()
	index, err := tg.CreateIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tg.Write(ctx, index, rmSnapshots(t, 1)); !errors.Is(err, elasticsearch.ErrTargetClosed) {
		t.Fatalf("Write after Close = %v, want ErrTargetClosed", err)
	}
	if err := tg.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestTargetWriteThroughput measures Target.Write against a raw esutil.BulkIndexer load of the
// same documents with the same bulk settings, in the same run, each into a fresh bulk-load
// index. The cluster is shared (merges, other tests), so three rounds in rotating order are
// measured and the medians compared. It logs the figures and asserts nothing about them.
func TestTargetWriteThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput measurement")
	}
	e := rmSetup(t, nil)
	tg := e.target()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n, batch, rounds = 50_000, 1000, 3
	docs := rmSnapshots(t, n)

	fresh := func() string {
		t.Helper()
		index, err := tg.CreateIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return index
	}
	// Warm-up, and the bodies the raw load sends: exactly what Target.Write stored.
	warm := fresh()
	for from := 0; from < n; from += batch {
		if err := tg.Write(ctx, warm, docs[from:from+batch]); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	bodies := e.storedSources(ctx, warm, n)

	// sequential is the rebuild's way: one batch after the other.
	sequential := func(index string) {
		for from := 0; from < n; from += batch {
			if err := tg.Write(ctx, index, docs[from:from+batch]); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
	}
	concurrent := func(index string) {
		var wg sync.WaitGroup
		var next, failed atomic.Int64
		for range 4 {
			wg.Go(func() {
				for {
					from := int(next.Add(batch)) - batch
					if from >= n {
						return
					}
					if err := tg.Write(ctx, index, docs[from:from+batch]); err != nil {
						failed.Add(1)
						t.Errorf("Write: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
	}
	// raw adds everything to a plain bulk indexer and closes it.
	raw := func(index string) {
		bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
			Client:        e.client,
			NumWorkers:    elasticsearch.RebuildBulkWorkers,
			FlushBytes:    elasticsearch.RebuildBulkFlushBytes,
			FlushInterval: elasticsearch.RebuildBulkFlushInterval,
		})
		if err != nil {
			t.Fatal(err)
		}
		var failed atomic.Int64
		for i, s := range docs {
			version := s.Version
			err := bi.Add(ctx, esutil.BulkIndexerItem{
				Index: index, Action: "index", DocumentID: string(s.ID),
				Version: &version, VersionType: "external_gte",
				Body: bytes.NewReader(bodies[string(s.ID)]),
				OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) {
					failed.Add(1)
				},
			})
			if err != nil {
				t.Fatalf("raw Add %d: %v", i, err)
			}
		}
		if err := bi.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if failed.Load() > 0 {
			t.Fatalf("raw load: %d items failed", failed.Load())
		}
	}

	type method struct {
		name  string
		load  func(index string)
		rates []float64
	}
	methods := []*method{
		{name: fmt.Sprintf("Target.Write sequential (batches of %d)", batch), load: sequential},
		{name: "Target.Write 4 concurrent writers", load: concurrent},
		{name: "raw esutil.BulkIndexer", load: raw},
	}
	for round := range rounds {
		for k := range methods {
			m := methods[(round+k)%len(methods)]
			index := fresh()
			start := time.Now()
			m.load(index)
			elapsed := time.Since(start)
			m.rates = append(m.rates, float64(n)/elapsed.Seconds())
			if err := tg.Refresh(ctx, index); err != nil {
				t.Fatal(err)
			}
			if live, dead, err := e.ix.Count(ctx, index); err != nil || live+dead != n {
				t.Fatalf("%s: %s holds %d+%d documents, %v; want %d", m.name, index, live, dead, err, n)
			}
			if err := tg.DeleteIndex(ctx, index); err != nil {
				t.Fatal(err)
			}
		}
	}
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	rawMedian := median(methods[2].rates)
	for _, m := range methods {
		rates := make([]string, len(m.rates))
		for i, r := range m.rates {
			rates[i] = fmt.Sprintf("%.0f", r)
		}
		t.Logf("%d docs, %s: median %.0f docs/s (%.0f%% of raw), rounds %v", n, m.name, median(m.rates), 100*median(m.rates)/rawMedian, rates)
	}
}

// storedSources reads back the _source of every document of index, by id: the exact bodies
// Target.Write sent.
func (e *rmEnv) storedSources(ctx context.Context, index string, n int) map[string][]byte {
	e.t.Helper()
	if res, err := (esapi.IndicesRefreshRequest{Index: []string{index}}).Do(ctx, e.client); err != nil {
		e.t.Fatal(err)
	} else {
		_ = res.Body.Close()
	}
	out := make(map[string][]byte, n)
	var after []any
	for {
		body := map[string]any{"size": 10_000, "sort": []any{map[string]any{"id": "asc"}}, "track_total_hits": false}
		if after != nil {
			body["search_after"] = after
		}
		var res struct {
			Hits struct {
				Hits []struct {
					ID     string          `json:"_id"`
					Source json.RawMessage `json:"_source"`
					Sort   []any           `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		e.rawJSON(http.MethodPost, "/"+index+"/_search", body, &res)
		if len(res.Hits.Hits) == 0 {
			break
		}
		for _, h := range res.Hits.Hits {
			out[h.ID] = h.Source
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
	if len(out) != n {
		e.t.Fatalf("read back %d sources from %s, want %d", len(out), index, n)
	}
	return out
}
