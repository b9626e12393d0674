package elasticsearch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
)

// slowShardsCluster answers index creation as a cluster does whose new shards take a long time
// to start: at the create's timeout parameter with "shards not acknowledged", or, without one,
// only once the shards have started.
type slowShardsCluster struct{ shardsStart time.Duration }

func (c slowShardsCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPut {
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprint(w, `{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}`)
		return
	}
	wait, acked := c.shardsStart, true
	if t, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && t < wait {
		wait, acked = t, false
	}
	select {
	case <-time.After(wait):
	case <-r.Context().Done():
		return
	}
	_, _ = fmt.Fprintf(w, `{"acknowledged":true,"shards_acknowledged":%t,"index":%q}`, acked, strings.TrimPrefix(r.URL.Path, "/"))
}

// A cluster that is slow to start a new index's shards still creates the index: a rebuild
// must not fail because the answer came after the client's request timeout (the scale-out
// drill's three-node cluster took 14 s while a node recovered).
func TestCreateIndexOnAClusterSlowToStartShards(t *testing.T) {
	srv := httptest.NewServer(slowShardsCluster{shardsStart: 3 * time.Second})
	defer srv.Close()
	cfg := elasticsearch.Config{URL: srv.URL, Alias: "slow_alias", MaxRetries: -1, RequestTimeout: 400 * time.Millisecond}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := elasticsearch.NewIndices(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, err := ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{})
	if err != nil {
		t.Fatalf("CreateIndex on a cluster slow to start shards: %v", err)
	}
	if !strings.HasPrefix(name, "slow_alias_v") {
		t.Fatalf("CreateIndex = %q", name)
	}
}
