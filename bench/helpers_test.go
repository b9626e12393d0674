package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// quietLog discards everything: the benchmarks measure the code, not log I/O.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// migratedDB opens a fresh, migrated database (dropped when the benchmark ends).
func migratedDB(b *testing.B, maxConns int32) *postgres.DB {
	b.Helper()
	url := testenv.NewDatabase(b)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: maxConns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, quietLog()); err != nil {
		b.Fatal(err)
	}
	return db
}

// checkpoint flushes PostgreSQL's dirty buffers before a latency-sensitive measurement, so that
// the WAL an earlier benchmark wrote (the 500k prefill writes about 1 GB, the default
// max_wal_size) is not checkpointed in the middle of this one. It needs superuser or
// pg_checkpoint; without it the measurement runs anyway.
func checkpoint(b *testing.B, db *postgres.DB) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, "CHECKPOINT"); err != nil {
		b.Logf("CHECKPOINT before measuring: %v", err)
	}
}

// cluster is a Kafka cluster a benchmark produces to.
type cluster struct {
	name    string
	brokers []string
}

// embeddedBroker starts the in-process broker (kfake) on a free loopback port, keeping its
// log on disk in a temporary directory as `catalog serve` does under CATALOG_DATA_DIR/kafka.
func embeddedBroker(b *testing.B) cluster {
	b.Helper()
	c := testkafka.EmbeddedIn(b, b.TempDir())
	return cluster{name: c.Name, brokers: c.Brokers}
}

// realKafka returns the real broker of the environment (KAFKA_BROKERS); it skips outside CI
// when nothing answers there, or when something answers but is not a Kafka broker.
func realKafka(b *testing.B) cluster {
	b.Helper()
	brokers := testenv.KafkaBrokers(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.Ping(ctx, kafka.Config{Brokers: brokers}); err != nil {
		testenv.Unavailable(b, "Kafka at "+strings.Join(brokers, ","), err)
	}
	return cluster{name: "kafka", brokers: brokers}
}

// createTopic creates a topic unique to this run.
func createTopic(b *testing.B, c cluster, prefix string, partitions int32) string {
	b.Helper()
	name := strings.ReplaceAll(testenv.Name("bench."+prefix), "_", ".")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, kafka.Config{Brokers: c.brokers}, kafka.TopicSpec{Name: name, Partitions: partitions}); err != nil {
		b.Fatalf("create topic %s on %s: %v", name, c.name, err)
	}
	if c.name == "kafka" {
		b.Cleanup(func() { deleteTopic(c, name) })
	}
	return name
}

// deleteTopic removes a topic from the real broker so repeated runs do not fill its disk.
func deleteTopic(c cluster, topic string) {
	if os.Getenv("KEEP_BENCH_TOPICS") == "1" {
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topic)
}

// topicRecords sums the end offsets of every partition of topic: the number of records the
// broker acknowledged (topics here are fresh and never compacted or truncated).
func topicRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	offs, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if err := offs.Error(); err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// benchDetails are the details of the i-th benchmark product: about the size of a real
// listing (a 300-character description, three attributes).
func benchDetails(run string, i int) product.Details {
	d, err := product.NewDetails(
		fmt.Sprintf("BENCH-%s-%07d", run, i),
		fmt.Sprintf("Benchmark product %d, stainless steel, 500 ml", i),
		strings.Repeat("A sturdy everyday thing for the benchmark. ", 7),
		"kitchen/bottles", "Acme", int64(1000+i%5000), "EUR", int64(i%100),
		map[string]string{"color": "steel", "volume": "500ml", "material": "stainless steel"})
	if err != nil {
		panic(err)
	}
	return d
}

// runID keeps SKUs unique across benchmarks of one process.
func runID() string { return fmt.Sprintf("%x", time.Now().UnixNano()%0xffffffff) }

// durations is a sample of latencies.
type durations []time.Duration

// pct returns the p-th percentile (0..100) by nearest rank; the slice must be sorted.
func (d durations) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p/100*float64(len(d))+0.5) - 1
	i = max(0, min(i, len(d)-1))
	return d[i]
}

func (d durations) sorted() durations {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// verdict is the PASS/MISS text printed next to a figure.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// summary prints a human-readable result line on stdout, visible without -v.
func summary(b *testing.B, format string, args ...any) {
	b.Helper()
	fmt.Printf("\n=== %s: %s [load avg %s]\n", b.Name(), fmt.Sprintf(format, args...), loadAvg())
}

// loadAvg is the 1-minute load average: on a shared 2-core machine, other work running at the
// same time shows up in every figure, and this says how much there was.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + " on " + strconv.Itoa(runtime.NumCPU()) + " CPUs"
}

// noNsPerOp removes the framework's ns/op, meaningless for a fixed workload run once.
func noNsPerOp(b *testing.B) { b.ReportMetric(0, "ns/op") }
