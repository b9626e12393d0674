package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedBroker is an in-process Kafka-protocol broker (franz-go's kfake). It speaks the real
// protocol, so the relay, the projector and ordinary Kafka tools work against it unchanged,
// but it keeps every record in memory: a restart loses the log. It is for laptops and demos.
type EmbeddedBroker struct {
	cluster *kfake.Cluster
	addr    string
}

// StartEmbeddedBroker listens on addr (host:port) with the given topics created.
func StartEmbeddedBroker(addr string, log *slog.Logger, topics ...TopicSpec) (*EmbeddedBroker, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: EMBEDDED_KAFKA_ADDR %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("kafka: EMBEDDED_KAFKA_ADDR %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(12),
	}
	for _, t := range topics {
		opts = append(opts, kfake.SeedTopics(t.Partitions, t.Name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: embedded broker on %s: %w", addr, err)
	}
	log.Warn("EMBEDDED KAFKA BROKER: events are kept IN MEMORY ONLY and are lost when this process stops; set KAFKA_BROKERS for a real cluster",
		"addr", addr)
	return &EmbeddedBroker{cluster: c, addr: addr}, nil
}

// Addr is the broker's address, to use as KAFKA_BROKERS.
func (b *EmbeddedBroker) Addr() string { return b.addr }

// Close stops the broker.
func (b *EmbeddedBroker) Close() { b.cluster.Close() }
