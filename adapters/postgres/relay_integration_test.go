package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// migratedDB opens a fresh, migrated database for one test.
func migratedDB(t *testing.T) (*postgres.DB, string) {
	t.Helper()
	url := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, quietLog()); err != nil {
		t.Fatal(err)
	}
	return db, url
}

func details(t testing.TB, sku string, amount int64) product.Details {
	t.Helper()
	d, err := product.NewDetails(sku, "Thing "+sku, "desc", "cat", "brand", amount, "EUR", 5, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeLoad runs writers that create and update products, each holding its transaction open for
// a random few milliseconds after its outbox row got a transaction id, so commit order differs
// from transaction-id order: the case where a naive relay skips rows. It returns the ids of
// every event of a committed transaction.
func writeLoad(t *testing.T, db *postgres.DB, topic string, writers, opsPerWriter int) map[string]bool {
	t.Helper()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{
		Topic: topic,
		Decorate: func(context.Context, *message.Message) {
			time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
		},
	}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	committed := map[string]bool{}
	record := func(p *product.Product, fromVersion int64) {
		mu.Lock()
		defer mu.Unlock()
		// The events of a committed write are those of its versions; their ids are checked
		// against Kafka by (aggregate id, version), which identifies an event uniquely.
		for v := fromVersion; v <= p.Version(); v++ {
			committed[fmt.Sprintf("%s@%d", p.ID(), v)] = true
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < opsPerWriter; i++ {
				now := time.Now()
				p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("W%d-%d", w, i), 100), now)
				if err != nil {
					t.Error(err)
					return
				}
				stored, _, err := repo.Add(ctx, p, nil)
				if err != nil {
					t.Errorf("add: %v", err)
					return
				}
				record(stored, 1)
				updated, err := repo.Update(ctx, stored.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
					return p, p.ChangePrice(mustMoney(t, int64(200+i)), time.Now())
				})
				if err != nil {
					t.Errorf("update: %v", err)
					return
				}
				record(updated, 2)
			}
		}()
	}
	wg.Wait()
	return committed
}

func mustMoney(t testing.TB, amount int64) product.Money {
	m, err := product.NewMoney(amount, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// awaitEvents reads the topic until every committed event is there and reports duplicates.
func awaitEvents(t *testing.T, c testkafka.Cluster, topic string, committed map[string]bool, timeout time.Duration) (dups int) {
	t.Helper()
	seen := map[string]int{}
	missing := func() int {
		n := 0
		for k := range committed {
			if seen[k] == 0 {
				n++
			}
		}
		return n
	}
	read := 0
	testkafka.ReadUntil(t, c, topic, timeout, func(rs []testkafka.Record) bool {
		for _, r := range rs[read:] {
			ev, err := envelope.Unmarshal(r.Value)
			if err != nil {
				t.Errorf("record %d/%d is not an event: %v", r.Partition, r.Offset, err)
				continue
			}
			if r.Key != ev.AggregateID.String() {
				t.Errorf("record key %q, want aggregate id %s", r.Key, ev.AggregateID)
			}
			seen[fmt.Sprintf("%s@%d", ev.AggregateID, ev.AggregateVersion)]++
		}
		read = len(rs)
		return missing() == 0
	})
	if m := missing(); m > 0 {
		t.Fatalf("%d of %d committed events never reached %s (read %d records)", m, len(committed), topic, read)
	}
	for k, n := range seen {
		if !committed[k] {
			t.Errorf("event %s on the topic was never committed", k)
		}
		if n > 1 {
			dups += n - 1
		}
	}
	return dups
}

func startRelay(t *testing.T, ctx context.Context, db *postgres.DB, c testkafka.Cluster, cfg postgres.RelayConfig) <-chan error {
	t.Helper()
	return startRelayWith(t, ctx, db, relayPublisher(t, c), cfg)
}

// relayPublisher is the relay's producer as wiring builds it: pipelined, telling the outbox
// subscriber when each event was enqueued.
func relayPublisher(t *testing.T, c testkafka.Cluster) *kafka.Publisher {
	t.Helper()
	pub, err := kafka.NewPipelinedPublisher(kafka.Config{Brokers: c.Brokers}, kafka.PublisherConfig{Enqueued: postgres.Dispatched}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// startRelayWith runs a relay publishing to pub until ctx ends; the channel gets Run's result.
func startRelayWith(t *testing.T, ctx context.Context, db *postgres.DB, pub message.Publisher, cfg postgres.RelayConfig) <-chan error {
	t.Helper()
	relay, err := postgres.NewRelay(db, pub, cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	return done
}

// TestRelay64ConcurrentWritersLoseNothing: 64 writers with jittered commit times, two relays
// running at once, every committed event reaches the topic with the aggregate id as key.
func TestRelay64ConcurrentWritersLoseNothing(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		db, _ := migratedDB(t)
		topic := testkafka.CreateTopic(t, c, "relay", 12)
		ctx, cancel := context.WithCancel(context.Background())
		cfg := postgres.RelayConfig{PollInterval: 50 * time.Millisecond, BatchSize: 200}
		r1 := startRelay(t, ctx, db, c, cfg)
		r2 := startRelay(t, ctx, db, c, cfg) // a second relay: lanes must not be owned twice
		committed := writeLoad(t, db, topic, 64, 10)
		dups := awaitEvents(t, c, topic, committed, 90*time.Second)
		// Everything is on the topic; the relays ack each batch right after it, so the
		// lane positions must reach the end of the outbox too.
		deadline := time.Now().Add(10 * time.Second)
		for unacked(t, db) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		for _, r := range []<-chan error{r1, r2} {
			if err := <-r; err != nil {
				t.Errorf("relay: %v", err)
			}
		}
		t.Logf("%s: %d committed events all on the topic; %d duplicates", c.Name, len(committed), dups)
		if dups > 0 {
			t.Errorf("two healthy relays delivered %d duplicates: a lane was owned twice", dups)
		}
		backlog := unacked(t, db)
		if backlog != 0 {
			t.Errorf("relay positions leave %d rows unacked after everything was delivered", backlog)
		}
	})
}

// TestRelayCrashSafety runs two `catalog relay` processes while writers commit, and three times
// kills the one that owns the lanes with SIGKILL in the middle of its pipeline: the other takes
// the lanes over. Right after each kill, every outbox row at or before its lane's position is on
// the topic (a position never passes an event Kafka has not acknowledged); the killed relay is
// restarted, except after the last kill, when the survivor alone must relay everything: every
// committed event reaches the topic (duplicates allowed: at-least-once).
func TestRelayCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the catalog binary")
	}
	bin := buildCatalog(t)
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		db, url := migratedDB(t)
		topic := testkafka.CreateTopic(t, c, "crash", 12)
		start := func() *exec.Cmd {
			cmd := exec.Command(bin, "relay", "--relay-batch-size", "50")
			cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "KAFKA_BROKERS="+c.Brokers[0],
				"PRODUCT_EVENTS_TOPIC="+topic, "LOG_LEVEL=warn")
			cmd.Stderr = &prefixWriter{t: t}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			return cmd
		}
		var committed map[string]bool
		loadDone := make(chan struct{})
		go func() { committed = writeLoad(t, db, topic, 16, 150); close(loadDone) }()
		owner := start()
		time.Sleep(300 * time.Millisecond) // the first relay takes every lane
		standby := start()
		const kills = 3
		for k := 1; k <= kills; k++ {
			time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
			_ = owner.Process.Signal(syscall.SIGKILL)
			_ = owner.Wait()
			positionsAreRelayed(t, db, c, topic)
			owner, standby = standby, nil // the survivor takes the lanes over
			if k < kills {
				standby = start()
			}
		}
		<-loadDone
		dups := awaitEvents(t, c, topic, committed, 120*time.Second)
		_ = owner.Process.Signal(syscall.SIGTERM)
		if err := owner.Wait(); err != nil {
			t.Errorf("relay after SIGTERM: %v", err)
		}
		t.Logf("%s: the owning relay killed %d times; all %d committed events on the topic; %d duplicates (allowed: at-least-once)",
			c.Name, kills, len(committed), dups)
	})
}

// positionsAreRelayed checks that every outbox row at or before its lane's position is on the
// topic: the relay moves a position only over events Kafka acknowledged.
func positionsAreRelayed(t *testing.T, db *postgres.DB, c testkafka.Cluster, topic string) {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT o.payload FROM outbox_messages o
JOIN outbox_offsets p ON p.lane = o.lane AND p.consumer_group = $1
WHERE (o.transaction_id, o."offset") <= (p.last_processed_transaction_id, p.offset_acked)`, postgres.RelayConsumerGroup)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		var env forwarderEnvelope
		if err := json.Unmarshal(payload, &env); err != nil {
			t.Fatalf("outbox row: %v", err)
		}
		want[env.UUID] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing := func(recs []testkafka.Record) int {
		on := make(map[string]bool, len(recs))
		for _, r := range recs {
			on[r.Headers["_watermill_message_uuid"]] = true
		}
		n := 0
		for id := range want {
			if !on[id] {
				n++
			}
		}
		return n
	}
	recs := testkafka.ReadUntil(t, c, topic, 30*time.Second, func(r []testkafka.Record) bool { return missing(r) == 0 })
	if n := missing(recs); n > 0 {
		t.Errorf("the lane positions pass %d of %d events that are not on the topic", n, len(want))
	} else {
		t.Logf("after the kill: the positions cover %d events, all on the topic", len(want))
	}
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

func buildCatalog(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "catalog-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		buildOnce.path = filepath.Join(dir, "catalog")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "./cmd/catalog")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

type prefixWriter struct {
	t *testing.T
	n atomic.Int64
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	if w.n.Add(1) < 50 {
		w.t.Logf("relay: %s", p)
	}
	return len(p), nil
}

// unacked counts outbox rows past the relay's lane positions.
func unacked(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_messages m JOIN outbox_offsets o
ON o.lane = m.lane AND o.consumer_group = 'catalog-relay' WHERE (m.transaction_id, m."offset") > (o.last_processed_transaction_id, o.offset_acked)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
