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
	list := func(f func(context.Context, ...string) (kadm.ListedOffsets, error), what string) (map[int32]int64, error) {
		res, err := f(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("%s offsets of %s: %w", what, topic, err)
		}
		if err := res.Error(); err != nil { // an unknown topic is a partition -1 error
			return nil, fmt.Errorf("%s offsets of %s: %w", what, topic, err)
		}
		out := make(map[int32]int64, len(res[topic]))
		for p, o := range res[topic] {
			out[p] = o.Offset
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s offsets of %s: the topic has no partitions (does it exist?)", what, topic)
		}
		return out, nil
	}
	// A topic created a moment ago is unknown to a broker until the controller's metadata
	// reaches it; ride that out briefly (as EventLog does) instead of reporting a missing topic.
	deadline := time.Now().Add(opsUnknownTopicGrace)
	wait := 50 * time.Millisecond
	for {
		starts, err = list(s.adm.ListStartOffsets, "start")
		if err == nil {
			ends, err = list(s.adm.ListEndOffsets, "end")
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().Add(wait).After(deadline) {
			return starts, ends, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// opsUnknownTopicGrace bounds how long an offset listing retries a topic the cluster does
// not know yet.
const opsUnknownTopicGrace = 5 * time.Second

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
