package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// A topic created with an explicit replication factor and min.insync.replicas reports them
// back, with every partition led and in sync. The under-replicated cases need brokers to die:
// the scale-out drill checks them on the three-broker cluster.
func TestTopicReplicationReportsTheCreatedSettings(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		name := strings.ReplaceAll(testenv.Name("ops.repl"), "_", ".")
		testkafka.DropOnCleanup(t, c, name)
		err := kafka.EnsureTopics(ctxT(t, 30*time.Second), c.Config(),
			kafka.TopicSpec{Name: name, Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		stats := newOpsStats(t, c)
		awaitTopic(t, stats, name)
		tr, brokers, err := stats.TopicReplication(ctxT(t, 20*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Topic != name || tr.Partitions != 3 || tr.ReplicationFactor != 1 || tr.MinInsyncReplicas != 1 || brokers < 1 {
			t.Fatalf("replication of %s: %+v, %d brokers", name, tr, brokers)
		}
		if len(tr.UnderReplicated)+len(tr.BelowMinISR)+len(tr.Offline) != 0 {
			t.Fatalf("a healthy topic reported problems: %+v", tr)
		}
		// The value is the topic's own, not the brokers' default that happens to match.
		rcs, err := kadm.NewClient(newProducer(t, c)).DescribeTopicConfigs(ctxT(t, 20*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := rcs.On(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range rc.Configs {
			if cfg.Key == "min.insync.replicas" && cfg.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Fatalf("min.insync.replicas of %s comes from %s, want the topic's own configuration", name, cfg.Source)
			}
		}
	})
}

// A replication factor the cluster cannot give fails the creation with the broker's reason,
// instead of creating a topic with less protection than asked for.
func TestEnsureTopicsRefusesAReplicationFactorAboveTheBrokers(t *testing.T) {
	c := testkafka.Real(t)
	name := strings.ReplaceAll(testenv.Name("ops.rf"), "_", ".")
	testkafka.DropOnCleanup(t, c, name)
	stats := newOpsStats(t, c)
	_, brokers, err := stats.TopicReplication(ctxT(t, 20*time.Second), "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	err = kafka.EnsureTopics(ctxT(t, 30*time.Second), c.Config(),
		kafka.TopicSpec{Name: name, Partitions: 1, ReplicationFactor: int16(brokers + 1)})
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("replication factor %d on %d brokers: %v, want an error naming the topic", brokers+1, brokers, err)
	}
}

// A topic that does not exist is an error, not an empty, healthy report.
func TestTopicReplicationOfAMissingTopic(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		stats := newOpsStats(t, c)
		if _, _, err := stats.TopicReplication(ctxT(t, 20*time.Second), strings.ReplaceAll(testenv.Name("ops.none"), "_", ".")); err == nil {
			t.Fatal("no error for a missing topic")
		}
	})
}
