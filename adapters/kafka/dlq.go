package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/ops"
)

// DLQ reads are bounded in time as well as in offsets: a partition that stops delivering
// records below the end captured at the start (a truncated log, a broker gone quiet) is
// re-checked after dlqIdleCheck and given up with an error after dlqIdleLimit, so an
// operator's command never hangs.
const (
	dlqIdleCheck = 2 * time.Second
	dlqIdleLimit = 30 * time.Second
	dlqPollWait  = 500 * time.Millisecond
	// dlqSinceSlack widens a --since lookup by record timestamp: dlq_failed_at is stamped by
	// the projector's clock before the record's timestamp exists, and the two clocks may differ.
	dlqSinceSlack = 5 * time.Minute
	// dlqUnknownTopicGrace is how long an offset listing waits for a topic created a moment
	// ago to become known to the broker.
	dlqUnknownTopicGrace = 2 * time.Second
)

// DLQReader reads the dead-letter topic straight from its partitions, without a consumer
// group: reading never commits, rebalances or disturbs anything. Every read covers the topic
// from its start (or from the first record at --since) up to the end offsets captured when
// the read starts. It implements ops.DLQReader.
type DLQReader struct {
	rr *rangeReader
}

var _ ops.DLQReader = (*DLQReader)(nil)

// NewDLQReader returns a reader of the DLQ topic. It does not contact the cluster.
func NewDLQReader(cfg Config, topic string, log *slog.Logger) (*DLQReader, error) {
	rr, err := newRangeReader(cfg, topic, rangeReaderConfig{op: "dlq reader", component: "dlq-reader", clientSuffix: "-dlq",
		topicSetting: "DLQ_TOPIC", grace: dlqUnknownTopicGrace}, log)
	if err != nil {
		return nil, err
	}
	return &DLQReader{rr: rr}, nil
}

// Close releases the reader's connections.
func (r *DLQReader) Close() { r.rr.Close() }

// DLQTopic names the topic read.
func (r *DLQReader) DLQTopic() string { return r.rr.topic }

// ScanDLQ calls fn with every record of the topic up to the end offsets of this moment, in
// offset order within each partition (partitions interleave). A non-zero since starts each
// partition at its first record written a few minutes before since, by record timestamp.
// An error from fn stops the scan and is returned wrapped.
func (r *DLQReader) ScanDLQ(ctx context.Context, since time.Time, fn func(ops.DLQMessage) error) error {
	starts, ends, err := r.rr.bounds(ctx)
	if err != nil {
		return err
	}
	if !since.IsZero() {
		after, err := r.rr.listed(ctx, func(ctx context.Context, topics ...string) (kadm.ListedOffsets, error) {
			return r.rr.adm.ListOffsetsAfterMilli(ctx, since.Add(-dlqSinceSlack).UnixMilli(), topics...)
		})
		if err != nil {
			return fmt.Errorf("dlq reader: offsets of %s after %s: %w", r.rr.topic, since.Format(time.RFC3339), err)
		}
		for p, o := range after {
			if o >= 0 && o > starts[p] {
				starts[p] = o
			}
		}
	}
	pending := map[int32]*span{}
	for p, end := range ends {
		if starts[p] < end {
			pending[p] = &span{next: starts[p], to: end}
		}
	}
	return r.read(ctx, pending, func(rec *kgo.Record) error { return fn(dlqMessage(rec)) })
}

// GetDLQ returns the message at ref, or an error wrapping ops.ErrDLQMessageNotFound when the
// partition has no record at that offset (never written, deleted by retention, compacted).
func (r *DLQReader) GetDLQ(ctx context.Context, ref ops.DLQRef) (ops.DLQMessage, error) {
	starts, ends, err := r.rr.bounds(ctx)
	if err != nil {
		return ops.DLQMessage{}, err
	}
	topic := r.rr.topic
	end, ok := ends[ref.Partition]
	if !ok {
		return ops.DLQMessage{}, fmt.Errorf("dlq reader: %s has no partition %d (it has %d): %w", topic, ref.Partition, len(ends), ops.ErrDLQMessageNotFound)
	}
	if start := starts[ref.Partition]; start >= end {
		return ops.DLQMessage{}, fmt.Errorf("dlq reader: %s partition %d is empty: %w", topic, ref.Partition, ops.ErrDLQMessageNotFound)
	}
	if ref.Offset < starts[ref.Partition] || ref.Offset >= end {
		return ops.DLQMessage{}, fmt.Errorf("dlq reader: %s partition %d holds offsets %d to %d, not %d: %w",
			topic, ref.Partition, starts[ref.Partition], end-1, ref.Offset, ops.ErrDLQMessageNotFound)
	}
	var found *kgo.Record
	errFound := errors.New("found")
	err = r.read(ctx, map[int32]*span{ref.Partition: {next: ref.Offset, to: ref.Offset + 1}}, func(rec *kgo.Record) error {
		found = rec
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return ops.DLQMessage{}, err
	}
	if found == nil {
		return ops.DLQMessage{}, fmt.Errorf("dlq reader: %s partition %d has no record at offset %d: %w", topic, ref.Partition, ref.Offset, ops.ErrDLQMessageNotFound)
	}
	return dlqMessage(found), nil
}

// read consumes every pending span and calls fn with each data record in it. It reads what
// is there, uncommitted records included, and continues from the log start past records
// deleted by retention under the read: an operator wants to see every dead letter.
func (r *DLQReader) read(ctx context.Context, pending map[int32]*span, fn func(*kgo.Record) error) error {
	if len(pending) == 0 {
		return nil
	}
	topic := r.rr.topic
	cl, err := r.rr.consumer(pending,
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(dlqPollWait),
		kgo.FetchMaxBytes(16<<20),
		kgo.FetchMaxPartitionBytes(4<<20),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	lastProgress := time.Now()
	for len(pending) > 0 {
		pctx, cancel := context.WithTimeout(ctx, dlqPollWait*2)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dlq reader: read %s: %w", topic, err)
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue // the poll's own timeout
			}
			return fmt.Errorf("dlq reader: read %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var ferr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			s := pending[fp.Partition]
			if s == nil || fp.Topic != topic || ferr != nil {
				return
			}
			moved, err := s.take(fp.Records, fn)
			if moved {
				lastProgress = time.Now()
			}
			if ferr = err; ferr == nil && s.done() {
				delete(pending, fp.Partition)
			}
		})
		if ferr != nil {
			return fmt.Errorf("dlq reader: read %s: %w", topic, ferr)
		}
		if len(pending) == 0 || time.Since(lastProgress) < dlqIdleCheck {
			continue
		}
		// Nothing arrived for a while: a partition whose log now ends before the captured end
		// offset is done at its end.
		ended, err := r.rr.endedEarly(ctx, pending, slices.Collect(maps.Keys(pending)))
		if err != nil {
			return err
		}
		for _, p := range ended {
			delete(pending, p)
		}
		if len(pending) > 0 && time.Since(lastProgress) > dlqIdleLimit {
			parts := slices.Sorted(maps.Keys(pending))
			return fmt.Errorf("dlq reader: read %s: no records for %s from partitions %v below their end offsets", topic, dlqIdleLimit, parts)
		}
	}
	return nil
}

// dlqMessage decodes a DLQ record.
func dlqMessage(rec *kgo.Record) ops.DLQMessage {
	headers := make([]ops.DLQHeader, len(rec.Headers))
	for i, h := range rec.Headers {
		headers[i] = ops.DLQHeader{Key: h.Key, Value: string(h.Value)}
	}
	return ops.NewDLQMessage(ops.DLQRef{Partition: rec.Partition, Offset: rec.Offset}, string(rec.Key), rec.Timestamp.UTC(), headers, rec.Value)
}

// ReplayPublisher writes replayed DLQ messages back to the events topic with the relay's
// guarantees: acks from all in-sync replicas and the idempotent producer (franz-go's
// defaults, set explicitly here), and the relay's partitioning: Sarama's FNV-1a hash of the
// key, so a replayed event lands on the partition of its product's live events. It
// implements ops.ReplayPublisher.
type ReplayPublisher struct {
	topic string
	cl    *kgo.Client
}

var _ ops.ReplayPublisher = (*ReplayPublisher)(nil)

// NewReplayPublisher returns a publisher to topic (PRODUCT_EVENTS_TOPIC). It does not
// contact the cluster.
func NewReplayPublisher(cfg Config, topic string) (*ReplayPublisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("replay publisher: %w", err)
	}
	if topic == "" {
		return nil, errors.New("replay publisher: no topic")
	}
	cl, err := kgo.NewClient(cfg.clientOpts("-dlq-replay",
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(saramaPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("replay publisher: client: %w", err)
	}
	return &ReplayPublisher{topic: topic, cl: cl}, nil
}

// TargetTopic names the events topic.
func (p *ReplayPublisher) TargetTopic() string { return p.topic }

// PublishReplay writes msg and waits for the acknowledgement of all in-sync replicas.
func (p *ReplayPublisher) PublishReplay(ctx context.Context, msg ops.ReplayMessage) (ops.ReplayTarget, error) {
	rec := &kgo.Record{Topic: p.topic, Value: msg.Payload}
	if msg.Key != "" {
		rec.Key = []byte(msg.Key)
	}
	for _, h := range msg.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	if err := p.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return ops.ReplayTarget{}, fmt.Errorf("replay publisher: produce to %s: %w", p.topic, err)
	}
	return ops.ReplayTarget{Partition: rec.Partition, Offset: rec.Offset}, nil
}

// Close flushes nothing (every publish is synchronous) and releases the connections.
func (p *ReplayPublisher) Close() { p.cl.Close() }

// Headers the DLQ publisher adds to a dead letter whose payload it had to cut to fit the
// topic. They start with dlq_, so a replay strips them; the DLQ tooling refuses to replay a
// cut payload (application/ops repeats these names, and a component test checks both agree).
const (
	// HeaderPayloadTruncated is "true" on a dead letter whose payload was cut.
	HeaderPayloadTruncated = "dlq_payload_truncated"
	// HeaderPayloadBytes is the size of the original payload in bytes.
	HeaderPayloadBytes = "dlq_payload_bytes"
	// HeaderPayloadCutBytes is how many bytes of the payload were cut off its end.
	HeaderPayloadCutBytes = "dlq_payload_cut_bytes"
	// HeaderTruncationReason says why the payload was cut.
	HeaderTruncationReason = "dlq_truncation_reason"
)

// DefaultDLQMaxRecordBytes is the largest dead letter the DLQ publisher writes as it is: below
// franz-go's default batch cap (1,000,012 bytes, which Kafka's default max.message.bytes of
// 1,048,588 accepts) with room for the record's framing.
const DefaultDLQMaxRecordBytes = 990_000

// dlqHeaderValueCap bounds every header value of a dead letter the broker refused even with
// its payload cut: only an absurd header (a multi-megabyte error text) gets there.
const dlqHeaderValueCap = 1024

// DLQPublisherConfig configures a DLQPublisher.
type DLQPublisherConfig struct {
	// MaxRecordBytes is the largest record (key, headers and payload) written as it is; a
	// larger one keeps its key and headers and has its payload cut to fit, with headers that
	// say so. Default DefaultDLQMaxRecordBytes.
	MaxRecordBytes int
	// DeliveryTimeout bounds one publish, the client's retries included (default 30s).
	DeliveryTimeout time.Duration
}

func (c *DLQPublisherConfig) setDefaults() {
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultDLQMaxRecordBytes
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c DLQPublisherConfig) Validate() error {
	if c.MaxRecordBytes < 4096 || c.MaxRecordBytes > DefaultDLQMaxRecordBytes {
		return fmt.Errorf("dlq publisher: MaxRecordBytes %d: want 4096..%d", c.MaxRecordBytes, DefaultDLQMaxRecordBytes)
	}
	if c.DeliveryTimeout <= 0 {
		return fmt.Errorf("dlq publisher: DeliveryTimeout %s is not positive", c.DeliveryTimeout)
	}
	return nil
}

// DLQPublisher is the Watermill publisher of the dead-letter topic. Unlike the events
// publisher it keeps what the record looked like on the events topic: its key (the product
// id, from the concurrent subscriber's context; the aggregate_id header otherwise), so a DLQ
// message still names its product when its payload is garbage and a replay lands on the
// product's partition; and it never refuses a dead letter for its size: a payload that cannot
// fit the topic is cut, with headers saying why and by how much, so the record reaches the
// DLQ once and its partition moves on, instead of failing the publish forever. Writes use the
// relay's guarantees (acks from all in-sync replicas, idempotent producer) and its
// partitioner (Sarama's FNV-1a of the key), so one product's dead letters stay in order.
type DLQPublisher struct {
	cfg DLQPublisherConfig
	cl  *kgo.Client
	log *slog.Logger
}

var _ message.Publisher = (*DLQPublisher)(nil)

// NewDLQPublisher returns the DLQ publisher. It does not contact the cluster.
func NewDLQPublisher(cfg Config, pc DLQPublisherConfig, log *slog.Logger) (*DLQPublisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dlq publisher: %w", err)
	}
	pc.setDefaults()
	if err := pc.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cl, err := kgo.NewClient(cfg.clientOpts("-dlq-publisher",
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(saramaPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(pc.DeliveryTimeout),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dlq publisher: client: %w", err)
	}
	return &DLQPublisher{cfg: pc, cl: cl, log: log.With("component", "dlq-publisher")}, nil
}

// Publish writes each message to topic and returns once the cluster acknowledged it. A
// message too large for the topic is written with its payload cut (see DLQPublisher).
func (p *DLQPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		if err := p.publish(topic, msg); err != nil {
			return err
		}
	}
	return nil
}

// publish tries the message within MaxRecordBytes; should the broker still refuse it as too
// large (a topic with a smaller max.message.bytes), it tries again with an eighth of the
// room, then with no payload at all and every header value capped.
func (p *DLQPublisher) publish(topic string, msg *message.Message) error {
	ctx := msg.Context()
	limits := []int{p.cfg.MaxRecordBytes, p.cfg.MaxRecordBytes / 8, 0}
	var err error
	for i, limit := range limits {
		rec, cut := dlqRecord(topic, msg, limit, i > 0)
		if err = p.cl.ProduceSync(ctx, rec).FirstErr(); err == nil {
			if cut {
				p.log.Warn("dead letter too large for the DLQ topic: written with its payload cut",
					"topic", topic, "partition", rec.Partition, "offset", rec.Offset, "payload_bytes", len(msg.Payload),
					"written_bytes", len(rec.Value))
			}
			return nil
		}
		if !errors.Is(err, kerr.MessageTooLarge) && !errors.Is(err, kerr.RecordListTooLarge) {
			break
		}
	}
	return fmt.Errorf("dlq publisher: produce to %s: %w", topic, err)
}

// dlqRecord builds the record of msg: its original key, its metadata as headers (plus the
// message UUID, as watermill-kafka's marshaler writes it) and its payload, cut so that the
// record stays within limit bytes; cut reports whether it had to be. refused says the broker
// refused a larger attempt.
func dlqRecord(topic string, msg *message.Message, limit int, refused bool) (rec *kgo.Record, cut bool) {
	rec = &kgo.Record{Topic: topic, Value: msg.Payload}
	if key, ok := KeyFromContext(msg.Context()); ok && len(key) > 0 {
		rec.Key = key
	} else if id := msg.Metadata.Get(envelope.MetaAggregateID); id != "" {
		rec.Key = []byte(id)
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: watermillUUIDHeader, Value: []byte(msg.UUID)})
	for _, k := range slices.Sorted(maps.Keys(msg.Metadata)) {
		v := msg.Metadata[k]
		if limit == 0 && len(v) > dlqHeaderValueCap {
			v = v[:dlqHeaderValueCap]
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	size := func() int {
		n := len(rec.Key) + len(rec.Value)
		for _, h := range rec.Headers {
			n += len(h.Key) + len(h.Value) + 8 // and their length prefixes
		}
		return n + 64 // the record's own framing
	}
	if size() <= limit {
		return rec, false
	}
	full := len(msg.Payload)
	reason := fmt.Sprintf("the record (%d bytes with key and headers) exceeds the DLQ record limit of %d bytes", size(), limit)
	if refused {
		reason = fmt.Sprintf("the broker refused the record as too large (MESSAGE_TOO_LARGE); retried within %d bytes", limit)
	}
	// The truncation headers take their room before the payload budget is worked out; the
	// numbers are written at their final width (the cut count is at most the full size).
	width := len(strconv.Itoa(full))
	rec.Value = nil
	rec.Headers = append(rec.Headers,
		kgo.RecordHeader{Key: HeaderPayloadTruncated, Value: []byte("true")},
		kgo.RecordHeader{Key: HeaderPayloadBytes, Value: []byte(strconv.Itoa(full))},
		kgo.RecordHeader{Key: HeaderPayloadCutBytes, Value: make([]byte, width)},
		kgo.RecordHeader{Key: HeaderTruncationReason, Value: []byte(reason)},
	)
	keep := max(min(limit-size(), full), 0)
	rec.Value = msg.Payload[:keep]
	rec.Headers[len(rec.Headers)-2].Value = []byte(strconv.Itoa(full - keep))
	return rec, true
}

// Close releases the connections; every publish has finished (they are synchronous).
func (p *DLQPublisher) Close() error {
	p.cl.Close()
	return nil
}
