package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// TopicReplication is how one topic's partitions are replicated right now.
type TopicReplication struct {
	// Topic is the topic's name.
	Topic string
	// Partitions is the number of partitions.
	Partitions int
	// ReplicationFactor is the largest replica count of its partitions.
	ReplicationFactor int
	// MinInsyncReplicas is the topic's min.insync.replicas; 0 when unknown.
	MinInsyncReplicas int
	// UnderReplicated lists the partitions with fewer in-sync replicas than replicas: a
	// broker is down or still catching up.
	UnderReplicated []int32
	// BelowMinISR lists the partitions with fewer in-sync replicas than MinInsyncReplicas:
	// acks=all writes to them fail, so the relay cannot forward their lanes' events.
	BelowMinISR []int32
	// Offline lists the partitions without a leader: neither written nor read.
	Offline []int32
}

// KafkaReplication is the replication of the service's topics.
type KafkaReplication struct {
	// Brokers counts the brokers the cluster's metadata lists (the live ones).
	Brokers int
	// Topics are the events and dead-letter topics, in that order.
	Topics []TopicReplication
}

// Search cluster health statuses, as the engine reports them.
const (
	SearchGreen  = "green"
	SearchYellow = "yellow"
	SearchRed    = "red"
)

// SearchHealth is the search cluster's health.
type SearchHealth struct {
	// Status is green (every shard copy allocated), yellow (a replica is missing: searches
	// and writes work, one more node loss may not be survived) or red (a primary is missing:
	// some documents can be neither read nor written).
	Status string
	// Nodes and DataNodes count the cluster's nodes.
	Nodes, DataNodes int
	// ActiveShards counts the started shard copies.
	ActiveShards int
	// RelocatingShards counts copies moving between nodes.
	RelocatingShards int
	// InitializingShards counts copies being built (a returning node's, a new replica's).
	InitializingShards int
	// UnassignedShards counts copies without a node.
	UnassignedShards int
	// DelayedUnassignedShards counts unassigned copies that wait for their node to come back
	// (index.unassigned.node_left.delayed_timeout) before being rebuilt elsewhere.
	DelayedUnassignedShards int
}

// KafkaSection is the replication of the service's topics.
type KafkaSection struct {
	KafkaReplication
	// Reported is false when the process has no replication reader (it is not asked).
	Reported bool
	// Err is why it could not be read.
	Err error
}

// SearchSection is the search cluster's health.
type SearchSection struct {
	SearchHealth
	// Reported is false for the embedded engine, which has no cluster.
	Reported bool
	// Err is why it could not be read.
	Err error
}

// Checks of the clusters.
const (
	// CheckKafkaUnderReplicated: partitions of the service's topics have fewer in-sync
	// replicas than replicas (warning: writes go on while min.insync.replicas hold).
	CheckKafkaUnderReplicated = "kafka_under_replicated"
	// CheckKafkaBelowMinISR: partitions have fewer in-sync replicas than
	// min.insync.replicas; acks=all writes to them fail and the outbox grows.
	CheckKafkaBelowMinISR = "kafka_below_min_isr"
	// CheckKafkaOffline: partitions have no leader.
	CheckKafkaOffline = "kafka_partition_offline"
	// CheckSearchCluster: the search cluster is yellow (warning) or red (error).
	CheckSearchCluster = "search_cluster_health"
)

// readKafka reads the replication of the events and dead-letter topics.
func (s getStatusHandler) readKafka(ctx context.Context) KafkaSection {
	if s.deps.Replication == nil {
		return KafkaSection{}
	}
	out := KafkaSection{Reported: true}
	for _, topic := range []string{s.cfg.EventsTopic, s.cfg.DLQTopic} {
		tr, brokers, err := s.deps.Replication.TopicReplication(ctx, topic)
		if err != nil {
			out.Err = err
			return out
		}
		out.Brokers = brokers
		out.Topics = append(out.Topics, tr)
	}
	return out
}

// readSearch reads the search cluster's health.
func (s getStatusHandler) readSearch(ctx context.Context) SearchSection {
	if s.deps.Search == nil {
		return SearchSection{}
	}
	h, err := s.deps.Search.ClusterHealth(ctx)
	return SearchSection{SearchHealth: h, Reported: true, Err: err}
}

// evaluateClusters adds the problems of the Kafka and search clusters.
func evaluateClusters(st *Status, add addProblem, unavailable sourceUnavailable) {
	if k := st.Kafka; k.Err != nil {
		unavailable("kafka topic replication", k.Err)
	} else {
		for _, t := range k.Topics {
			if len(t.Offline) > 0 {
				add(SeverityError, CheckKafkaOffline, "kafka: %s has %d of %d partitions without a leader (%s): they can be neither written nor read until a replica's broker returns",
					t.Topic, len(t.Offline), t.Partitions, partitionList(t.Offline))
			}
			if len(t.BelowMinISR) > 0 {
				add(SeverityError, CheckKafkaBelowMinISR, "kafka: %s has %d of %d partitions with fewer in-sync replicas than min.insync.replicas=%d (%s): writes to them are refused, "+
					"so the relay cannot forward those lanes (the outbox grows, nothing is lost); bring the brokers back", t.Topic, len(t.BelowMinISR), t.Partitions, t.MinInsyncReplicas, partitionList(t.BelowMinISR))
			}
			if n := len(t.UnderReplicated) - len(t.BelowMinISR); n > 0 {
				add(SeverityWarning, CheckKafkaUnderReplicated, "kafka: %s has %d of %d partitions under-replicated (%s) with %d live brokers: a broker is down or catching up; "+
					"writes go on while min.insync.replicas hold", t.Topic, len(t.UnderReplicated), t.Partitions, partitionList(t.UnderReplicated), k.Brokers)
			}
		}
	}
	switch sc := st.Search; {
	case sc.Err != nil:
		unavailable("search cluster health", sc.Err)
	case !sc.Reported:
	case sc.Status == SearchRed:
		add(SeverityError, CheckSearchCluster, "search: the cluster is red with %d nodes (%d shard copies unassigned): some primaries are missing, "+
			"so part of the read model can be neither searched nor written; the projector retries until they return", sc.Nodes, sc.UnassignedShards)
	case sc.Status == SearchYellow:
		add(SeverityWarning, CheckSearchCluster, "search: the cluster is yellow with %d nodes (%d shard copies unassigned, %d of them waiting for their node, %d initializing): "+
			"searches and writes work, but a replica is missing", sc.Nodes, sc.UnassignedShards, sc.DelayedUnassignedShards, sc.InitializingShards)
	case sc.Status != SearchGreen:
		add(SeverityWarning, CheckSearchCluster, "search: the cluster reports status %q with %d nodes", sc.Status, sc.Nodes)
	}
}

// partitionList shows partition numbers for a message, the first dozen at most.
func partitionList(ps []int32) string {
	ps = slices.Sorted(slices.Values(ps))
	var b strings.Builder
	for i, p := range ps {
		if i == 12 {
			fmt.Fprintf(&b, " and %d more", len(ps)-i)
			break
		}
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprint(&b, p)
	}
	return "partitions " + b.String()
}
