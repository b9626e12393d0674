package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/application/ops"
)

// clusterSources fake the topics' replication and the search cluster's health.
type clusterSources struct {
	under  map[string][]int32
	health ops.SearchHealth
}

func (c clusterSources) TopicReplication(_ context.Context, topic string) (ops.TopicReplication, int, error) {
	return ops.TopicReplication{Topic: topic, Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2, UnderReplicated: c.under[topic]}, 2, nil
}

func (c clusterSources) ClusterHealth(context.Context) (ops.SearchHealth, error) {
	return c.health, nil
}

// What a broker or a search node down looks like on /metrics: under-replicated partitions by
// topic, the live brokers, and the search status as a number alerts compare.
func TestOpsSamplerExportsClusterHealth(t *testing.T) {
	r, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	src := &opsSources{}
	cs := clusterSources{under: map[string][]int32{"product.events": {1, 4, 7}},
		health: ops.SearchHealth{Status: ops.SearchYellow, Nodes: 2, UnassignedShards: 1}}
	s, err := metrics.NewOpsSampler(r, metrics.OpsSources{Outbox: src, Events: src, DeadLetters: src, Replication: cs, Search: cs},
		metrics.OpsSamplerConfig{Interval: time.Second, ProjectorGroup: "g", EventsTopic: "product.events", DLQTopic: "dlq.product.events"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Sample(context.Background())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"catalog_kafka_under_replicated_partitions", map[string]string{"topic": "product.events"}, 3},
		{"catalog_kafka_under_replicated_partitions", map[string]string{"topic": "dlq.product.events"}, 0},
		{"catalog_kafka_brokers", nil, 2},
		{"catalog_search_cluster_status", nil, 1},
		{"catalog_search_cluster_nodes", nil, 2},
		{"catalog_search_unassigned_shards", nil, 1},
	} {
		if v, ok := gaugeValue(t, r, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
}
