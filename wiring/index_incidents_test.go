package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/service"
)

// TestRollbackAndPrune: the CLI's rollback returns the alias to the previous index; prune
// --keep 0 deletes the others but never the active one; both are refused while a rebuild runs.
func TestRollbackAndPrune(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	createProducts(t, rp.component, "RB", "rollback", 5)
	rp.waitSearch(t, "category=rollback&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 5 })
	first := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	second := runRebuild(t, client, srcDatabase).GetToIndex()
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != second {
		t.Fatalf("alias on %s after the rebuild, want %s", got, second)
	}

	// Refused while a rebuild runs (it could switch the alias concurrently).
	running := startRebuild(t, client, srcDatabase)
	for name, call := range map[string]func() error{
		"prune": func() error {
			_, err := client.PruneIndices(context.Background(), &projectionv1.PruneIndicesRequest{Keep: 0})
			return err
		},
		"rollback": func() error {
			_, err := client.RollbackAlias(context.Background(), &projectionv1.RollbackAliasRequest{})
			return err
		},
	} {
		if code, reason, _ := errorInfo(call()); code != codes.FailedPrecondition || reason != "REBUILD_ALREADY_RUNNING" {
			t.Errorf("%s during a rebuild: %s / %q, want FailedPrecondition / REBUILD_ALREADY_RUNNING", name, code, reason)
		}
	}
	third := watchRebuild(t, client, running.GetId(), 50*time.Second, nil)
	if third.GetPhase() != phaseOK {
		t.Fatalf("rebuild ended %s: %s", third.GetPhase(), third.GetError())
	}
	for _, ix := range []string{first, second, third.GetToIndex()} {
		if !indexExists(t, rp.esURL, ix) {
			t.Fatalf("index %s vanished", ix)
		}
	}

	out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "index", "rollback")
	if code != 0 || !strings.Contains(out, third.GetToIndex()+" -> "+second) {
		t.Fatalf("catalog index rollback: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != second {
		t.Fatalf("alias on %s after rollback, want %s", got, second)
	}
	rp.waitSearch(t, "category=rollback&size=1", 5*time.Second, "search after rollback", func(p searchPage) bool { return p.Total == 5 })

	out, errOut, code = runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "index", "prune", "--keep", "0")
	if code != 0 {
		t.Fatalf("catalog index prune --keep 0: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if strings.Contains(out, second) {
		t.Errorf("prune claims to have deleted the active index: %s", out)
	}
	if !indexExists(t, rp.esURL, second) {
		t.Fatalf("prune deleted the active index %s", second)
	}
	for _, ix := range []string{first, third.GetToIndex()} {
		if indexExists(t, rp.esURL, ix) {
			t.Errorf("prune --keep 0 left %s", ix)
		}
	}
	list, err := client.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ixs := list.GetIndices(); len(ixs) != 1 || ixs[0].GetName() != second || !ixs[0].GetAliased() || ixs[0].GetLiveDocs() != 5 {
		t.Fatalf("indices after prune: %v, want only the aliased %s with 5 live documents", ixs, second)
	}
	rp.waitSearch(t, "category=rollback&size=1", 5*time.Second, "search after prune", func(p searchPage) bool { return p.Total == 5 })

	// Nothing older to roll back to, nothing to prune; the active index stays.
	_, err = client.RollbackAlias(context.Background(), &projectionv1.RollbackAliasRequest{})
	if code, reason, _ := errorInfo(err); code != codes.FailedPrecondition || reason != "NO_PREVIOUS_INDEX" {
		t.Errorf("rollback with one index: %s / %q, want FailedPrecondition / NO_PREVIOUS_INDEX (%v)", code, reason, err)
	}
	pr, err := client.PruneIndices(context.Background(), &projectionv1.PruneIndicesRequest{Keep: 0})
	if err != nil || len(pr.GetDeleted()) != 0 || !indexExists(t, rp.esURL, second) {
		t.Errorf("prune with only the active index: deleted %v, err %v, active exists %v", pr.GetDeleted(), err, indexExists(t, rp.esURL, second))
	}
}

// TestIncidentLiveIndexDeleted: the runbook's "live index deleted by accident". Search fails,
// a write during the outage waits in the projector, and `catalog rebuild --wait` restores
// search on a new complete index behind a recreated alias.
func TestIncidentLiveIndexDeleted(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "INC", "incident", 20)
	rp.waitSearch(t, "category=incident&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 20 })
	live := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	if code, raw := esRequest(t, "DELETE", rp.esURL+"/"+live, ""); code != http.StatusOK {
		t.Fatalf("DELETE %s: %d %s", live, code, raw)
	}
	code, page := rp.search(t, "category=incident&size=1")
	if code == 200 && page.Total == 20 {
		t.Fatalf("search still serves after the live index was deleted")
	}
	t.Logf("search with the live index deleted: %d, total %d", code, page.Total)
	product201(t, rp.component, "INC-outage", "Written during the outage", "incident", 1)
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != "" {
		t.Fatalf("alias points at %s after the delete", got)
	}

	out, errOut, exit := runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "rebuild", "--wait")
	if exit != 0 {
		t.Fatalf("catalog rebuild --wait: exit %d\nstdout: %s\nstderr: %s", exit, out, errOut)
	}
	now := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if now == "" || now == live || !strings.Contains(now, fmt.Sprintf("_v%d_", elasticsearch.MappingVersion)) || !strings.Contains(out, now) {
		t.Fatalf("alias on %q after the rebuild (was %s); CLI said %s", now, live, out)
	}
	// Searchable when --wait returned, the product written during the outage included.
	if code, page := rp.search(t, "category=incident&size=1"); code != 200 || page.Total != 21 {
		t.Errorf("right after `catalog rebuild --wait`: %d total %d, want 200 with 21", code, page.Total)
	}
	rp.waitSearch(t, "category=incident&size=1", 10*time.Second, "search restored", func(p searchPage) bool { return p.Total == 21 })
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
}

// withOldMappingIndex puts the alias on {alias}_v0_20250101_000000 before the service starts,
// an index of an older mapping version (the current mapping with _meta.mapping_version 0).
func withOldMappingIndex(name *string) readPathOption {
	return func(t *testing.T, c *service.Config) {
		ecfg := elasticsearch.Config{URL: c.ElasticsearchURL, Compat: c.ElasticsearchCompat, Alias: c.SearchAlias}
		ix := searchIndices(t, ecfg)
		tmp, err := ix.CreateIndex(context.Background(), elasticsearch.CreateIndexOptions{Now: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		code, raw := esRequest(t, "GET", c.ElasticsearchURL+"/"+tmp+"/_mapping", "")
		if code != 200 {
			t.Fatalf("mapping of %s: %d %s", tmp, code, raw)
		}
		esRequest(t, "DELETE", c.ElasticsearchURL+"/"+tmp, "")
		var res map[string]struct {
			Mappings map[string]any `json:"mappings"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		mapping := res[tmp].Mappings
		mapping["_meta"] = map[string]any{"mapping_version": 0}
		*name = readmodel.IndexName(c.SearchAlias, 0, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		body, _ := json.Marshal(map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
			"mappings": mapping,
			"aliases":  map[string]any{c.SearchAlias: map[string]any{"is_write_index": true}},
		})
		if code, raw := esRequest(t, "PUT", c.ElasticsearchURL+"/"+*name, string(body)); code != 200 {
			t.Fatalf("create %s: %d %s", *name, code, raw)
		}
	}
}

// TestIncidentMappingChangeRebuild: the alias is on an index of an older mapping version
// (v0); a rebuild moves it to an index of the current version.
func TestIncidentMappingChangeRebuild(t *testing.T) {
	var old string
	rp := startReadPath(t, withOldMappingIndex(&old))
	client := adminClient(t, rp.cfg.GRPCAddr)
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != old {
		t.Fatalf("the service moved the alias at start-up to %s; want it left on %s", got, old)
	}
	createProducts(t, rp.component, "MAP", "mapping", 10)
	rp.waitSearch(t, "category=mapping&size=1", 30*time.Second, "the products in the old index", func(p searchPage) bool { return p.Total == 10 })

	final := runRebuild(t, client, srcDatabase)
	wantPart := fmt.Sprintf("%s_v%d_", rp.cfg.SearchAlias, elasticsearch.MappingVersion)
	if final.GetFromIndex() != old || !strings.HasPrefix(final.GetToIndex(), wantPart) {
		t.Fatalf("rebuild %s -> %s, want %s -> %s*", final.GetFromIndex(), final.GetToIndex(), old, wantPart)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != final.GetToIndex() {
		t.Fatalf("alias on %s, want %s", got, final.GetToIndex())
	}
	list, err := client.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, ix := range list.GetIndices() {
		versions[ix.GetName()] = fmt.Sprintf("v%d aliased=%v live=%d", ix.GetMappingVersion(), ix.GetAliased(), ix.GetLiveDocs())
	}
	want := map[string]string{
		old:                "v0 aliased=false live=10",
		final.GetToIndex(): fmt.Sprintf("v%d aliased=true live=10", elasticsearch.MappingVersion),
	}
	if !reflect.DeepEqual(versions, want) {
		t.Fatalf("ListIndices: %v, want %v", versions, want)
	}
	rp.waitSearch(t, "category=mapping&size=1", 10*time.Second, "search on the new mapping", func(p searchPage) bool { return p.Total == 10 })
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
}
