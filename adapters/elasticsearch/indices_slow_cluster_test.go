package elasticsearch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
)

// slowShardsCluster answers as a cluster does whose new shards take shardsStart to start: a
// create answers once the shards have started unless told not to wait for them
// (wait_for_active_shards=0), and the index's health shows no active primary until then.
type slowShardsCluster struct {
	shardsStart time.Duration
	mu          sync.Mutex
	created     time.Time
}

func (c *slowShardsCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPut:
		c.mu.Lock()
		c.created = time.Now()
		c.mu.Unlock()
		if r.URL.Query().Get("wait_for_active_shards") != "0" {
			select {
			case <-time.After(c.shardsStart):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = fmt.Fprintf(w, `{"acknowledged":true,"shards_acknowledged":true,"index":%q}`, strings.TrimPrefix(r.URL.Path, "/"))
	case strings.HasPrefix(r.URL.Path, "/_cluster/health/"):
		c.mu.Lock()
		started := !c.created.IsZero() && time.Since(c.created) >= c.shardsStart
		c.mu.Unlock()
		active := 0 // a new index's initializing primaries are reported yellow
		if started {
			active = 1
		}
		_, _ = fmt.Fprintf(w, `{"status":"yellow","number_of_nodes":3,"active_primary_shards":%d}`, active)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprint(w, `{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}`)
	}
}

// A cluster that is slow to start a new index's shards still creates the index, and
// CreateIndex returns once they have started: a rebuild must not fail because they started
// after the client's request timeout (the scale-out drill's three-node cluster took 13 s while
// a node recovered), nor write into shards that have not.
func TestCreateIndexOnAClusterSlowToStartShards(t *testing.T) {
	cluster := &slowShardsCluster{shardsStart: time.Second}
	srv := httptest.NewServer(cluster)
	defer srv.Close()
	cfg := elasticsearch.Config{URL: srv.URL, Alias: "slow_alias", MaxRetries: -1, RequestTimeout: 400 * time.Millisecond}
	_, ix := rmIndices(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	name, err := ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{})
	if err != nil {
		t.Fatalf("CreateIndex on a cluster slow to start shards: %v", err)
	}
	if !strings.HasPrefix(name, "slow_alias_v") {
		t.Fatalf("CreateIndex = %q", name)
	}
	if took := time.Since(start); took < cluster.shardsStart {
		t.Fatalf("CreateIndex returned after %s, before the shards started (%s)", took, cluster.shardsStart)
	}
}
