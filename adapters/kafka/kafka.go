// Package kafka connects the catalog to Kafka: the relay's producer (watermill-kafka/v3 over
// Sarama, configured not to lose acknowledged events), topic administration, and an embedded
// Kafka-protocol broker for a laptop or a small shop that has nothing but PostgreSQL.
package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/api/envelope"
)

// Config configures the Kafka clients.
type Config struct {
	// Brokers are the bootstrap brokers (KAFKA_BROKERS, comma-separated).
	Brokers []string
	// ClientID names the service in broker logs and quotas.
	ClientID string
	// Version is the Kafka protocol version Sarama speaks; 3.6 works with Kafka 3.x and 4.x.
	Version sarama.KafkaVersion
	// DialTimeout bounds connecting to a broker.
	DialTimeout time.Duration
	// Security is TLS and SASL for every client built from this Config (nil: plaintext).
	Security *Security
}

// clientOpts are the options every franz-go client of the catalog starts from: the brokers,
// its client id (ClientID and suffix), the dial timeout and the security settings, so no
// client can forget the credentials.
func (c Config) clientOpts(suffix string, extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID + suffix),
		kgo.DialTimeout(c.DialTimeout),
	}
	opts = append(opts, c.Security.Opts()...)
	return append(opts, extra...)
}

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = "catalog"
	}
	if c.Version == (sarama.KafkaVersion{}) {
		c.Version = sarama.V3_6_0_0
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" || !strings.Contains(b, ":") {
			return fmt.Errorf("kafka: broker %q is not host:port", b)
		}
	}
	return nil
}

// ProducerConfig is the Sarama configuration of every catalog producer. watermill-kafka's
// default waits for the leader only and is not idempotent; an event the relay has acked must
// survive a leader failover and a retried send must not be written twice, so this asks for
// acks from all in-sync replicas and the idempotent producer (which needs one in-flight
// request per connection).
func (c Config) ProducerConfig() *sarama.Config {
	c.setDefaults()
	sc := wkafka.DefaultSaramaSyncPublisherConfig()
	sc.ClientID = c.ClientID
	sc.Version = c.Version
	sc.Net.DialTimeout = c.DialTimeout
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Metadata.Retry.Backoff = 500 * time.Millisecond
	c.Security.ApplySarama(sc)
	return sc
}

// NewPublisher returns the Watermill Kafka publisher of product events. The partition key is
// the aggregate id, so one product's events land on one partition.
func NewPublisher(cfg Config, log *slog.Logger) (*wkafka.Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers:               cfg.Brokers,
		Marshaler:             wkafka.NewWithPartitioningMarshaler(PartitionKey),
		OverwriteSaramaConfig: cfg.ProducerConfig(),
	}, watermill.NewSlogLogger(log.With("component", "kafka-publisher")))
	if err != nil {
		return nil, fmt.Errorf("kafka: publisher for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	return pub, nil
}

// PartitionKey is the aggregate id of an event message.
func PartitionKey(_ string, msg *message.Message) (string, error) {
	if id := msg.Metadata.Get(envelope.MetaAggregateID); id != "" {
		return id, nil
	}
	return msg.UUID, nil // not a product event; any stable key will do
}

// ParseBrokers splits KAFKA_BROKERS.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// SubscriberConfig configures a consumer-group subscriber.
type SubscriberConfig struct {
	// ConsumerGroup is the Kafka consumer group (catalog-projector for the projector).
	ConsumerGroup string
	// FromOldest starts a group without committed offsets at the beginning of the topic, so a
	// new projector builds the read model from all retained events.
	FromOldest bool
	// NackResendSleep is the wait before a nacked message is delivered again.
	NackResendSleep time.Duration
}

// NewSubscriber returns a Watermill Kafka subscriber in a consumer group. Offsets are committed
// only for acked messages, and a message is acked only after the handler finished with it.
func NewSubscriber(cfg Config, sc SubscriberConfig, log *slog.Logger) (*wkafka.Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sc.ConsumerGroup == "" {
		return nil, errors.New("kafka: subscriber needs a consumer group")
	}
	if sc.NackResendSleep == 0 {
		sc.NackResendSleep = 500 * time.Millisecond
	}
	saramaCfg := wkafka.DefaultSaramaSubscriberConfig()
	saramaCfg.ClientID = cfg.ClientID
	saramaCfg.Version = cfg.Version
	saramaCfg.Net.DialTimeout = cfg.DialTimeout
	if sc.FromOldest {
		saramaCfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	}
	saramaCfg.Consumer.Fetch.Default = 1 << 20
	saramaCfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	saramaCfg.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	cfg.Security.ApplySarama(saramaCfg)
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               cfg.Brokers,
		Unmarshaler:           wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: saramaCfg,
		ConsumerGroup:         sc.ConsumerGroup,
		NackResendSleep:       sc.NackResendSleep,
		ReconnectRetrySleep:   time.Second,
	}, watermill.NewSlogLoggerWithLevelMapping(log.With("component", "kafka-subscriber"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}))
	if err != nil {
		return nil, fmt.Errorf("kafka: subscriber for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	return sub, nil
}
