package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/application/ops"
)

var _ ops.EventStats = (*OpsStats)(nil)

// OpsStats reads consumer-group lag and topic depths for the operator's checks through
// franz-go's admin client (ops.EventStats). It never joins a group or consumes, so asking
// for the projector's lag cannot disturb the projector. It is safe for concurrent use.
type OpsStats struct {
	cl  *kgo.Client
	adm *kadm.Client
}

// NewOpsStats returns a reader over cfg's brokers. It does not contact the cluster; an
// unreachable broker shows up as the error of the first call.
func NewOpsStats(cfg Config) (*OpsStats, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ops stats: %w", err)
	}
	cl, err := kgo.NewClient(cfg.clientOpts("-ops")...)
	if err != nil {
		return nil, fmt.Errorf("ops stats: admin client: %w", err)
	}
	return &OpsStats{cl: cl, adm: kadm.NewClient(cl)}, nil
}

// Close releases the client's connections.
func (s *OpsStats) Close() { s.cl.Close() }

// offsets lists the start and end offsets of every partition of topic.
func (s *OpsStats) offsets(ctx context.Context, topic string) (starts, ends map[int32]int64, err error) {
	if starts, err = listPartitionOffsets(ctx, s.cl, s.adm.ListStartOffsets, topic, opsListGrace); err != nil {
		return nil, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	if ends, err = listPartitionOffsets(ctx, s.cl, s.adm.ListEndOffsets, topic, opsListGrace); err != nil {
		return nil, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	return starts, ends, nil
}

// opsListGrace bounds how long an offset listing rides out a topic the cluster does not know
// yet or a partition leader that just died; the status bounds each source more tightly.
const opsListGrace = 5 * time.Second

// TopicOffsets implements ops.EventStats: the start and end offset of every partition of
// topic, by partition number.
func (s *OpsStats) TopicOffsets(ctx context.Context, topic string) (ops.TopicOffsets, error) {
	starts, ends, err := s.offsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("ops stats: %w", err)
	}
	out := make(ops.TopicOffsets, 0, len(ends))
	for p, end := range ends {
		out = append(out, ops.PartitionOffsets{Partition: p, Start: starts[p], End: end})
	}
	slices.SortFunc(out, func(a, b ops.PartitionOffsets) int { return int(a.Partition - b.Partition) })
	return out, nil
}

// GroupLag implements ops.EventStats. A partition without a committed offset lags by all
// its retained records (the projector starts from the oldest); a committed offset below the
// log start (retention overtook the group) lags by the retained records too.
func (s *OpsStats) GroupLag(ctx context.Context, group, topic string) (ops.GroupLag, error) {
	if group == "" || topic == "" {
		return ops.GroupLag{}, errors.New("ops stats: group lag: empty group or topic")
	}
	out := ops.GroupLag{Group: group, Topic: topic}
	starts, ends, err := s.offsets(ctx, topic)
	if err != nil {
		return out, fmt.Errorf("ops stats: group lag of %s: %w", group, err)
	}
	// A group that never committed does not exist for the coordinator; newer brokers say so
	// with GROUP_ID_NOT_FOUND where older ones answered an empty, "Dead" group.
	out.State = "Dead"
	committed, err := s.adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return out, fmt.Errorf("ops stats: committed offsets of %s: %w", group, err)
	}
	described, err := s.adm.DescribeGroups(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return out, fmt.Errorf("ops stats: describe group %s: %w", group, err)
	}
	if g, ok := described[group]; ok {
		switch {
		case errors.Is(g.Err, kerr.GroupIDNotFound):
		case g.Err != nil:
			return out, fmt.Errorf("ops stats: describe group %s: %w", group, g.Err)
		default:
			out.State, out.Members = g.State, len(g.Members)
		}
	}
	for p, end := range ends {
		start := starts[p]
		pl := ops.PartitionLag{Partition: p, Start: start, End: end, Committed: -1}
		next := start
		if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			pl.Committed = c.At
			out.Committed = true
			next = max(c.At, start)
		}
		pl.Lag = max(end-next, 0)
		out.Lag += pl.Lag
		out.Records += max(end-start, 0)
		out.Partitions = append(out.Partitions, pl)
	}
	slices.SortFunc(out.Partitions, func(a, b ops.PartitionLag) int { return int(a.Partition - b.Partition) })
	return out, nil
}
