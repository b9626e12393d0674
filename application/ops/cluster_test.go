package ops_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application/ops"
)

// clusters are the fakes of the Kafka replication and the search cluster's health.
type clusters struct {
	topics  map[string]ops.TopicReplication
	brokers int
	replErr error
	health  ops.SearchHealth
	err     error
}

func (c *clusters) TopicReplication(_ context.Context, topic string) (ops.TopicReplication, int, error) {
	if c.replErr != nil {
		return ops.TopicReplication{}, 0, c.replErr
	}
	t, ok := c.topics[topic]
	if !ok {
		t = ops.TopicReplication{Topic: topic, Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2}
	}
	return t, c.brokers, nil
}

func (c *clusters) ClusterHealth(context.Context) (ops.SearchHealth, error) { return c.health, c.err }

func healthyClusters() *clusters {
	return &clusters{topics: map[string]ops.TopicReplication{}, brokers: 3,
		health: ops.SearchHealth{Status: ops.SearchGreen, Nodes: 3, DataNodes: 3, ActiveShards: 2}}
}

func clusterStatus(t *testing.T, w *world, c *clusters) ops.Status {
	t.Helper()
	deps := ops.Deps{Database: w, Products: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w}
	if c != nil {
		deps.Replication, deps.Search = c, c
	}
	s, err := ops.NewService(ops.Config{Alias: "ps", EventsTopic: "product.events", DLQTopic: "dlq.product.events", ProjectorGroup: "catalog-projector"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(context.Background(), ops.DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A broker down makes partitions under-replicated: a warning while min.insync.replicas
// hold (writes go on), an error once they do not (acks=all writes are refused) or a
// partition has no leader. A search cluster that lost a replica is a warning, one that
// lost a primary an error.
func TestStatusClusterRules(t *testing.T) {
	boom := errors.New("connection refused")
	cases := []struct {
		name    string
		mutate  func(*clusters)
		healthy bool
		want    map[string]ops.Severity
	}{
		{name: "healthy clusters", healthy: true, want: map[string]ops.Severity{}},
		{name: "a broker down", healthy: true, want: map[string]ops.Severity{ops.CheckKafkaUnderReplicated: ops.SeverityWarning},
			mutate: func(c *clusters) {
				c.brokers = 2
				c.topics["product.events"] = ops.TopicReplication{Topic: "product.events", Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2,
					UnderReplicated: []int32{0, 3, 6, 9, 1, 4, 7, 10}}
			}},
		{name: "two brokers down", want: map[string]ops.Severity{ops.CheckKafkaBelowMinISR: ops.SeverityError},
			mutate: func(c *clusters) {
				c.brokers = 1
				c.topics["product.events"] = ops.TopicReplication{Topic: "product.events", Partitions: 2, ReplicationFactor: 3, MinInsyncReplicas: 2,
					UnderReplicated: []int32{0, 1}, BelowMinISR: []int32{0, 1}}
			}},
		{name: "a partition without a leader", want: map[string]ops.Severity{ops.CheckKafkaOffline: ops.SeverityError,
			ops.CheckKafkaBelowMinISR: ops.SeverityError, ops.CheckKafkaUnderReplicated: ops.SeverityWarning},
			mutate: func(c *clusters) {
				c.topics["dlq.product.events"] = ops.TopicReplication{Topic: "dlq.product.events", Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2,
					UnderReplicated: []int32{0, 1, 2}, BelowMinISR: []int32{2}, Offline: []int32{2}}
			}},
		{name: "replication unreadable", want: map[string]ops.Severity{ops.CheckUnavailable: ops.SeverityError},
			mutate: func(c *clusters) { c.replErr = boom }},
		{name: "search yellow", healthy: true, want: map[string]ops.Severity{ops.CheckSearchCluster: ops.SeverityWarning},
			mutate: func(c *clusters) {
				c.health = ops.SearchHealth{Status: ops.SearchYellow, Nodes: 2, DataNodes: 2, ActiveShards: 1, UnassignedShards: 1, DelayedUnassignedShards: 1}
			}},
		{name: "search red", want: map[string]ops.Severity{ops.CheckSearchCluster: ops.SeverityError},
			mutate: func(c *clusters) { c.health = ops.SearchHealth{Status: ops.SearchRed, Nodes: 1, UnassignedShards: 2} }},
		{name: "search health unreadable", want: map[string]ops.Severity{ops.CheckUnavailable: ops.SeverityError},
			mutate: func(c *clusters) { c.err = boom }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := healthyClusters()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			st := clusterStatus(t, healthyWorld(), c)
			if st.Healthy != tc.healthy {
				t.Errorf("healthy = %v, want %v; problems %+v", st.Healthy, tc.healthy, st.Problems)
			}
			if got := checks(st); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("problems %v, want %v (%+v)", got, tc.want, st.Problems)
			}
			if !st.Kafka.Reported || !st.Search.Reported {
				t.Errorf("sections not reported: kafka %v, search %v", st.Kafka.Reported, st.Search.Reported)
			}
		})
	}
}

// The problem says which topic, how many partitions and which, so the page names the fault.
func TestStatusNamesTheUnderReplicatedPartitions(t *testing.T) {
	c := healthyClusters()
	c.brokers = 2
	c.topics["product.events"] = ops.TopicReplication{Topic: "product.events", Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2,
		UnderReplicated: []int32{9, 0, 3}}
	st := clusterStatus(t, healthyWorld(), c)
	if len(st.Problems) != 1 {
		t.Fatalf("problems %+v", st.Problems)
	}
	msg := st.Problems[0].Message
	for _, want := range []string{"product.events", "3 of 12", "partitions 0,3,9", "2 live brokers"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if len(st.Kafka.Topics) != 2 || st.Kafka.Topics[0].Topic != "product.events" || st.Kafka.Topics[1].Topic != "dlq.product.events" || st.Kafka.Brokers != 2 {
		t.Errorf("kafka section %+v", st.Kafka)
	}
}

// Without the optional readers (the embedded engine has no cluster), the sections are left
// out and nothing is reported about them.
func TestStatusWithoutClusterReaders(t *testing.T) {
	st := clusterStatus(t, healthyWorld(), nil)
	if !st.Healthy || len(st.Problems) != 0 || st.Kafka.Reported || st.Search.Reported {
		t.Fatalf("status without cluster readers: healthy %v, problems %+v, kafka %+v, search %+v", st.Healthy, st.Problems, st.Kafka, st.Search)
	}
}
