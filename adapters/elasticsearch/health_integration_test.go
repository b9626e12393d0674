package elasticsearch_test

import (
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/ops"
)

// The health of the read model's indices and the cluster's nodes: green while every copy of
// the alias's indices is placed.
func TestClusterHealthOfTheReadModelIndices(t *testing.T) {
	e := rmSetup(t, nil)
	e.ensure()
	h, err := e.target().ClusterHealth(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != ops.SearchGreen || h.Nodes < 1 || h.DataNodes < 1 || h.ActiveShards < 1 || h.UnassignedShards != 0 {
		t.Fatalf("health of a fresh read model: %+v, want green with its shards active", h)
	}
}

// A rebuild's index gets its replicas back before validation and the switch: RestoreSettings
// returns once they are placed, and fails with the reason when the cluster cannot place
// them, instead of letting the alias move to an index whose shards have one copy each.
func TestRestoreSettingsWaitsForTheReplicas(t *testing.T) {
	probe := rmSetup(t, nil)
	probe.ensure()
	h, err := probe.target().ClusterHealth(probe.ctx())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("placeable", func(t *testing.T) {
		replicas := h.DataNodes - 1
		e := rmSetup(t, func(c *elasticsearch.Config) { c.Replicas = &replicas })
		name, err := e.ix.CreateIndex(e.ctx(), elasticsearch.CreateIndexOptions{BulkLoad: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ix.RestoreSettings(e.ctx(), name); err != nil {
			t.Fatalf("replicas %d on %d data nodes: %v", replicas, h.DataNodes, err)
		}
		var health struct {
			Status string `json:"status"`
		}
		e.rawJSON("GET", "/_cluster/health/"+name, nil, &health)
		if health.Status != ops.SearchGreen {
			t.Fatalf("RestoreSettings returned with %s %s", name, health.Status)
		}
	})

	t.Run("more than the nodes can hold", func(t *testing.T) {
		replicas := h.DataNodes // one more copy than there are nodes
		e := rmSetup(t, func(c *elasticsearch.Config) {
			c.Replicas = &replicas
			c.ReplicaWait = 2 * time.Second
		})
		name, err := e.ix.CreateIndex(e.ctx(), elasticsearch.CreateIndexOptions{BulkLoad: true})
		if err != nil {
			t.Fatal(err)
		}
		// The index is yellow from here on: delete it at once, not at the end of the test,
		// since other suites on the shared cluster look at its health.
		defer e.cleanup()
		start := time.Now()
		err = e.ix.RestoreSettings(e.ctx(), name)
		if err == nil || !strings.Contains(err.Error(), "SEARCH_REPLICAS") || !strings.Contains(err.Error(), name) {
			t.Fatalf("replicas %d on %d data nodes: %v, want an error naming the index and SEARCH_REPLICAS", replicas, h.DataNodes, err)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("gave up after %s, before ReplicaWait", d)
		}
	})
}
