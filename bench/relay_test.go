package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
)

// Targets of the relay.
const (
	targetDrainEmbedded = 10_000.0 // events/s, embedded broker, 50k and 500k
	targetDrainKafka    = 5_000.0  // events/s, real Kafka, 50k
)

// BenchmarkRelayDrainEmbedded pre-fills the outbox with 50,000 and 500,000 product.created
// events and measures how fast the relay (postgres.NewRelay, default config: 8 lanes, batch
// 1000, poll 100 ms) drains them into the embedded broker. Beside it, at 50k: the relay into a
// publisher that drops everything (the PostgreSQL + Watermill side alone), a Sarama
// SyncProducer with the relay's producer configuration sending the same messages one by one
// from 8 goroutines (the lanes), and franz-go producing them asynchronously.
func BenchmarkRelayDrainEmbedded(b *testing.B) {
	for _, n := range []int{50_000, 500_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			benchRelayDrain(b, embeddedBroker(b), n, n == 50_000, targetDrainEmbedded)
		})
	}
}

// BenchmarkRelayDrainKafka is the 50,000-event drain against the real Kafka broker
// (KAFKA_BROKERS), next to raw producers of the same messages.
func BenchmarkRelayDrainKafka(b *testing.B) {
	b.Run("events=50000", func(b *testing.B) {
		benchRelayDrain(b, realKafka(b), 50_000, true, targetDrainKafka)
	})
}

func benchRelayDrain(b *testing.B, c cluster, n int, baselines bool, target float64) {
	noNsPerOp(b)
	ctx := context.Background()
	db := migratedDB(b, 32)
	topic := createTopic(b, c, "drain", 12)

	var kept []*message.Message
	var keep func(outboxEvent)
	if baselines {
		kept = make([]*message.Message, 0, n)
		keep = func(e outboxEvent) { kept = append(kept, e.msg) }
	}
	t0 := time.Now()
	bytes, err := prefillOutbox(ctx, db, topic, n, 10_000, keep)
	if err != nil {
		b.Fatalf("prefill: %v", err)
	}
	fill := time.Since(t0)
	b.Logf("prefilled %d outbox rows (%.1f MB of payload) in %s", n, float64(bytes)/1e6, fill.Round(time.Millisecond))

	var null drainResult
	if baselines {
		null = drainToNull(b, db, n)
		if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox_offsets`); err != nil {
			b.Fatal(err)
		}
	}

	timeout := max(3*time.Minute, time.Duration(float64(n)/target*3*float64(time.Second)))
	res := drainToKafka(b, db, c, topic, n, postgres.DefaultLanes, timeout)
	b.ReportMetric(res.rate(), "events/s")
	b.ReportMetric(res.steadyRate(), "steady_events/s")
	b.ReportMetric(ms(res.first), "first_event_ms")

	line := fmt.Sprintf("relay-drain %s %d events: %.0f events/s (%s; 10-90%% steady %.0f/s; first event after %.0f ms) target >= %.0f/s %s",
		c.name, n, res.rate(), res.elapsed.Round(time.Millisecond), res.steadyRate(), ms(res.first), target,
		verdict(res.done == int64(n) && res.rate() >= target))
	if res.done < int64(n) {
		line += fmt.Sprintf(" (TIMED OUT after %s with %d of %d on the topic)", timeout, res.done, n)
	}
	// A drain whose rate falls decile after decile is paying for the rows already relayed.
	line += fmt.Sprintf(" | by tenth of the backlog: 1st %.0f/s, 5th %.0f/s, 10th %.0f/s",
		res.decileRate(1), res.decileRate(5), res.decileRate(10))
	b.ReportMetric(res.decileRate(10), "last_tenth_events/s")
	lane := res.perWorker(postgres.DefaultLanes)
	line += fmt.Sprintf(" | per lane ~%.3f ms/event: Kafka publish (sync SendMessage) %.3f ms = %.0f%%, outbox read + watermill %.3f ms",
		ms(lane), ms(res.publishPerEvent), 100*float64(res.publishPerEvent)/float64(lane), ms(lane-res.publishPerEvent))
	b.ReportMetric(ms(res.publishPerEvent), "publish_ms/event")
	if baselines {
		b.ReportMetric(null.rate(), "null_relay_events/s")
		line += fmt.Sprintf(" | relay->null publisher: %.0f events/s (%.3f ms/event per lane)", null.rate(), ms(null.perWorker(postgres.DefaultLanes)))

		sTopic := createTopic(b, c, "sarama", 12)
		sr := produceSaramaSync(b, c, sTopic, kept, postgres.DefaultLanes)
		b.ReportMetric(sr.rate(), "sarama_sync_events/s")
		line += fmt.Sprintf(" | raw Sarama SyncProducer x%d: %.0f events/s (%.3f ms/send) -> relay at %.0f%% of it",
			postgres.DefaultLanes, sr.rate(), ms(sr.perWorker(postgres.DefaultLanes)), 100*res.rate()/sr.rate())

		kTopic := createTopic(b, c, "kgo", 12)
		kr := produceKgoAsync(b, c, kTopic, kept)
		b.ReportMetric(kr.rate(), "kgo_async_events/s")
		line += fmt.Sprintf(" | raw franz-go async: %.0f events/s", kr.rate())
	}
	summary(b, "%s", line)
}

// drainResult is how long it took for done of n events to arrive.
type drainResult struct {
	n        int
	done     int64
	elapsed  time.Duration
	first    time.Duration     // until the first event arrived
	marks    [11]time.Duration // marks[k]: until k tenths had arrived
	failures int
	// publishPerEvent is the mean time a relay lane spent in the Kafka publisher per event.
	publishPerEvent time.Duration
}

// perWorker is the time one of workers (lanes, goroutines) spent per event, all busy.
func (r drainResult) perWorker(workers int) time.Duration {
	if r.done == 0 {
		return 0
	}
	return time.Duration(float64(r.elapsed) * float64(workers) / float64(r.done))
}

func (r drainResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.done) / r.elapsed.Seconds()
}

// steadyRate is the rate between 10% and 90% of the events, without start-up and tail.
func (r drainResult) steadyRate() float64 {
	if r.marks[9] <= r.marks[1] {
		return r.rate()
	}
	return 0.8 * float64(r.n) / (r.marks[9] - r.marks[1]).Seconds()
}

// decileRate is the rate over the k-th tenth of the events (1..10); 0 if it never completed.
func (r drainResult) decileRate(k int) float64 {
	if r.marks[k] == 0 || r.marks[k] <= r.marks[k-1] {
		return 0
	}
	return 0.1 * float64(r.n) / (r.marks[k] - r.marks[k-1]).Seconds()
}

// progress tracks a count against time and fills a drainResult.
type progress struct {
	res   drainResult
	start time.Time
}

func newProgress(n int) *progress { return &progress{res: drainResult{n: n}, start: time.Now()} }

func (p *progress) observe(count int64) bool {
	el := time.Since(p.start)
	if count > 0 && p.res.first == 0 {
		p.res.first = el
	}
	for k := 1; k <= 10; k++ {
		if p.res.marks[k] == 0 && count*10 >= int64(k*p.res.n) {
			p.res.marks[k] = el
		}
	}
	p.res.done = count
	p.res.elapsed = el
	return count >= int64(p.res.n)
}

// drainToKafka runs the relay into c until topic holds n records (or timeout).
func drainToKafka(b *testing.B, db *postgres.DB, c cluster, topic string, n, lanes int, timeout time.Duration) drainResult {
	b.Helper()
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: c.brokers}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pub.Close() }()
	timed := &timedPublisher{Publisher: pub}
	relay, err := postgres.NewRelay(db, timed, postgres.RelayConfig{Lanes: lanes}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p := newProgress(n)
	go func() { done <- relay.Run(ctx) }()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-done:
			cancel()
			b.Fatalf("relay stopped: %v", err)
		case <-deadline:
			break loop
		case <-tick.C:
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			count, err := topicRecords(qctx, adm, topic)
			qcancel()
			if err != nil {
				b.Logf("end offsets: %v", err)
				continue
			}
			if p.observe(count) {
				break loop
			}
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		b.Logf("relay: %v", err)
	}
	if n := timed.n.Load(); n > 0 {
		p.res.publishPerEvent = time.Duration(timed.ns.Load() / n)
	}
	return p.res
}

// timedPublisher measures the time the relay's lanes spend inside the Kafka publisher (a
// synchronous Sarama SendMessage per event): the rest of a lane's time per event is reading
// the outbox and Watermill's forwarding.
type timedPublisher struct {
	message.Publisher
	ns atomic.Int64
	n  atomic.Int64
}

func (p *timedPublisher) Publish(topic string, msgs ...*message.Message) error {
	t := time.Now()
	err := p.Publisher.Publish(topic, msgs...)
	p.ns.Add(int64(time.Since(t)))
	p.n.Add(int64(len(msgs)))
	return err
}

// nullPublisher acknowledges everything at once: the relay without Kafka.
type nullPublisher struct{ n atomic.Int64 }

func (p *nullPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.n.Add(int64(len(msgs)))
	return nil
}

func (p *nullPublisher) Close() error { return nil }

// drainToNull runs the relay into a publisher that drops every message: what PostgreSQL,
// watermill-sql and the forwarder cost on their own.
func drainToNull(b *testing.B, db *postgres.DB, n int) drainResult {
	b.Helper()
	pub := &nullPublisher{}
	relay, err := postgres.NewRelay(db, pub, postgres.RelayConfig{}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p := newProgress(n)
	go func() { done <- relay.Run(ctx) }()
	deadline := time.After(3 * time.Minute)
	for !p.observe(pub.n.Load()) {
		select {
		case err := <-done:
			cancel()
			b.Fatalf("relay stopped: %v", err)
		case <-deadline:
			b.Logf("null relay: timed out with %d of %d", pub.n.Load(), n)
			cancel()
			<-done
			return p.res
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	<-done
	return p.res
}

// produceSaramaSync sends msgs with a Sarama SyncProducer configured exactly like the relay's
// (kafka.Config.ProducerConfig: acks=all, idempotent, one in-flight request), one message per
// SendMessage, from workers goroutines — what the relay's lanes do, minus PostgreSQL.
func produceSaramaSync(b *testing.B, c cluster, topic string, msgs []*message.Message, workers int) drainResult {
	b.Helper()
	cfg := kafka.Config{Brokers: c.brokers}.ProducerConfig()
	prod, err := sarama.NewSyncProducer(c.brokers, cfg)
	if err != nil {
		b.Fatalf("sarama: %v", err)
	}
	defer func() { _ = prod.Close() }()
	records := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		records[i] = saramaMessage(topic, m)
	}
	var sent, failed atomic.Int64
	p := newProgress(len(msgs))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(records); i += workers {
				if _, _, err := prod.SendMessage(records[i]); err != nil {
					failed.Add(1)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	for {
		select {
		case <-stop:
			p.observe(sent.Load())
			p.res.failures = int(failed.Load())
			if p.res.failures > 0 {
				b.Logf("sarama: %d sends failed", p.res.failures)
			}
			return p.res
		case <-time.After(5 * time.Millisecond):
			p.observe(sent.Load())
		}
	}
}

// produceKgoAsync produces msgs with franz-go's default producer (acks=all, idempotent,
// batching, many records in flight) and waits for every acknowledgement.
func produceKgoAsync(b *testing.B, c cluster, topic string, msgs []*message.Message) drainResult {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	records := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		records[i] = kgoRecord(topic, m)
	}
	var acked, failed atomic.Int64
	p := newProgress(len(msgs))
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(len(records))
	for _, r := range records {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			} else {
				acked.Add(1)
			}
			wg.Done()
		})
	}
	wg.Wait()
	p.observe(acked.Load())
	p.res.failures = int(failed.Load())
	if p.res.failures > 0 {
		b.Logf("franz-go: %d records failed", p.res.failures)
	}
	return p.res
}
