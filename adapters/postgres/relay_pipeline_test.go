package postgres_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// laneBlockingPublisher holds every message of one lane until release is closed: a Kafka
// partition leader that hangs, as far as that lane can tell. It notes when Kafka acknowledged
// each aggregate's first event.
type laneBlockingPublisher struct {
	message.Publisher
	lane    int
	release chan struct{}
	held    chan struct{} // closed when the first message was held
	once    sync.Once

	mu     sync.Mutex
	acked  map[string]time.Time
	called map[string]time.Time
}

func (p *laneBlockingPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if postgres.LaneOf(m.Metadata.Get(envelope.MetaAggregateID), postgres.DefaultLanes) == p.lane {
			p.once.Do(func() { close(p.held) })
			select {
			case <-p.release:
			case <-m.Context().Done():
				return m.Context().Err()
			}
		}
	}
	p.mu.Lock()
	for _, m := range msgs {
		id := m.Metadata.Get(envelope.MetaAggregateID)
		if _, ok := p.called[id]; !ok {
			p.called[id] = time.Now()
		}
	}
	p.mu.Unlock()
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		id := m.Metadata.Get(envelope.MetaAggregateID)
		if _, ok := p.acked[id]; !ok {
			p.acked[id] = now
		}
	}
	return nil
}

func (p *laneBlockingPublisher) ackedAt(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.acked[id]
	return at, ok
}

// arrivals consumes topic from its start and notes when each key's first record arrived.
type arrivals struct {
	mu   sync.Mutex
	at   map[string]time.Time
	recs []*kgo.Record
}

func consume(t *testing.T, c testkafka.Cluster, topic string) *arrivals {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a := &arrivals{at: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			a.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if _, ok := a.at[string(r.Key)]; !ok {
					a.at[string(r.Key)] = now
				}
				a.recs = append(a.recs, r)
			})
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return a
}

func (a *arrivals) arrived(key string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.at[key]
	return at, ok
}

func (a *arrivals) records() []*kgo.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recs)
}

// eachCluster runs fn against the embedded broker and the real Kafka.
func eachCluster(t *testing.T, fn func(t *testing.T, c testkafka.Cluster)) {
	for _, cluster := range testkafka.Clusters(t) {
		t.Run("", func(t *testing.T) {
			c := cluster(t)
			t.Run(c.Name, func(t *testing.T) { fn(t, c) })
		})
	}
}

// runRelay runs a relay publishing to pub until the test ends, and then checks that it stopped
// cleanly.
func runRelay(t *testing.T, db *postgres.DB, pub message.Publisher, cfg postgres.RelayConfig) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRelayWith(t, ctx, db, pub, cfg)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// repository is the product repository of db, writing events for topic.
func repository(t testing.TB, db *postgres.DB, topic string) *postgres.ProductRepository {
	t.Helper()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// TestRelayLanesAreIndependent: one lane's publisher hangs for 10 s while writes to every lane
// go on. The other lanes' commits reach Kafka (its acknowledgement) within a second all along:
// no lane holds a transaction id while it talks to Kafka, so none hides the others' commits
// (the old relay's poll transaction did, for as long as its lane waited). Afterwards the held
// lane catches up and every event is on the topic.
func TestRelayLanesAreIndependent(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		db, _ := migratedDB(t)
		topic := testkafka.CreateTopic(t, c, "independent", 12)
		const heldLane, hold = 3, 10 * time.Second
		pub := &laneBlockingPublisher{Publisher: relayPublisher(t, c), lane: heldLane,
			release: make(chan struct{}), held: make(chan struct{}), acked: map[string]time.Time{}, called: map[string]time.Time{}}
		runRelay(t, db, pub, postgres.RelayConfig{PollInterval: 50 * time.Millisecond})
		got := consume(t, c, topic)
		repo := repository(t, db, topic)

		// Writes at ~50/s to every lane while the held lane's first event hangs.
		committed := map[string]time.Time{}
		var held []string
		start := time.Now()
		var releasedAt time.Time
		for i := 0; ; i++ {
			now := time.Now()
			if releasedAt.IsZero() && now.Sub(start) >= hold {
				close(pub.release)
				releasedAt = now
			}
			if now.Sub(start) >= hold+time.Second {
				break
			}
			p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("IND-%d", i), 100), now)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
				t.Fatal(err)
			}
			id := p.ID().String()
			committed[id] = time.Now()
			if postgres.LaneOf(id, postgres.DefaultLanes) == heldLane {
				held = append(held, id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case <-pub.held:
		default:
			t.Fatal("no event of the held lane reached the publisher: the test held nothing")
		}

		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			missing := 0
			for id := range committed {
				if _, ok := got.arrived(id); !ok {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		var others, relayPart []time.Duration
		var lost []string
		heldLatest := time.Duration(0)
		for id, at := range committed {
			arrived, ok := got.arrived(id)
			acked, ackOK := pub.ackedAt(id)
			if !ok || !ackOK {
				lost = append(lost, id)
				continue
			}
			if postgres.LaneOf(id, postgres.DefaultLanes) == heldLane {
				heldLatest = max(heldLatest, arrived.Sub(releasedAt))
				continue
			}
			others = append(others, max(0, acked.Sub(at)))
			pub.mu.Lock()
			relayPart = append(relayPart, pub.called[id].Sub(at))
			pub.mu.Unlock()
		}
		if len(lost) > 0 {
			t.Fatalf("%d of %d committed events never reached Kafka (e.g. %s)", len(lost), len(committed), lost[0])
		}
		slices.Sort(others)
		slices.Sort(relayPart)
		t.Logf("commit->publish p50 %s p99 %s max %s", relayPart[len(relayPart)/2], relayPart[len(relayPart)*99/100], relayPart[len(relayPart)-1])
		p50, p99, worst := others[len(others)/2], others[len(others)*99/100], others[len(others)-1]
		t.Logf("%s: %d events of other lanes while lane %d was held for %s: commit->Kafka p50 %s, p99 %s, max %s; "+
			"the held lane's %d events all arrived, the last %s after its release",
			c.Name, len(others), heldLane, hold, p50, p99, worst, len(held), heldLatest.Round(time.Millisecond))
		if worst >= time.Second {
			t.Errorf("an event of another lane took %s to reach Kafka while lane %d was held, want < 1s", worst, heldLane)
		}
		if len(held) < 3 {
			t.Errorf("only %d events went to the held lane", len(held))
		}
	})
}

// TestRelayKeepsEachProductsOrder: 1,000 products with 20 events each (a create, then two
// updates of nine and ten changes: consecutive events of one product in one transaction), written
// while the relay runs, so each lane has many of them in flight at once. Read back from Kafka,
// each product's versions strictly increase within its partition, and every event is there once.
func TestRelayKeepsEachProductsOrder(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		db, _ := migratedDB(t)
		topic := testkafka.CreateTopic(t, c, "order", 12)
		runRelay(t, db, relayPublisher(t, c), postgres.RelayConfig{PollInterval: 50 * time.Millisecond})
		got := consume(t, c, topic)
		repo := repository(t, db, topic)
		const products, events = 1000, 20
		ids := make([]product.ID, products)
		rounds := []func(i int) error{
			func(i int) error {
				now := time.Now()
				p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("ORD-%d", i), 100), now)
				if err != nil {
					return err
				}
				ids[i] = p.ID()
				_, _, err = repo.Add(context.Background(), p, nil)
				return err
			},
			changes(repo, ids, 9),
			changes(repo, ids, 10),
		}
		for _, round := range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, products)
			for w := range 16 {
				wg.Go(func() {
					for i := w; i < products; i += 16 {
						if err := round(i); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}

		deadline := time.Now().Add(90 * time.Second)
		for len(got.records()) < products*events && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		recs := got.records()
		last := map[string]int64{}      // key -> last version seen
		partition := map[string]int32{} // key -> its partition
		bad := 0
		for _, r := range recs {
			ev, err := envelope.Unmarshal(r.Value)
			if err != nil {
				t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			key := string(r.Key)
			if p, ok := partition[key]; ok && p != r.Partition {
				t.Errorf("product %s on partitions %d and %d", key, p, r.Partition)
			}
			partition[key] = r.Partition
			if v := ev.AggregateVersion; v <= last[key] {
				if bad++; bad <= 5 {
					t.Errorf("product %s: version %d at offset %d/%d after version %d", key, v, r.Partition, r.Offset, last[key])
				}
			} else {
				last[key] = v
			}
		}
		complete := 0
		for _, v := range last {
			if v == events {
				complete++
			}
		}
		t.Logf("%s: %d records of %d products; %d products reached version %d, %d versions out of order",
			c.Name, len(recs), len(last), complete, events, bad)
		if len(recs) != products*events || complete != products {
			t.Errorf("read %d records, %d products complete; want %d records, %d products", len(recs), complete, products*events, products)
		}
	})
}

// changes is a write round that makes n price changes to product ids[i] in one update.
func changes(repo *postgres.ProductRepository, ids []product.ID, n int) func(i int) error {
	return func(i int) error {
		_, err := repo.Update(context.Background(), ids[i], func(_ context.Context, p *product.Product) (*product.Product, error) {
			for k := range n {
				price, err := product.NewMoney(int64(1000+p.Version()*10+int64(k)), "EUR")
				if err != nil {
					return nil, err
				}
				if err := p.ChangePrice(price, time.Now()); err != nil {
					return nil, err
				}
			}
			return p, nil
		})
		return err
	}
}

// TestRelayHorizonIgnoresOtherDatabases: an open transaction holds the relay back only if it
// could write to this database's outbox. One in another database of the same server (another
// service, a long report) must not stall the relay; one in this database must, until it ends.
func TestRelayHorizonIgnoresOtherDatabases(t *testing.T) {
	db, _ := migratedDB(t)
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "horizon", 4)
	runRelay(t, db, relayPublisher(t, c), postgres.RelayConfig{PollInterval: 50 * time.Millisecond})
	got := consume(t, c, topic)
	repo := repository(t, db, topic)
	add := func(sku string) string {
		t.Helper()
		now := time.Now()
		p, err := product.New(product.NewID(now), details(t, sku, 100), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
			t.Fatal(err)
		}
		return p.ID().String()
	}
	arrivesWithin := func(id string, d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if _, ok := got.arrived(id); ok {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	openTx := func(url string) pgx.Tx {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		tx, err := conn.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(context.Background(), `SELECT pg_current_xact_id()`); err != nil { // takes a transaction id
			t.Fatal(err)
		}
		return tx
	}

	elsewhere := openTx(testenv.NewDatabase(t))
	first := add("HORIZON-1")
	if !arrivesWithin(first, 5*time.Second) {
		t.Errorf("a transaction open in another database held the relay back")
	}
	_ = elsewhere.Rollback(context.Background())

	here := openTx(db.Pool.Config().ConnString())
	second := add("HORIZON-2")
	if arrivesWithin(second, time.Second) {
		t.Fatalf("the relay passed a transaction of its own database that was still open")
	}
	_ = here.Rollback(context.Background())
	if !arrivesWithin(second, 5*time.Second) {
		t.Errorf("the event committed behind an open transaction did not arrive after it ended")
	}
}

// holdingPublisher hands one aggregate's messages over (Dispatched, as the Kafka publisher
// does once it buffered a record) and then holds them until release is closed: a record the
// producer has not had acknowledged yet, while the lane's later events go on and are acked.
type holdingPublisher struct {
	message.Publisher
	aggregate string
	release   chan struct{}
	held      chan struct{}
	once      sync.Once
}

func (p *holdingPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if m.Metadata.Get(envelope.MetaAggregateID) == p.aggregate {
			postgres.Dispatched(m)
			p.once.Do(func() { close(p.held) })
			select {
			case <-p.release:
			case <-m.Context().Done():
				return m.Context().Err()
			}
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

// TestRelayPositionNeverPassesAnUnackedEvent: while one event of a lane waits for its
// acknowledgement, the lane's later events are delivered and acked, but the lane's position,
// what a restarted relay resumes from, stays before the waiting event; once it is acked the
// position moves to the end.
func TestRelayPositionNeverPassesAnUnackedEvent(t *testing.T) {
	db, _ := migratedDB(t)
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "position", 4)
	repo := repository(t, db, topic)
	// Products of one lane: the first is held, the others follow it in the lane (fewer than a
	// lane's window, MaxInFlight, so that they are all delivered while it waits).
	var ids []string
	for i := 0; len(ids) < 41; i++ {
		now := time.Now()
		p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("POS-%d", i), 100), now)
		if err != nil {
			t.Fatal(err)
		}
		if postgres.LaneOf(p.ID().String(), postgres.DefaultLanes) != 5 {
			continue
		}
		if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID().String())
	}
	pub := &holdingPublisher{Publisher: relayPublisher(t, c), aggregate: ids[0], release: make(chan struct{}), held: make(chan struct{})}
	runRelay(t, db, pub, postgres.RelayConfig{PollInterval: 50 * time.Millisecond})
	got := consume(t, c, topic)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the later events on the topic", func() bool {
		for _, id := range ids[1:] {
			if _, ok := got.arrived(id); !ok {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // more than the position's flush interval
	if n := unackedOf(t, db, ids[0]); n != 1 {
		t.Fatalf("the lane's position passed the event still waiting for its acknowledgement (it counts %d unacked rows of it, want 1)", n)
	}
	if n := unacked(t, db); n != len(ids) {
		t.Errorf("%d rows are past the positions, want the held event and the %d after it", n, len(ids)-1)
	}
	close(pub.release)
	waitFor("the held event on the topic", func() bool { _, ok := got.arrived(ids[0]); return ok })
	waitFor("the position at the end of the lane", func() bool { return unacked(t, db) == 0 })
}

// unackedOf counts the outbox rows of an aggregate past their lane's position.
func unackedOf(t *testing.T, db *postgres.DB, aggregate string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_messages m JOIN outbox_offsets o
ON o.lane = m.lane AND o.consumer_group = 'catalog-relay'
WHERE (m.transaction_id, m."offset") > (o.last_processed_transaction_id, o.offset_acked)
  AND convert_from(m.payload, 'UTF8') LIKE '%' || $1 || '%'`, aggregate).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRelayRecoversFromADatabaseOutage: the relay's connections to PostgreSQL are cut for a few
// seconds while writers (on connections of their own) keep committing. The lanes lose their
// locks with their sessions; the relay takes them again when the database is back and relays
// every event, without the relay stopping.
func TestRelayRecoversFromADatabaseOutage(t *testing.T) {
	db, url := migratedDB(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	relayDB, err := postgres.Open(context.Background(), postgres.Config{URL: u.String(), MaxConns: 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relayDB.Close)
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "outage", 4)
	runRelay(t, relayDB, relayPublisher(t, c), postgres.RelayConfig{PollInterval: 50 * time.Millisecond, RetryInterval: 200 * time.Millisecond, AcquireInterval: 200 * time.Millisecond})
	got := consume(t, c, topic)
	repo := repository(t, db, topic)
	var ids []string
	write := func(n int) {
		for i := range n {
			now := time.Now()
			p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("OUT-%d-%d", len(ids), i), 100), now)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, p.ID().String())
		}
	}
	write(50)
	proxy.Down()
	write(100)
	time.Sleep(2 * time.Second)
	proxy.Up()
	write(50)
	deadline := time.Now().Add(60 * time.Second)
	missing := len(ids)
	for missing > 0 && time.Now().Before(deadline) {
		missing = 0
		for _, id := range ids {
			if _, ok := got.arrived(id); !ok {
				missing++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if missing > 0 {
		t.Fatalf("%d of %d events never reached Kafka after the database came back", missing, len(ids))
	}
	deadline = time.Now().Add(10 * time.Second)
	for unacked(t, db) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := unacked(t, db); n > 0 {
		t.Errorf("%d rows past the positions after everything was relayed", n)
	}
}
