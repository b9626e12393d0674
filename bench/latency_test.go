package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
)

// targetLatencyP99 is the target commit-to-Kafka p99 at 2,000 commits/s.
const targetLatencyP99 = 100 * time.Millisecond

// BenchmarkCommitToKafkaLatency drives ProductRepository.Add open-loop (a scheduler releases
// commits at a fixed rate to 32 workers, whatever the latency) at 200 and 2,000 commits/s for
// 10 s each, with the relay (default config) forwarding to the embedded broker, and a franz-go
// consumer on the topic. Latency = consumer receive time - wall time right after Add returned
// (the commit). The first second is warm-up and not counted.
func BenchmarkCommitToKafkaLatency(b *testing.B) {
	for _, rate := range []int{200, 2000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			benchLatency(b, latencyRun{rate: rate, warmup: time.Second, window: 10 * time.Second})
		})
	}
}

// latencyTracker pairs each aggregate's commit time with the time the consumer saw it.
type latencyTracker struct {
	mu      sync.Mutex
	commit  map[string]time.Time
	recv    map[string]time.Time
	lat     durations
	early   int // received before the writer's Add returned (latency counted as 0)
	pending int // measured commits not yet received
}

func newLatencyTracker() *latencyTracker {
	return &latencyTracker{commit: map[string]time.Time{}, recv: map[string]time.Time{}}
}

func (t *latencyTracker) committed(id string, at time.Time, measured bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.recv[id]; ok {
		delete(t.recv, id)
		if measured {
			t.early++
			t.lat = append(t.lat, max(0, r.Sub(at)))
		}
		return
	}
	if measured {
		t.commit[id] = at
		t.pending++
	} else {
		t.commit[id] = time.Time{} // warm-up: expected, not measured
	}
}

func (t *latencyTracker) received(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.commit[id]
	if !ok {
		t.recv[id] = at
		return
	}
	delete(t.commit, id)
	if !c.IsZero() {
		t.lat = append(t.lat, at.Sub(c))
		t.pending--
	}
}

func (t *latencyTracker) outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// latencyRun is one open-loop latency measurement.
type latencyRun struct {
	rate           int
	warmup, window time.Duration
	relay          postgres.RelayConfig // zero: the defaults
}

func benchLatency(b *testing.B, lr latencyRun) {
	noNsPerOp(b)
	rate, warmup, window := lr.rate, lr.warmup, lr.window
	const workers = 32
	c := embeddedBroker(b)
	db := migratedDB(b, workers+postgres.DefaultLanes+8)
	topic := createTopic(b, c, "latency", 12)
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: c.brokers}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pub.Close() }()
	relay, err := postgres.NewRelay(db, pub, lr.relay, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()

	tr := newLatencyTracker()
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) { tr.received(string(r.Key), now) })
		}
	}()
	defer func() { cancel(); cons.Close(); <-consDone }()

	// Open loop: the scheduler releases commit i at start + i/rate, whether or not earlier
	// commits finished. A full queue (a second of backlog) drops the commit and counts it.
	type job struct {
		seq      int
		measured bool
	}
	jobs := make(chan job, rate)
	var (
		wg       sync.WaitGroup
		addLat   = make([]durations, workers)
		failed   atomic.Int64
		lastDone atomic.Int64 // unix nanos of the last measured commit
		commits  atomic.Int64 // measured commits
		run      = runID()
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				now := time.Now()
				p, err := product.New(product.NewID(now), benchDetails(run, j.seq), now)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _, err = repo.Add(ctx, p, nil)
				done := time.Now()
				if err != nil {
					failed.Add(1)
					b.Logf("add: %v", err)
					continue
				}
				tr.committed(p.ID().String(), done, j.measured)
				if j.measured {
					addLat[w] = append(addLat[w], done.Sub(now))
					commits.Add(1)
					lastDone.Store(done.UnixNano())
				}
			}
		}()
	}
	checkpoint(b, db)
	start := time.Now()
	measureFrom := start.Add(warmup)
	total := int((warmup + window).Seconds() * float64(rate))
	warmJobs := int(warmup.Seconds() * float64(rate))
	dropped := 0
	for sent := 0; sent < total; {
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		for ; sent < due; sent++ {
			select {
			case jobs <- job{seq: sent, measured: sent >= warmJobs}:
			default:
				dropped++
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
	scheduled := total - warmJobs
	var achieved float64
	if last := time.Unix(0, lastDone.Load()); commits.Load() > 0 && last.After(measureFrom) {
		achieved = float64(commits.Load()) / last.Sub(measureFrom).Seconds()
	}

	// Everything committed must reach the consumer.
	deadline := time.Now().Add(60 * time.Second)
	for tr.outstanding() > 0 && time.Now().Before(deadline) {
		select {
		case err := <-relayDone:
			b.Fatalf("relay stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	missing := tr.outstanding()
	cancel()
	if err := <-relayDone; err != nil && !errors.Is(err, context.Canceled) {
		b.Logf("relay: %v", err)
	}

	tr.mu.Lock()
	lat := tr.lat.sorted()
	early := tr.early
	tr.mu.Unlock()
	var adds durations
	for _, a := range addLat {
		adds = append(adds, a...)
	}
	adds = adds.sorted()

	p50, p99, pmax := lat.pct(50), lat.pct(99), lat.pct(100)
	b.ReportMetric(ms(p50), "p50_ms")
	b.ReportMetric(ms(p99), "p99_ms")
	b.ReportMetric(ms(pmax), "max_ms")
	b.ReportMetric(achieved, "commits/s")
	b.ReportMetric(ms(adds.pct(99)), "add_p99_ms")

	line := fmt.Sprintf("commit->kafka at %d commits/s scheduled: p50 %.1fms p99 %.1fms max %.1fms over %d events",
		rate, ms(p50), ms(p99), ms(pmax), len(lat))
	if rate == 2000 {
		line += fmt.Sprintf(" | target p99 <= %s %s", targetLatencyP99, verdict(p99 <= targetLatencyP99 && missing == 0))
	}
	line += fmt.Sprintf(" | achieved %.0f commits/s (%d of %d scheduled", achieved, commits.Load(), scheduled)
	if dropped > 0 {
		line += fmt.Sprintf(", %d dropped: writers could not keep up", dropped)
	}
	if n := failed.Load(); n > 0 {
		line += fmt.Sprintf(", %d failed", n)
	}
	line += fmt.Sprintf(") | Add p50 %.1fms p99 %.1fms", ms(adds.pct(50)), ms(adds.pct(99)))
	if early > 0 {
		line += fmt.Sprintf(" | %d events reached the consumer before Add returned", early)
	}
	if missing > 0 {
		line += fmt.Sprintf(" | %d COMMITTED EVENTS NEVER ARRIVED within 60 s", missing)
	}
	summary(b, "%s", line)
}
