package elasticsearch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

func TestIndexNameFormat(t *testing.T) {
	at := time.Date(2025, 3, 9, 7, 5, 4, 999_000_000, time.FixedZone("CET", 3600))
	if got, want := readmodel.IndexName("product_search", 1, at), "product_search_v1_20250309_060504"; got != want {
		t.Fatalf("IndexName = %q, want %q (UTC, to the second)", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]elasticsearch.Config{
		"compat":   {Compat: "solr"},
		"alias":    {Alias: "Product Search"},
		"url":      {URL: "127.0.0.1:9200"},
		"shards":   {Shards: -1},
		"replicas": {Replicas: rmPtr(-1)},
		"workers":  {BulkWorkers: -3},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, cfg)
		}
	}
	if err := (elasticsearch.Config{}).Validate(); err != nil {
		t.Errorf("zero config after defaults: %v", err)
	}
}

func rmPtr[T any](v T) *T { return &v }

func TestEnsureAliasCreatesVersionedIndexAndIsIdempotent(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	before := time.Now().UTC().Add(-time.Second)
	index, created, err := e.ix.EnsureAlias(ctx)
	if err != nil || !created {
		t.Fatalf("EnsureAlias = %q, %v, %v; want a new index", index, created, err)
	}
	re := regexp.MustCompile(fmt.Sprintf(`^%s_v%d_([0-9]{8}_[0-9]{6})$`, regexp.QuoteMeta(e.cfg.Alias), elasticsearch.MappingVersion))
	m := re.FindStringSubmatch(index)
	if m == nil {
		t.Fatalf("index %q is not %s_v%d_YYYYMMDD_HHMMSS", index, e.cfg.Alias, elasticsearch.MappingVersion)
	}
	at, _ := time.Parse("20060102_150405", m[1])
	if at.Before(before.Truncate(time.Second)) || at.After(time.Now().UTC().Add(2*time.Second)) {
		t.Errorf("index time %s is not now (UTC)", at)
	}
	if v, ok := e.ix.MappingVersionOf(index); !ok || v != elasticsearch.MappingVersion {
		t.Errorf("MappingVersionOf(%s) = %d, %v", index, v, ok)
	}
	again, created, err := e.ix.EnsureAlias(ctx)
	if err != nil || created || again != index {
		t.Fatalf("second EnsureAlias = %q, %v, %v; want %q, false", again, created, err, index)
	}
	if got := e.aliasIndices(); len(got) != 1 || got[0] != index {
		t.Fatalf("alias points at %v, want [%s]", got, index)
	}
	// The mapping is the explicit strict one, and the refresh interval is stated.
	var mapping map[string]struct {
		Mappings struct {
			Dynamic    any            `json:"dynamic"`
			Properties map[string]any `json:"properties"`
		} `json:"mappings"`
	}
	e.rawJSON(http.MethodGet, "/"+index+"/_mapping", nil, &mapping)
	if d := mapping[index].Mappings.Dynamic; d != "strict" {
		t.Errorf("dynamic = %v, want strict", d)
	}
	for _, f := range []string{"id", "name", "price", "attributes", "deleted", "version", "created_at"} {
		if _, ok := mapping[index].Mappings.Properties[f]; !ok {
			t.Errorf("mapping lacks %s", f)
		}
	}
	var settings map[string]struct {
		Settings struct {
			Index map[string]any `json:"index"`
		} `json:"settings"`
	}
	e.rawJSON(http.MethodGet, "/"+index+"/_settings", nil, &settings)
	if ri := settings[index].Settings.Index["refresh_interval"]; ri != "1s" {
		t.Errorf("refresh_interval = %v, want 1s", ri)
	}
}

func TestEnsureAliasIsRaceSafe(t *testing.T) {
	e := rmSetup(t, nil)
	const n = 8
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		results  [n]string
		errs     [n]error
		creators atomic.Int32
	)
	for i := range n {
		// Separate clients, as separate processes would have.
		client, err := elasticsearch.NewClient(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := elasticsearch.NewIndices(client, e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			index, created, err := ix.EnsureAlias(context.Background())
			results[i], errs[i] = index, err
			if created {
				creators.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("EnsureAlias %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Fatalf("EnsureAlias returned different indices: %v", results)
		}
	}
	if c := creators.Load(); c != 1 {
		t.Errorf("%d callers report creating the index, want 1", c)
	}
	if got := e.aliasIndices(); len(got) != 1 || got[0] != results[0] {
		t.Fatalf("alias points at %v, want [%s]", got, results[0])
	}
	list, err := e.ix.ListIndices(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("losers left indices behind: %+v", list)
	}
}

func TestCreateIndexInTheSameSecondUsesTheNextSecond(t *testing.T) {
	e := rmSetup(t, nil)
	at := time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)
	var names []string
	for range 3 {
		name, err := e.ix.CreateIndex(e.ctx(), elasticsearch.CreateIndexOptions{Now: at})
		if err != nil {
			t.Fatalf("CreateIndex: %v", err)
		}
		names = append(names, name)
	}
	a := e.cfg.Alias
	v := fmt.Sprintf("_v%d_", elasticsearch.MappingVersion)
	want := []string{a + v + "20240229_235959", a + v + "20240301_000000", a + v + "20240301_000001"}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names = %v, want %v", names, want)
		}
	}
	if got := e.aliasIndices(); len(got) != 0 {
		t.Errorf("CreateIndex touched the alias: %v", got)
	}
}

func TestBulkLoadSettingsAndRestore(t *testing.T) {
	e := rmSetup(t, nil)
	name, err := e.ix.CreateIndex(e.ctx(), elasticsearch.CreateIndexOptions{BulkLoad: true})
	if err != nil {
		t.Fatal(err)
	}
	settings := func() map[string]any {
		var s map[string]struct {
			Settings struct {
				Index map[string]any `json:"index"`
			} `json:"settings"`
		}
		e.rawJSON(http.MethodGet, "/"+name+"/_settings", nil, &s)
		return s[name].Settings.Index
	}
	if s := settings(); s["refresh_interval"] != "-1" || s["number_of_replicas"] != "0" {
		t.Errorf("bulk-load settings: refresh_interval %v, replicas %v; want -1, 0", s["refresh_interval"], s["number_of_replicas"])
	}
	if err := e.ix.RestoreSettings(e.ctx(), name); err != nil {
		t.Fatal(err)
	}
	if s := settings(); s["refresh_interval"] != "1s" || s["number_of_replicas"] != "0" {
		t.Errorf("restored settings: refresh_interval %v, replicas %v; want 1s, 0", s["refresh_interval"], s["number_of_replicas"])
	}
}

func TestSwitchAliasIsAtomic(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	a := e.ensure()
	p := e.projection()
	for i := range 5 {
		if err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID(), Name: "Switch item", Amount: int64(100 + i)}.Snapshot(t)); err != nil {
			t.Fatal(err)
		}
	}
	e.refresh()
	b, err := e.ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Readers polling the alias during many switches must always see exactly one index and a
	// working search.
	s := e.search()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var observations, failures atomic.Int64
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				target, err := e.ix.AliasTarget(context.Background())
				if err != nil || (target != a && target != b) {
					failures.Add(1)
					t.Errorf("AliasTarget during switch = %q, %v", target, err)
				}
				if _, err := s.Search(context.Background(), query.SearchProducts{Text: "switch"}); err != nil {
					failures.Add(1)
					t.Errorf("Search during switch: %v", err)
				}
				observations.Add(1)
			}
		}()
	}
	from, to := a, b
	for range 20 {
		if err := e.ix.SwitchAlias(ctx, from, to); err != nil {
			t.Fatalf("SwitchAlias %s -> %s: %v", from, to, err)
		}
		from, to = to, from
	}
	close(stop)
	readers.Wait()
	t.Logf("%d observations during 20 switches, %d failures", observations.Load(), failures.Load())

	// 20 switches: back at a. A switch from an index that does not hold the alias changes nothing.
	if got := e.aliasIndices(); len(got) != 1 || got[0] != a {
		t.Fatalf("alias at %v, want [%s]", got, a)
	}
	if err := e.ix.SwitchAlias(ctx, b, a); !errors.Is(err, elasticsearch.ErrAliasConflict) {
		t.Fatalf("SwitchAlias from the wrong index = %v, want ErrAliasConflict", err)
	}
	if err := e.ix.SwitchAlias(ctx, "", b); !errors.Is(err, elasticsearch.ErrAliasConflict) {
		t.Fatalf("SwitchAlias from nowhere while the alias exists = %v, want ErrAliasConflict", err)
	}
	if got := e.aliasIndices(); len(got) != 1 || got[0] != a {
		t.Fatalf("failed switches moved the alias to %v", got)
	}
	if err := e.ix.SwitchAlias(ctx, a, "some_other_index"); !errors.Is(err, elasticsearch.ErrForeignIndex) {
		t.Fatalf("SwitchAlias to a foreign index = %v, want ErrForeignIndex", err)
	}
}

func TestDeleteIndexRefusesTheAliasedIndex(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	a := e.ensure()
	if err := e.ix.DeleteIndex(ctx, a); !errors.Is(err, elasticsearch.ErrIndexInUse) {
		t.Fatalf("DeleteIndex(aliased) = %v, want ErrIndexInUse", err)
	}
	if err := e.ix.DeleteIndex(ctx, e.cfg.Alias); !errors.Is(err, elasticsearch.ErrForeignIndex) {
		t.Fatalf("DeleteIndex(alias name) = %v, want ErrForeignIndex", err)
	}
	b, err := e.ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ix.SwitchAlias(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if err := e.ix.DeleteIndex(ctx, a); err != nil {
		t.Fatalf("DeleteIndex(old) = %v", err)
	}
	if err := e.ix.DeleteIndex(ctx, a); !errors.Is(err, elasticsearch.ErrIndexNotFound) {
		t.Fatalf("DeleteIndex(deleted) = %v, want ErrIndexNotFound", err)
	}
	list, err := e.ix.ListIndices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != b || !list[0].Aliased {
		t.Fatalf("ListIndices = %+v, want only %s (aliased)", list, b)
	}
}

func TestListIndicesAndCount(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	old, err := e.ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cur := e.ensure()
	p := e.projection()
	for i := range 7 {
		if err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID(), Amount: 100, Attributes: map[string]string{"a": "b", "c": "d"},
			Version: 2, Deleted: i < 3}.Snapshot(t)); err != nil {
			t.Fatal(err)
		}
	}
	e.refresh()
	live, tomb, err := e.ix.Count(ctx, "")
	if err != nil || live != 4 || tomb != 3 {
		t.Fatalf("Count(alias) = %d, %d, %v; want 4 live, 3 tombstones", live, tomb, err)
	}
	if live, tomb, err := e.ix.Count(ctx, old); err != nil || live != 0 || tomb != 0 {
		t.Fatalf("Count(old) = %d, %d, %v; want 0, 0", live, tomb, err)
	}
	list, err := e.ix.ListIndices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != old || list[1].Name != cur {
		t.Fatalf("ListIndices = %+v, want [%s %s] oldest first", list, old, cur)
	}
	if l := list[1]; !l.Aliased || l.MappingVersion != elasticsearch.MappingVersion || l.Docs != 7 || l.Live != 4 || l.Tombstones != 3 || l.Created.IsZero() {
		t.Errorf("current index info = %+v", l)
	}
	if l := list[0]; l.Aliased || l.Docs != 0 {
		t.Errorf("old index info = %+v", l)
	}
	if _, err := e.ix.AliasTarget(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAliasTargetWithoutAlias(t *testing.T) {
	e := rmSetup(t, nil)
	if _, err := e.ix.AliasTarget(e.ctx()); !errors.Is(err, elasticsearch.ErrAliasNotFound) {
		t.Fatalf("AliasTarget = %v, want ErrAliasNotFound", err)
	}
	list, err := e.ix.ListIndices(e.ctx())
	if err != nil || len(list) != 0 {
		t.Fatalf("ListIndices = %v, %v; want none", list, err)
	}
}
