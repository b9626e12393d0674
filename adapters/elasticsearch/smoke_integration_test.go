package elasticsearch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/internal/testenv"
)

// TestSmokeRealServer checks, against the real Elasticsearch-API server of `make deps` (or
// ELASTICSEARCH_URL), the engine features the read model relies on, through go-elasticsearch/v8
// and the compat transport: explicit strict mapping, alias, bulk writes with external versions
// (external_gte) where an older version is a conflict, refresh, and search through the alias.
func TestSmokeRealServer(t *testing.T) {
	url, compat := testenv.ElasticsearchURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	rt, err := elasticsearch.NewCompatTransport(http.DefaultTransport, compat)
	if err != nil {
		t.Fatalf("compat transport: %v", err)
	}
	client, err := es8.NewClient(es8.Config{Addresses: []string{url}, Transport: rt, MaxRetries: 2})
	if err != nil {
		t.Fatalf("client: %v", err)
	}

	info := smokeCall(t, ctx, client, esapi.InfoRequest{})
	t.Logf("server %s: %v", url, info["version"])

	index := testenv.Name("smoke_es_index")
	alias := testenv.Name("smoke_es_alias")

	// Create the index with an explicit strict mapping and the alias as its write index.
	body := fmt.Sprintf(`{
	  "settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.gc_deletes": "1h"},
	  "mappings": {
	    "dynamic": "strict",
	    "properties": {
	      "id":      {"type": "keyword"},
	      "name":    {"type": "text"},
	      "version": {"type": "long"}
	    }
	  },
	  "aliases": {%q: {"is_write_index": true}}
	}`, alias)
	smokeCall(t, ctx, client, esapi.IndicesCreateRequest{Index: index, Body: strings.NewReader(body)})
	t.Cleanup(func() {
		// Safety net if the test fails before its own delete; a missing index is fine.
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer ccancel()
		res, err := esapi.IndicesDeleteRequest{Index: []string{index}, IgnoreUnavailable: esapi.BoolPtr(true)}.Do(cctx, client)
		if err == nil {
			_ = res.Body.Close()
		}
	})

	// A field outside the mapping is rejected (dynamic: strict).
	res, err := esapi.IndexRequest{
		Index: alias, DocumentID: "strict-probe", Body: strings.NewReader(`{"id":"x","unknown_field":1}`),
	}.Do(ctx, client)
	if err != nil {
		t.Fatalf("index with unknown field: %v", err)
	}
	errBody := smokeReadAll(t, res)
	if !res.IsError() || !strings.Contains(errBody, "strict_dynamic_mapping_exception") {
		t.Fatalf("unknown field: want strict_dynamic_mapping_exception, got %s %s", res.Status(), errBody)
	}

	// Bulk-write documents through the alias with external versions.
	const n = 20
	const version = int64(5)
	stats := smokeBulk(t, ctx, client, alias, func(add func(id string, v int64, name string)) {
		for i := range n {
			add(fmt.Sprintf("doc-%02d", i), version, fmt.Sprintf("product %d", i))
		}
	})
	if stats.failed != 0 || stats.ok != n {
		t.Fatalf("bulk: %d ok, %d failed (%v), want %d ok", stats.ok, stats.failed, stats.errors, n)
	}

	// An older version loses with a version conflict; the same version is accepted (external_gte,
	// which is what makes replays idempotent).
	stats = smokeBulk(t, ctx, client, alias, func(add func(id string, v int64, name string)) {
		add("doc-00", version-2, "stale write")
		add("doc-01", version, "replayed write")
	})
	if stats.ok != 1 || stats.failed != 1 {
		t.Fatalf("stale+replay bulk: %d ok, %d failed (%v), want 1 and 1", stats.ok, stats.failed, stats.errors)
	}
	if got := stats.errorTypes["doc-00"]; got != "version_conflict_engine_exception" {
		t.Fatalf("stale write of doc-00: error type %q, want version_conflict_engine_exception (all: %v)", got, stats.errors)
	}

	smokeCall(t, ctx, client, esapi.IndicesRefreshRequest{Index: []string{alias}})

	// Read everything back through the alias.
	var found struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Index   string `json:"_index"`
				ID      string `json:"_id"`
				Version int64  `json:"_version"`
				Source  struct {
					ID      string `json:"id"`
					Name    string `json:"name"`
					Version int64  `json:"version"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	smokeDecode(t, smokeCall(t, ctx, client, esapi.SearchRequest{
		Index:   []string{alias},
		Body:    strings.NewReader(`{"query": {"match_all": {}}, "size": 100, "sort": [{"id": "asc"}]}`),
		Version: esapi.BoolPtr(true),
	}), &found)
	if found.Hits.Total.Value != n || len(found.Hits.Hits) != n {
		t.Fatalf("search through alias: total %d, %d hits, want %d", found.Hits.Total.Value, len(found.Hits.Hits), n)
	}
	for i, h := range found.Hits.Hits {
		want := fmt.Sprintf("doc-%02d", i)
		if h.ID != want || h.Source.ID != want || h.Index != index || h.Version != version {
			t.Fatalf("hit %d: id %q source id %q index %q version %d, want %q in %q at version %d",
				i, h.ID, h.Source.ID, h.Index, h.Version, want, index, version)
		}
	}
	if name := found.Hits.Hits[0].Source.Name; name != "product 0" {
		t.Fatalf("doc-00 name %q: the stale write must not have landed", name)
	}
	if name := found.Hits.Hits[1].Source.Name; name != "replayed write" {
		t.Fatalf("doc-01 name %q: the same-version write must have been applied", name)
	}

	// Full-text search on the mapped text field works through the alias too.
	var one struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	smokeDecode(t, smokeCall(t, ctx, client, esapi.SearchRequest{
		Index: []string{alias},
		Body:  strings.NewReader(`{"query": {"match": {"name": "replayed"}}}`),
	}), &one)
	if len(one.Hits.Hits) != 1 || one.Hits.Hits[0].ID != "doc-01" {
		t.Fatalf("match query: got %+v, want only doc-01", one.Hits.Hits)
	}

	smokeCall(t, ctx, client, esapi.IndicesDeleteRequest{Index: []string{index}})
	res, err = esapi.IndicesExistsAliasRequest{Name: []string{alias}}.Do(ctx, client)
	if err != nil {
		t.Fatalf("alias exists: %v", err)
	}
	_ = smokeReadAll(t, res)
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("alias %s still exists after deleting its index: %s", alias, res.Status())
	}
}

type smokeBulkStats struct {
	ok, failed int
	errors     []string
	errorTypes map[string]string // document id -> error type
}

// bulk writes the documents that fill adds through an esutil.BulkIndexer into alias, each with
// its external version (version_type external_gte), and returns the per-item outcome.
func smokeBulk(t *testing.T, ctx context.Context, client *es8.Client, alias string, fill func(add func(id string, v int64, name string))) smokeBulkStats {
	t.Helper()
	var (
		mu    sync.Mutex
		stats = smokeBulkStats{errorTypes: map[string]string{}}
	)
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:        client,
		Index:         alias,
		NumWorkers:    2,
		FlushInterval: time.Second,
		Timeout:       30 * time.Second,
		OnError: func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			stats.errors = append(stats.errors, "indexer: "+err.Error())
		},
	})
	if err != nil {
		t.Fatalf("bulk indexer: %v", err)
	}
	fill(func(id string, v int64, name string) {
		doc, err := json.Marshal(map[string]any{"id": id, "name": name, "version": v})
		if err != nil {
			t.Fatal(err)
		}
		err = bi.Add(ctx, esutil.BulkIndexerItem{
			Action:       "index",
			DocumentID:   id,
			Version:      &v,
			VersionType:  "external_gte",
			RequireAlias: true,
			Body:         bytes.NewReader(doc),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				mu.Lock()
				defer mu.Unlock()
				stats.ok++
			},
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				mu.Lock()
				defer mu.Unlock()
				stats.failed++
				if err != nil {
					stats.errors = append(stats.errors, fmt.Sprintf("%s: %v", item.DocumentID, err))
					return
				}
				stats.errorTypes[item.DocumentID] = res.Error.Type
				stats.errors = append(stats.errors, fmt.Sprintf("%s: %d %s: %s", item.DocumentID, res.Status, res.Error.Type, res.Error.Reason))
			},
		})
		if err != nil {
			t.Fatalf("bulk add %s: %v", id, err)
		}
	})
	if err := bi.Close(ctx); err != nil {
		t.Fatalf("bulk close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return stats
}

// call performs req and fails the test on a transport error or an error response; it returns
// the decoded JSON object of the response (nil for an empty body).
func smokeCall(t *testing.T, ctx context.Context, client *es8.Client, req esapi.Request) map[string]any {
	t.Helper()
	res, err := req.Do(ctx, client)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	body := smokeReadAll(t, res)
	if res.IsError() {
		t.Fatalf("%T: %s %s", req, res.Status(), body)
	}
	var out map[string]any
	if strings.TrimSpace(body) != "" {
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%T: decode %q: %v", req, body, err)
		}
	}
	return out
}

func smokeReadAll(t *testing.T, res *esapi.Response) string {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return string(b)
}

// decode re-decodes a generic JSON object into a typed struct.
func smokeDecode(t *testing.T, in map[string]any, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
