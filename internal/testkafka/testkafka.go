// Package testkafka gives integration tests Kafka brokers to run against — the embedded
// Kafka-protocol broker and the real Kafka from `make deps` — and a reader that collects what
// reached a topic.
package testkafka

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testenv"
)

// Cluster is a Kafka cluster a test runs against.
type Cluster struct {
	// Name is "embedded" or "kafka".
	Name string
	// Brokers are its bootstrap brokers.
	Brokers []string
	// Security is how clients connect to it (nil: plaintext).
	Security *kafka.Security
}

// Config is the adapter configuration of the cluster.
func (c Cluster) Config() kafka.Config { return kafka.Config{Brokers: c.Brokers, Security: c.Security} }

// opts are the franz-go options of a test client of the cluster.
func (c Cluster) opts(extra ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.Security.Opts()...), extra...)
}

// Clusters returns the clusters every relay test must pass on: the embedded broker (started
// here) and the real Kafka broker (from the environment; skipped locally, fatal in CI when absent).
func Clusters(t *testing.T) []func(t *testing.T) Cluster {
	return []func(t *testing.T) Cluster{Embedded, Real}
}

// Embedded starts an embedded broker on a free loopback port for the test, in memory.
func Embedded(t *testing.T) Cluster { return EmbeddedIn(t, "") }

// EmbeddedIn starts an embedded broker on a free loopback port that keeps its log in dir, as
// `catalog serve` does under CATALOG_DATA_DIR/kafka; an empty dir keeps it in memory.
func EmbeddedIn(tb testing.TB, dir string) Cluster {
	tb.Helper()
	b, err := kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: testenv.Addr(tb), Dir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatalf("embedded broker: %v", err)
	}
	tb.Cleanup(b.Close)
	return Cluster{Name: "embedded", Brokers: []string{b.Addr()}}
}

// Real returns the real Kafka cluster from the environment.
func Real(t *testing.T) Cluster {
	t.Helper()
	return Cluster{Name: "kafka", Brokers: testenv.KafkaBrokers(t)}
}

// CreateTopic creates a topic unique to the test and returns its name.
func CreateTopic(t *testing.T, c Cluster, prefix string, partitions int32) string {
	t.Helper()
	name := strings.ReplaceAll(testenv.Name(prefix), "_", ".")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, c.Config(), kafka.TopicSpec{Name: name, Partitions: partitions}); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	DropOnCleanup(t, c, name)
	return name
}

// Record is one record read from a topic.
type Record struct {
	Key       string
	Value     []byte
	Headers   map[string]string
	Partition int32
	Offset    int64
}

// ReadUntil reads topic from the beginning until done(records) is true or timeout passes, and
// returns what it read.
func ReadUntil(t *testing.T, c Cluster, topic string, timeout time.Duration, done func([]Record) bool) []Record {
	t.Helper()
	cl, err := kgo.NewClient(c.opts(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []Record
	for !done(out) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			h := make(map[string]string, len(r.Headers))
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			out = append(out, Record{Key: string(r.Key), Value: r.Value, Headers: h, Partition: r.Partition, Offset: r.Offset})
		})
	}
	return out
}

// DropOnCleanup deletes the named topics when the test ends (register it before whatever
// uses them, so it runs after that has stopped): topics the service under test creates itself
// must not pile up on a shared broker run after run.
func DropOnCleanup(t *testing.T, c Cluster, names ...string) {
	t.Cleanup(func() {
		for _, n := range names {
			deleteTopic(t, c, n)
		}
	})
}

// deleteTopic removes a test's topic so runs against a shared broker do not pile up topics.
func deleteTopic(t *testing.T, c Cluster, name string) {
	cl, err := kgo.NewClient(c.opts()...)
	if err != nil {
		t.Logf("delete topic %s: %v", name, err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, name); err != nil {
		t.Logf("delete topic %s: %v", name, err)
	}
}
