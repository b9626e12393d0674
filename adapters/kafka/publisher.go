package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("kafka: publisher is closed")

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Enqueued, when set, is called with each message, in the order Publish was given them, as
	// soon as its record is in the producer's buffer: before Kafka acknowledged it, after
	// which the producer keeps its order against every record enqueued later. The relay
	// passes postgres.Dispatched here, so that a lane hands its next event over while this
	// one is still on its way (see postgres.OutboxSubscriber).
	Enqueued func(*message.Message)
	// Linger is how long a partition's first record waits for more before its batch is sent
	// (default 0: at once; while requests are in flight, records batch up anyway).
	Linger time.Duration
	// MaxBufferedRecords bounds the records buffered or in flight; Publish blocks beyond it
	// (default 100,000). Keep it above what the publishing side can have in flight at once
	// (the relay: lanes x RELAY_BATCH_SIZE), so that records of a stuck partition cannot
	// hold up the other partitions' Publish calls.
	MaxBufferedRecords int
	// DeliveryTimeout is how long a record may wait for its acknowledgement (default 30s):
	// then it fails, with the records buffered after it for its partition (franz-go keeps a
	// partition gapless), and the caller sends them again, in order. Without it the client
	// retries for ever, and a lane facing a cluster that refuses its credentials or has lost
	// a partition would wait without an error in its logs or metrics.
	DeliveryTimeout time.Duration
	// CloseTimeout bounds how long Close waits for buffered records to be acknowledged
	// before it fails them (default 10s).
	CloseTimeout time.Duration
}

func (c *PublisherConfig) setDefaults() {
	if c.MaxBufferedRecords == 0 {
		c.MaxBufferedRecords = 100_000
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 10 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c PublisherConfig) Validate() error {
	switch {
	case c.Linger < 0 || c.Linger > time.Minute:
		return fmt.Errorf("kafka: publisher linger %s is not within 0..1m", c.Linger)
	case c.MaxBufferedRecords < 1:
		return fmt.Errorf("kafka: publisher MaxBufferedRecords %d is not positive", c.MaxBufferedRecords)
	case c.DeliveryTimeout < time.Second:
		return fmt.Errorf("kafka: publisher DeliveryTimeout %s is below 1s", c.DeliveryTimeout)
	case c.CloseTimeout < 0:
		return fmt.Errorf("kafka: publisher CloseTimeout %s is negative", c.CloseTimeout)
	}
	return nil
}

// Publisher is a Watermill publisher of Kafka records (over franz-go) that keeps many records
// in flight: Publish enqueues its messages in order and then waits for their acknowledgements,
// so concurrent Publish calls share batches and requests instead of waiting for each other.
// watermill-kafka's publisher wraps Sarama's SyncProducer, which sends one request and waits
// for it before the next: a relay lane could then never have more than one event in flight.
//
// It writes the records watermill-kafka's publisher writes with kafka.NewPublisher's
// marshaler, so consumers see no difference: key = PartitionKey (the aggregate id), value =
// payload, headers = the message UUID (watermill-kafka's header) and the metadata; partitions
// are chosen by Sarama's default hash partitioner (FNV-1a), so a product stays on the
// partition its earlier events went to. Acks come from all in-sync replicas, and the producer
// is idempotent: a retried request can neither duplicate nor reorder records of a partition.
// Publish returns only once every message was acknowledged, or with the first error.
type Publisher struct {
	cl  *kgo.Client
	pc  PublisherConfig
	log *slog.Logger

	mu     sync.RWMutex // held for reading while a Publish enqueues; Close takes it to stop new ones
	closed bool
	once   sync.Once
}

// NewPipelinedPublisher returns a Publisher connected to cfg.Brokers with cfg.Security's TLS
// and SASL. It does not contact the cluster.
func NewPipelinedPublisher(cfg Config, pc PublisherConfig, log *slog.Logger) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc.setDefaults()
	if err := pc.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cl, err := kgo.NewClient(cfg.clientOpts("",
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default, and what idempotence needs: stated, not assumed
		kgo.RecordPartitioner(saramaPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), // as the Sarama producer it replaces
		kgo.ProducerLinger(pc.Linger),
		kgo.MaxBufferedRecords(pc.MaxBufferedRecords),
		// A batch's records expire with its first, which may have lingered.
		kgo.RecordDeliveryTimeout(pc.DeliveryTimeout+pc.Linger),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: publisher for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	return &Publisher{cl: cl, pc: pc, log: log.With("component", "kafka-publisher")}, nil
}

// saramaPartitioner chooses partitions as Sarama's default partitioner does (the relay's
// producer before it was pipelined), so every producer of the catalog (relay, DLQ, replay)
// puts a product's records on the partition its earlier events went to.
func saramaPartitioner() kgo.Partitioner {
	return kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv32a))
}

// fnv32a is the hash of Sarama's default partitioner (FNV-1a, 32 bits), without hash/fnv's
// allocation per record.
func fnv32a(b []byte) uint32 {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for _, c := range b {
		h ^= uint32(c)
		h *= prime32
	}
	return h
}

// Publish sends msgs to topic and returns when Kafka acknowledged all of them, or with the
// first error. Records are enqueued in the order given; a message whose context ends before
// its acknowledgement arrives returns the context's error (the record may still be written:
// the caller retries it, which is at-least-once).
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	results := make(chan error, len(msgs))
	promise := func(_ *kgo.Record, err error) { results <- err }
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrPublisherClosed
	}
	for _, m := range msgs {
		rec, err := record(topic, m)
		if err != nil {
			results <- err
			continue
		}
		// The record is not tied to the message's context: once buffered it is sent or
		// failed by the client, and failing one record fails the records after it in its
		// batch, which may belong to other callers.
		p.cl.Produce(context.Background(), rec, promise)
		if p.pc.Enqueued != nil {
			p.pc.Enqueued(m)
		}
	}
	p.mu.RUnlock()
	done := msgs[0].Context().Done()
	var first error
	for range msgs {
		select {
		case err := <-results:
			if err != nil && first == nil {
				first = fmt.Errorf("kafka: publish to %s: %w", topic, err)
			}
		case <-done:
			return fmt.Errorf("kafka: publish to %s: %w", topic, context.Cause(msgs[0].Context()))
		}
	}
	return first
}

// record is the Kafka record of msg, as watermill-kafka's publisher writes it.
func record(topic string, msg *message.Message) (*kgo.Record, error) {
	key, err := PartitionKey(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("kafka: partition key of %s: %w", msg.UUID, err)
	}
	headers := make([]kgo.RecordHeader, 0, len(msg.Metadata)+1)
	headers = append(headers, kgo.RecordHeader{Key: watermillUUIDHeader, Value: bytesOf(msg.UUID)})
	for k, v := range msg.Metadata {
		headers = append(headers, kgo.RecordHeader{Key: k, Value: bytesOf(v)})
	}
	return &kgo.Record{Topic: topic, Key: bytesOf(key), Value: msg.Payload, Headers: headers}, nil
}

// bytesOf is the bytes of s without a copy. The client only reads a record's key and header
// values (it encodes them into its requests), so sharing the string's memory is safe, and it
// saves the relay an allocation per header per event.
// An empty string stays an empty (not a null) value, as []byte(s) would be.
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// Close stops accepting messages, waits (at most CloseTimeout) for the records in flight to be
// acknowledged and closes the client; records still unacknowledged then fail, and their
// Publish calls return the error.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.pc.CloseTimeout)
		defer cancel()
		if err := p.cl.Flush(ctx); err != nil {
			p.log.Warn("kafka: records still unacknowledged at close; they fail and are sent again by their caller", "err", err)
		}
		p.cl.Close()
	})
	return nil
}
