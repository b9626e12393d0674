package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/marketplace/catalog/adapters/datadir"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// Addr is the host:port the broker listens on (EMBEDDED_KAFKA_ADDR).
	Addr string
	// Dir is where the broker keeps its log, topics and consumer-group offsets
	// (CATALOG_DATA_DIR/kafka). Empty keeps everything in memory: a restart then loses every
	// event the relay handed over but the projector had not yet written, which only tests and
	// benchmarks accept.
	Dir string
	// RetentionCheck is how often records older than the topic retention (Kafka's default,
	// seven days) are dropped from the log. Default one hour.
	RetentionCheck time.Duration
}

func (c *EmbeddedConfig) setDefaults() {
	if c.RetentionCheck <= 0 {
		c.RetentionCheck = time.Hour
	}
}

// Validate reports a configuration the broker cannot start with.
func (c EmbeddedConfig) Validate() error {
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("EMBEDDED_KAFKA_ADDR %q: %w", c.Addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("EMBEDDED_KAFKA_ADDR %q: bad port", c.Addr)
	}
	return nil
}

// EmbeddedBroker is an in-process Kafka-protocol broker (franz-go's kfake). It speaks the real
// protocol, so the relay, the projector and ordinary Kafka tools work against it unchanged.
// With a Dir it keeps its log and consumer offsets on disk, so events the relay has handed
// over survive a crash of the process (SIGKILL included: the writes are in the page cache;
// a power cut can lose the last unflushed ones). It is for laptops and single-machine shops.
type EmbeddedBroker struct {
	cluster *kfake.Cluster
	addr    string
	lock    *datadir.Lock
	stop    chan struct{}
	done    sync.WaitGroup
	once    sync.Once
}

// StartEmbeddedBroker listens on cfg.Addr with the given topics created (on a first start;
// a broker reloaded from cfg.Dir keeps the topics it had).
func StartEmbeddedBroker(cfg EmbeddedConfig, log *slog.Logger, topics ...TopicSpec) (*EmbeddedBroker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: embedded broker: %w", err)
	}
	host, portStr, _ := net.SplitHostPort(cfg.Addr)
	port, _ := strconv.Atoi(portStr)
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
	var lock *datadir.Lock
	if cfg.Dir != "" {
		// The lock comes before the broker reads the directory: a second process must not
		// load, let alone write, a log another broker is appending to.
		l, err := datadir.Acquire(cfg.Dir, "embedded broker data directory")
		if err != nil {
			return nil, fmt.Errorf("kafka: embedded broker: %w", err)
		}
		lock = l
		opts = append(opts, kfake.DataDir(cfg.Dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		_ = lock.Release()
		return nil, fmt.Errorf("kafka: embedded broker on %s: %w", cfg.Addr, err)
	}
	b := &EmbeddedBroker{cluster: c, addr: cfg.Addr, lock: lock, stop: make(chan struct{})}
	if cfg.Dir == "" {
		log.Warn("EMBEDDED KAFKA BROKER: events are kept IN MEMORY ONLY and are lost when this process stops; set KAFKA_BROKERS for a real cluster",
			"addr", cfg.Addr)
		return b, nil
	}
	log.Warn("EMBEDDED KAFKA BROKER: a single in-process broker without replication keeps events on local disk; set KAFKA_BROKERS for a real cluster",
		"addr", cfg.Addr, "dir", cfg.Dir)
	b.done.Add(1)
	go b.enforceRetention(cfg.RetentionCheck)
	return b, nil
}

// enforceRetention drops expired records: kfake applies retention only when asked.
func (b *EmbeddedBroker) enforceRetention(every time.Duration) {
	defer b.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.cluster.ApplyRetention()
		}
	}
}

// Addr is the broker's address, to use as KAFKA_BROKERS.
func (b *EmbeddedBroker) Addr() string { return b.addr }

// Close stops the broker, saves its state and releases the data directory.
func (b *EmbeddedBroker) Close() {
	b.once.Do(func() {
		close(b.stop)
		b.done.Wait()
		b.cluster.Close()
		// A failed release needs no handling: the kernel frees the lock with the process.
		_ = b.lock.Release()
	})
}
