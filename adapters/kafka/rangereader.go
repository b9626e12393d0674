package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rangeReader is the engine of the readers that read ranges of a topic's partitions straight
// from the partitions, without a consumer group, so reading never joins, rebalances or commits
// anything: DLQReader (an operator's look at the DLQ) and EventLog (a rebuild's replay). It
// owns what both do alike: the client they share for metadata and offset listings, the
// capture of each partition's start and end, the consuming client of one read, the walk of a
// fetched partition through its range, and the check for a log that ends before the range
// does. What differs stays with each reader: the DLQ reads whatever is there (uncommitted
// records included, continuing past records deleted under it) and gives up on a partition
// gone quiet, the event log reads committed records only, fails on a hole, and decodes in
// batches.
type rangeReader struct {
	cfg   Config
	topic string
	// op prefixes every error ("dlq reader").
	op string
	// clientSuffix ends the client id of the reader's clients ("-dlq").
	clientSuffix string
	// topicSetting, when set, names the setting to check in the error for a topic that does
	// not exist ("DLQ_TOPIC").
	topicSetting string
	// grace is how long an offset listing rides out a cluster that cannot answer yet (see
	// listPartitionOffsets).
	grace time.Duration
	log   *slog.Logger
	cl    *kgo.Client // never consumes: metadata and ListOffsets only
	adm   *kadm.Client
}

// rangeReaderConfig names a rangeReader's reader; see the fields of rangeReader.
type rangeReaderConfig struct {
	op, component, clientSuffix, topicSetting string
	grace                                     time.Duration
}

// newRangeReader returns the engine of a reader of topic. It does not contact the cluster.
func newRangeReader(cfg Config, topic string, rc rangeReaderConfig, log *slog.Logger) (*rangeReader, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", rc.op, err)
	}
	if topic == "" {
		return nil, fmt.Errorf("%s: no topic", rc.op)
	}
	if log == nil {
		log = slog.Default()
	}
	cl, err := kgo.NewClient(cfg.clientOpts(rc.clientSuffix)...)
	if err != nil {
		return nil, fmt.Errorf("%s: client: %w", rc.op, err)
	}
	return &rangeReader{cfg: cfg, topic: topic, op: rc.op, clientSuffix: rc.clientSuffix, topicSetting: rc.topicSetting, grace: rc.grace,
		log: log.With("component", rc.component, "topic", topic), cl: cl, adm: kadm.NewClient(cl)}, nil
}

// Close releases the shared client's connections. A read still running may fail with a
// closed-client error; its own consuming client is closed when it returns.
func (r *rangeReader) Close() { r.cl.Close() }

// listed runs a kadm offset listing for the topic and flattens it. A topic that does not exist
// is an error (after the grace) rather than an empty result, so a misspelt topic name cannot
// pass for an empty log.
func (r *rangeReader) listed(ctx context.Context, list offsetLister) (map[int32]int64, error) {
	out, err := listPartitionOffsets(ctx, r.cl, list, r.topic, r.grace)
	if r.topicSetting != "" && errors.Is(err, kerr.UnknownTopicOrPartition) {
		err = fmt.Errorf("topic %s does not exist (check %s): %w", r.topic, r.topicSetting, err)
	}
	return out, err
}

// bounds returns the oldest retained offset and the high watermark of every partition.
func (r *rangeReader) bounds(ctx context.Context) (starts, ends map[int32]int64, err error) {
	if starts, err = r.listed(ctx, r.adm.ListStartOffsets); err != nil {
		return nil, nil, fmt.Errorf("%s: start offsets of %s: %w", r.op, r.topic, err)
	}
	if ends, err = r.listed(ctx, r.adm.ListEndOffsets); err != nil {
		return nil, nil, fmt.Errorf("%s: end offsets of %s: %w", r.op, r.topic, err)
	}
	return starts, ends, nil
}

// span is one partition's remaining range in a read: next is the offset of the next record
// the read needs, to is exclusive.
type span struct {
	next, to int64
}

// done reports whether the range is read to its end.
func (s *span) done() bool { return s.next >= s.to }

// take walks a fetched partition's records through the range: records below next (seen
// already) are dropped, a record at or beyond to completes the range and ends the walk, every
// other one moves next past it and, unless it is a transaction marker, goes to fn. Offsets are
// not dense (markers, aborted records, compaction), which is why markers are fetched at all: a
// range ending in one is complete only once it was seen. take reports whether next moved; an
// error from fn ends the walk and is returned as it is.
func (s *span) take(records []*kgo.Record, fn func(*kgo.Record) error) (moved bool, err error) {
	for _, rec := range records {
		if rec.Offset < s.next {
			continue
		}
		if rec.Offset >= s.to {
			s.next, moved = s.to, true // beyond the range: drop it, the partition is complete
			break
		}
		s.next, moved = rec.Offset+1, true
		if rec.Attrs.IsControl() {
			continue
		}
		if err := fn(rec); err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// consumer returns the consuming client of one read: assigned the pending partitions at their
// next offsets, with the transaction markers kept (see span.take), plus opts.
func (r *rangeReader) consumer(pending map[int32]*span, opts ...kgo.Opt) (*kgo.Client, error) {
	assign := make(map[int32]kgo.Offset, len(pending))
	for p, s := range pending {
		assign[p] = kgo.NewOffset().At(s.next)
	}
	opts = append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: assign}),
		kgo.KeepControlRecords(),
	}, opts...)
	cl, err := kgo.NewClient(r.cfg.clientOpts(r.clientSuffix, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: consumer for %s: %w", r.op, r.topic, err)
	}
	return cl, nil
}

// endedEarly returns those of the partitions whose log now ends at or before their next
// offset, below the end of their range: a log truncated by an unclean leader election, or
// records deleted. Such a partition is done at the log's end, with a warning, instead of
// waiting for records that will never come. It asks ListOffsets rather than trusting a
// fetch's high watermark, which can lag on a leader elected a moment ago (ListOffsets refuses
// to answer in that window, KIP-207).
func (r *rangeReader) endedEarly(ctx context.Context, pending map[int32]*span, partitions []int32) ([]int32, error) {
	ends, err := r.listed(ctx, r.adm.ListEndOffsets)
	if err != nil {
		return nil, fmt.Errorf("%s: end offsets of %s: %w", r.op, r.topic, err)
	}
	var out []int32
	for _, p := range partitions {
		s := pending[p]
		if end, ok := ends[p]; !ok || end <= s.next {
			r.log.Warn("the log ends before the end of the range; read up to the log end", "partition", p, "end", end, "next", s.next, "range_end", s.to)
			out = append(out, p)
		}
	}
	return out, nil
}
