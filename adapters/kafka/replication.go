package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/marketplace/catalog/application/ops"
)

var _ ops.Replication = (*OpsStats)(nil)

// TopicReplication implements ops.Replication: the leader, replicas and in-sync replicas of
// every partition of topic from the cluster's metadata, judged against the topic's
// min.insync.replicas, and the number of live brokers. A partition whose leader is gone is
// offline; one with fewer in-sync replicas than replicas is under-replicated.
func (s *OpsStats) TopicReplication(ctx context.Context, topic string) (ops.TopicReplication, int, error) {
	out := ops.TopicReplication{Topic: topic}
	md, err := s.adm.Metadata(ctx, topic)
	if err != nil {
		return out, 0, fmt.Errorf("ops stats: metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	switch {
	case !ok:
		return out, 0, fmt.Errorf("ops stats: metadata of %s: not in the answer", topic)
	case td.Err != nil:
		return out, 0, fmt.Errorf("ops stats: metadata of %s: %w", topic, td.Err)
	}
	out.MinInsyncReplicas, err = s.minInsyncReplicas(ctx, topic)
	if err != nil {
		return out, 0, err
	}
	for _, p := range td.Partitions.Sorted() {
		out.Partitions++
		out.ReplicationFactor = max(out.ReplicationFactor, len(p.Replicas))
		// A leaderless partition answers LEADER_NOT_AVAILABLE (or has leader -1).
		if p.Leader < 0 || errors.Is(p.Err, kerr.LeaderNotAvailable) {
			out.Offline = append(out.Offline, p.Partition)
		}
		if len(p.ISR) < len(p.Replicas) {
			out.UnderReplicated = append(out.UnderReplicated, p.Partition)
		}
		if out.MinInsyncReplicas > 0 && len(p.ISR) < out.MinInsyncReplicas {
			out.BelowMinISR = append(out.BelowMinISR, p.Partition)
		}
	}
	return out, len(md.Brokers), nil
}

// minInsyncReplicas reads topic's effective min.insync.replicas (its own or the brokers'
// default); 0 when the cluster does not say.
func (s *OpsStats) minInsyncReplicas(ctx context.Context, topic string) (int, error) {
	rcs, err := s.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("ops stats: configuration of %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, fmt.Errorf("ops stats: configuration of %s: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key != "min.insync.replicas" {
			continue
		}
		n, err := strconv.Atoi(c.MaybeValue())
		if err != nil {
			return 0, nil
		}
		return n, nil
	}
	return 0, nil
}
