package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// projectorEvents is the projector's drain workload.
const projectorEvents = 50_000

// BenchmarkProjectorDrain pre-fills a fresh topic on the real Kafka with 50,000
// product.created events (envelope-encoded as the relay publishes them, key = aggregate id,
// produced with franz-go) and measures the real projector draining it into a fresh alias on the
// real search server: kafka.NewConcurrentSubscriber in a fresh consumer group from the oldest offset,
// projector.New with its middleware, command.NewProjectProductEventHandler over
// elasticsearch.NewProjection (the shared bulk indexer), the Prometheus observer. The clock
// runs from Run until the 50,000th event was acknowledged by the handler; afterwards the
// alias must hold 50,000 documents and the group's lag must be 0. Beside it, in the same run:
// a raw esutil.BulkIndexer loading the same 50,000 documents (the same JSON, the same
// versioned index action) into a fresh index with the same mapping and settings.
//
// The projection blocks every message until its document's bulk item is answered, and
// Watermill's Kafka subscriber hands out one message per partition at a time, so the number of
// documents in flight is the partition count. The variants (on the first 5,000 events) show
// what that costs: partitions=48 (4x the documents in flight), flush=20ms (a longer bulk
// flush interval than the 2 ms default) and workers=12 (a bulk worker per partition, so that
// no document waits for a worker busy with an earlier request). The summary splits the time
// per event of one partition into Projection.Apply (measured) and the rest.
func BenchmarkProjectorDrain(b *testing.B) {
	k := realKafka(b)
	s := realSearch(b)
	msgs, snaps := createdEvents(b, runID(), projectorEvents)
	docs := encodeDocs(snaps)
	// Variants with the same partition count and workload share a pre-filled topic, deleted
	// at the end.
	parent := b
	topics := map[[2]int]string{}
	topic := func(b *testing.B, partitions int32, n int) string {
		key := [2]int{int(partitions), n}
		if t, ok := topics[key]; ok {
			return t
		}
		t := strings.ReplaceAll(testenv.Name(fmt.Sprintf("bench.projector.p%d", partitions)), "_", ".")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := kafka.EnsureTopics(ctx, kafka.Config{Brokers: k.brokers}, kafka.TopicSpec{Name: t, Partitions: partitions}); err != nil {
			b.Fatalf("create topic %s: %v", t, err)
		}
		parent.Cleanup(func() { deleteTopic(k, t) })
		took := prefillTopic(b, k, t, msgs[:n])
		b.Logf("prefilled %s (%d partitions) with %d events in %s", t, partitions, n, took.Round(time.Millisecond))
		topics[key] = t
		return t
	}
	var raw *drainResult
	rawRate := func(b *testing.B) drainResult {
		if raw == nil {
			ix := s.newIndices(b, s.config(benchAlias(b, s, "raw")))
			r := rawBulkLoad(b, s, freshIndex(b, ix, false), docs)
			raw = &r
		}
		return *raw
	}
	// The first variant is the projector's target figure. The others drain the first 5,000 events only, to
	// keep `make bench` short: the drain rate is steady after the first second (compare the
	// 10-90% rate), so the rates compare.
	for _, v := range []projectorVariant{
		{name: "partitions=12", partitions: 12, events: projectorEvents},
		{name: "partitions=48", partitions: 48, events: 5_000},
		{name: "partitions=12/flush=20ms", partitions: 12, flush: 20 * time.Millisecond, events: 5_000},
		{name: "partitions=12/workers=12", partitions: 12, workers: 12, events: 5_000},
	} {
		b.Run(v.name, func(b *testing.B) {
			noNsPerOp(b)
			t := topic(b, v.partitions, v.events)
			res := drainProjector(b, s, k, t, v, docs[:v.events])
			r := rawRate(b)
			ratio := res.rate() / r.rate()
			b.ReportMetric(res.rate(), "docs/s")
			b.ReportMetric(r.rate(), "raw_docs/s")
			b.ReportMetric(100*ratio, "%_of_raw")
			b.ReportMetric(res.docsPerRequest, "docs/bulk_request")
			b.ReportMetric(ms(res.apply), "apply_ms")
			b.ReportMetric(res.rate()*res.apply.Seconds(), "in_flight")
			cfg := v.config(s.config("x"))
			line := fmt.Sprintf("projector drain %d events, %d partitions, bulk flush %s, %d bulk workers: %.0f docs/s (%s, first event after %.0f ms, 10-90%% steady %.0f/s)",
				res.n, v.partitions, cfg.BulkFlushInterval, cfg.BulkWorkers, res.rate(), res.elapsed.Round(time.Millisecond), ms(res.first), res.steadyRate())
			line += fmt.Sprintf(" | raw esutil.BulkIndexer %d docs: %.0f docs/s (%s) -> %.0f%% of raw, target >= %.0f%% %s",
				r.n, r.rate(), r.elapsed.Round(time.Millisecond), 100*ratio, 100*targetReadRatio, verdict(res.complete() && ratio >= targetReadRatio))
			// The subscriber keeps many events of a partition in flight, so Apply times overlap:
			// rate x mean Apply time is how many were in flight on average (Little's law).
			line += fmt.Sprintf(" | %d bulk requests of %.1f docs, %.1f ms each on the wire; an event spends %.1f ms in Apply (bulk queue + flush wait + request), about %.0f in flight at once",
				res.requests, res.docsPerRequest, res.msPerRequest, ms(res.apply), res.rate()*res.apply.Seconds())
			line += res.problems()
			summary(b, "%s", line)
		})
	}
}

// projectorVariant is one configuration of the projector drain.
type projectorVariant struct {
	name       string
	partitions int32
	flush      time.Duration // BulkFlushInterval; 0: the default
	workers    int           // BulkWorkers; 0: the default
	events     int
}

func (v projectorVariant) config(cfg elasticsearch.Config) elasticsearch.Config {
	if v.flush > 0 {
		cfg.BulkFlushInterval = v.flush
	} else {
		cfg.BulkFlushInterval = elasticsearch.DefaultBulkFlushInterval
	}
	if v.workers > 0 {
		cfg.BulkWorkers = v.workers
	} else {
		cfg.BulkWorkers = elasticsearch.DefaultBulkWorkers
	}
	return cfg
}

// timedProjection measures Projection.Apply: the time an event waits for its document.
type timedProjection struct {
	next command.ProductProjection
	ns   atomic.Int64
	n    atomic.Int64
}

func (p *timedProjection) Apply(ctx context.Context, snap product.Snapshot) error {
	t := time.Now()
	err := p.next.Apply(ctx, snap)
	p.ns.Add(int64(time.Since(t)))
	p.n.Add(1)
	return err
}

// projectorResult is a drain of the projector.
type projectorResult struct {
	drainResult
	aliasDocs      int64 // documents in the alias afterwards
	lag            int64 // the group's lag afterwards (-1: unknown)
	requests       uint64
	docsPerRequest float64
	msPerRequest   float64
	apply          time.Duration // mean Projection.Apply
	mismatch       string        // the adapter's document differs from the raw baseline's
	deadLettered   int64
}

func (r projectorResult) complete() bool {
	return r.done == int64(r.n) && r.aliasDocs == int64(r.n) && r.lag == 0 && r.deadLettered == 0
}

func (r projectorResult) problems() string {
	var p []string
	if r.done < int64(r.n) {
		p = append(p, fmt.Sprintf("TIMED OUT with %d of %d events projected", r.done, r.n))
	}
	if r.aliasDocs != int64(r.n) {
		p = append(p, fmt.Sprintf("ALIAS HOLDS %d DOCUMENTS, want %d", r.aliasDocs, r.n))
	}
	if r.lag != 0 {
		p = append(p, fmt.Sprintf("GROUP LAG %d after the drain", r.lag))
	}
	if r.deadLettered > 0 {
		p = append(p, fmt.Sprintf("%d EVENTS DEAD-LETTERED", r.deadLettered))
	}
	if r.mismatch != "" {
		p = append(p, "RAW BASELINE DOCUMENT DIFFERS: "+r.mismatch)
	}
	if len(p) == 0 {
		return " | alias holds every document, group lag 0"
	}
	return " | " + strings.Join(p, "; ")
}

// countingObserver counts projected events and forwards to the service's Prometheus observer.
type countingObserver struct {
	next    projector.Observer
	n       atomic.Int64
	dead    atomic.Int64
	retried atomic.Int64
}

func (o *countingObserver) Projected(p int32, at time.Time) {
	o.next.Projected(p, at)
	o.n.Add(1)
}

func (o *countingObserver) DeadLettered(class string) {
	o.next.DeadLettered(class)
	o.dead.Add(1)
}

func (o *countingObserver) DeadLetterFailed() { o.next.DeadLetterFailed() }

func (o *countingObserver) Retried() {
	o.next.Retried()
	o.retried.Add(1)
}

// liveProjector is the real projector consuming topic into cfg's alias in a fresh group.
type liveProjector struct {
	obs        *countingObserver
	projection *elasticsearch.Projection
	timed      *timedProjection
	group      string
	sub        interface{ Close() error }
	dlq        interface{ Close() error }
	p          *projector.Projector
	cancel     context.CancelFunc
	done       chan struct{}
	err        error
}

// startProjector assembles the projector as wiring does (kafka.NewConcurrentSubscriber in a fresh
// consumer group from the oldest offset, projector.New, the decorated
// ProjectProductEvent handler over elasticsearch.NewProjection, Prometheus metrics behind a
// counting observer); run starts it, stop stops it and closes the projection.
func startProjector(b *testing.B, s searchServer, k cluster, cfg elasticsearch.Config, topic string) *liveProjector {
	b.Helper()
	log := quietLog()
	projection, err := elasticsearch.NewProjection(s.client, cfg)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	pm, err := metrics.NewProjectorMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	obs := &countingObserver{next: pm}
	timed := &timedProjection{next: projection}
	handler, err := command.NewProjectProductEventHandler(timed, decorator.Deps{Log: log, Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	group := strings.ReplaceAll(testenv.Name("bench-projector"), "_", "-")
	sub, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: k.brokers}, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group, FromOldest: true}, log)
	if err != nil {
		b.Fatal(err)
	}
	dlq, err := kafka.NewPublisher(kafka.Config{Brokers: k.brokers}, log)
	if err != nil {
		b.Fatal(err)
	}
	p, err := projector.New(projector.Config{Topic: topic, DLQTopic: "dlq." + topic}, sub, dlq, handler, obs, log)
	if err != nil {
		b.Fatal(err)
	}
	lp := &liveProjector{obs: obs, projection: projection, timed: timed, group: group, sub: sub, dlq: dlq, p: p}
	b.Cleanup(func() { lp.stop(nil) })
	return lp
}

// run starts the router; the returned channel is closed when it stops (err says why).
func (lp *liveProjector) run() <-chan struct{} {
	ctx, cancel := context.WithCancel(context.Background())
	lp.cancel, lp.done = cancel, make(chan struct{})
	go func() {
		defer close(lp.done)
		lp.err = lp.p.Run(ctx)
	}()
	return lp.done
}

// stop stops the router and closes the subscriber, the DLQ publisher and the projection
// (flushing its bulk indexer). It is idempotent; b may be nil (cleanup).
func (lp *liveProjector) stop(b *testing.B) {
	if lp.cancel != nil {
		lp.cancel()
		<-lp.done
		lp.cancel = nil
		if lp.err != nil && !errors.Is(lp.err, context.Canceled) && b != nil {
			b.Logf("projector: %v", lp.err)
		}
	}
	if lp.sub != nil {
		_ = lp.sub.Close()
		_ = lp.dlq.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lp.projection.Close(ctx); err != nil && b != nil {
			b.Logf("projection close: %v", err)
		}
		lp.sub = nil
	}
}

// drainProjector runs the projector on topic (pre-filled with docs' events) into a fresh
// alias until every event was projected.
func drainProjector(b *testing.B, s searchServer, k cluster, topic string, v projectorVariant, docs []bulkDoc) projectorResult {
	b.Helper()
	ctx := context.Background()
	cfg := v.config(s.config(benchAlias(b, s, "proj")))
	ix := s.newIndices(b, cfg)
	if _, _, err := ix.EnsureAlias(ctx); err != nil {
		b.Fatal(err)
	}
	lp := startProjector(b, s, k, cfg, topic)
	obs, projection, group := lp.obs, lp.projection, lp.group

	n := len(docs)
	prog := newProgress(n)
	done := lp.run()
	timeout := 5 * time.Minute
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			b.Fatalf("projector stopped: %v", lp.err)
		case <-deadline:
			b.Logf("projector: timed out after %s with %d of %d", timeout, obs.n.Load(), n)
			break loop
		case <-tick.C:
			if prog.observe(obs.n.Load()) {
				break loop
			}
		}
	}
	res := projectorResult{drainResult: prog.res, lag: -1, deadLettered: obs.dead.Load()}
	// Offsets are committed every 200 ms (kafka.NewConcurrentSubscriber): give the last commit time
	// before the consumer stops.
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	for {
		lag, err := groupLag(lctx, k.brokers, group)
		if err == nil {
			res.lag = lag
		}
		if (err == nil && lag == 0) || lctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	lcancel()
	lp.stop(b)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if n := lp.timed.n.Load(); n > 0 {
		res.apply = time.Duration(lp.timed.ns.Load() / n)
	}
	st := projection.Stats()
	res.requests = st.NumRequests
	if st.NumRequests > 0 {
		res.docsPerRequest = float64(st.NumFlushed) / float64(st.NumRequests)
		res.msPerRequest = float64(st.FlushedMs) / float64(st.NumRequests)
	}
	if c, err := aliasCount(cctx, ix, ""); err != nil {
		b.Logf("count %s: %v", cfg.Alias, err)
	} else {
		res.aliasDocs = c
	}
	res.mismatch = sameSource(cctx, s, cfg.Alias, docs[len(docs)/2])
	return res
}

// ---- commit-to-searchable latency ----

// targetSearchableP99 is the commit-to-searchable target: refresh_interval (1 s) + 300 ms.
const targetSearchableP99 = elasticsearch.DefaultRefreshInterval + 300*time.Millisecond

// searchableRun is one open-loop commit-to-searchable measurement.
type searchableRun struct {
	rate           int
	warmup, window time.Duration
	poll           time.Duration
}

// BenchmarkCommitToSearchable runs `catalog serve` in-process through wiring.InitializeServe
// (fresh database; the real Kafka and search server with this run's own topics, consumer group
// and alias; the default refresh interval of 1 s), POSTs products to its REST API open-loop at
// 200/s for 15 s after 1 s of warm-up, and polls the alias with `_search` (an ids query over
// every product not yet seen, every 25 ms) for when each became visible. Latency = the poll
// response that first contains the product - the POST response. A franz-go consumer on the
// events topic splits it into POST->Kafka and Kafka->searchable.
func BenchmarkCommitToSearchable(b *testing.B) {
	b.Run("rate=200", func(b *testing.B) {
		benchSearchable(b, searchableRun{rate: 200, warmup: time.Second, window: 15 * time.Second, poll: 25 * time.Millisecond})
	})
}

// servedCatalog is `catalog serve` running in-process.
type servedCatalog struct {
	base string
	cfg  service.Config
	stop func() error
}

// serveCatalog runs `catalog serve` through the real wiring on a fresh, migrated database,
// with cfg's search and Kafka settings and its own topics, group and alias (derived from
// name); the API logs at info as JSON into io.Discard, as production formats it.
func serveCatalog(b *testing.B, name string, set func(*service.Config)) *servedCatalog {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	url := testenv.NewDatabase(b)
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 4})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, db, log); err != nil {
		b.Fatal(err)
	}
	db.Close()
	cfg := service.Config{
		DatabaseURL: url, EmbeddedKafkaAddr: testenv.Addr(b), HTTPAddr: testenv.Addr(b), GRPCAddr: testenv.Addr(b),
		DataDir: b.TempDir(), SearchAlias: name, ProductEventsTopic: strings.ReplaceAll(name, "_", ".") + ".events",
		DLQTopic: "dlq." + strings.ReplaceAll(name, "_", ".") + ".events", ProjectorGroup: name + "-projector",
		ShutdownTimeout: 10 * time.Second,
	}
	set(&cfg)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	p, cleanup, err := wiring.InitializeServe(ctx, cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
				cleanup()
			case <-time.After(30 * time.Second):
				stopErr = errors.New("serve did not stop within 30s of cancellation")
			}
		})
		return stopErr
	}
	b.Cleanup(func() { _ = stop() })
	c := &servedCatalog{base: "http://" + cfg.HTTPAddr, cfg: cfg, stop: stop}
	for range 200 {
		if r, err := http.Get(c.base + "/healthz"); err == nil {
			_ = r.Body.Close()
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatal("serve never became healthy")
	return nil
}

// visibility pairs each product's POST response time with when the poller first saw it.
type visibility struct {
	mu        sync.Mutex
	posted    map[string]time.Time // measured, not yet visible
	warm      map[string]bool      // warm-up products: awaited, not measured
	early     map[string]time.Time // seen before its POST returned
	inKafka   map[string]time.Time
	lat       durations
	toKafka   durations
	fromKafka durations
	// absolute times, for the per-second timeline in the log
	tPosted, tKafka, tSeen []time.Time
}

func newVisibility() *visibility {
	return &visibility{posted: map[string]time.Time{}, warm: map[string]bool{}, early: map[string]time.Time{}, inKafka: map[string]time.Time{}}
}

func (v *visibility) postedAt(id string, at time.Time, measured bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tPosted = append(v.tPosted, at)
	if seen, ok := v.early[id]; ok {
		delete(v.early, id)
		if measured {
			v.lat = append(v.lat, max(0, seen.Sub(at)))
		}
		return
	}
	if measured {
		v.posted[id] = at
	} else {
		v.warm[id] = true
	}
}

func (v *visibility) kafkaAt(id string, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.inKafka[id] = at
	v.tKafka = append(v.tKafka, at)
}

// pending lists the products the poller still looks for, and when the longest-waiting
// measured one was posted (zero when only warm-up products are pending).
func (v *visibility) pending() ([]string, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.posted)+len(v.warm))
	var oldest time.Time
	for id, at := range v.posted {
		out = append(out, id)
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	for id := range v.warm {
		out = append(out, id)
	}
	return out, oldest
}

func (v *visibility) seen(ids []string, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for range ids {
		v.tSeen = append(v.tSeen, at)
	}
	for _, id := range ids {
		if p, ok := v.posted[id]; ok {
			delete(v.posted, id)
			v.lat = append(v.lat, at.Sub(p))
			if k, ok := v.inKafka[id]; ok {
				v.toKafka = append(v.toKafka, max(0, k.Sub(p)))
				v.fromKafka = append(v.fromKafka, at.Sub(k))
			}
			continue
		}
		if v.warm[id] {
			delete(v.warm, id)
			continue
		}
		v.early[id] = at
	}
}

func (v *visibility) outstanding() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.posted) + len(v.warm)
}

func benchSearchable(b *testing.B, sr searchableRun) {
	noNsPerOp(b)
	k := realKafka(b)
	s := realSearch(b)
	name := strings.ToLower(testenv.Name("bench_vis"))
	b.Cleanup(func() { s.deleteIndices(name + "_v*") })
	c := serveCatalog(b, name, func(cfg *service.Config) {
		cfg.KafkaBrokers = k.brokers
		cfg.ElasticsearchURL, cfg.ElasticsearchCompat = s.url, s.compat
	})
	b.Cleanup(func() { deleteTopic(k, c.cfg.ProductEventsTopic); deleteTopic(k, c.cfg.DLQTopic) })
	measureSearchable(b, c, sr, func(ctx context.Context, ids []string, _ time.Time) ([]string, error) {
		return searchIDs(ctx, s, c.cfg.SearchAlias, ids)
	}, k, fmt.Sprintf("target p99 <= refresh_interval %s + 300ms", c.cfg.SearchRefreshInterval))
}

// scrapeHistogram reads a Prometheus histogram from a /metrics page and renders its p50 and
// p99 as bucket bounds ("<= 0.32s"); "" when it is not there.
func scrapeHistogram(url, name string) string {
	res, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return ""
	}
	type bucket struct {
		le    string
		count float64
	}
	var buckets []bucket
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, name+"_bucket{") {
			continue
		}
		i := strings.Index(l, `le="`)
		j := strings.LastIndex(l, " ")
		if i < 0 || j < 0 {
			continue
		}
		le := l[i+4:]
		le = le[:strings.Index(le, `"`)]
		var c float64
		if _, err := fmt.Sscan(l[j+1:], &c); err != nil {
			continue
		}
		buckets = append(buckets, bucket{le, c})
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return ""
	}
	total := buckets[len(buckets)-1].count
	q := func(p float64) string {
		for _, bk := range buckets {
			if bk.count >= p*total {
				return "<= " + bk.le + "s"
			}
		}
		return "?"
	}
	return fmt.Sprintf("p50 %s, p99 %s of %.0f events", q(0.5), q(0.99), total)
}

func countIn(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// searchIDs returns which of ids the alias's search finds now.
func searchIDs(ctx context.Context, s searchServer, alias string, ids []string) ([]string, error) {
	body, err := json.Marshal(map[string]any{
		"size": len(ids), "_source": false, "track_total_hits": false,
		"query": map[string]any{"ids": map[string]any{"values": ids}},
	})
	if err != nil {
		return nil, err
	}
	res, err := s.client.Search(s.client.Search.WithContext(ctx), s.client.Search.WithIndex(alias),
		s.client.Search.WithBody(bytes.NewReader(body)), s.client.Search.WithFilterPath("hits.hits._id"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.IsError() {
		raw, _ := io.ReadAll(res.Body)
		return nil, fmt.Errorf("search: %s %s", res.Status(), raw)
	}
	var out struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, err
	}
	found := make([]string, len(out.Hits.Hits))
	for i, h := range out.Hits.Hits {
		found[i] = h.ID
	}
	return found, nil
}

// measureSearchable drives POST /v1/products open-loop against c and polls with find (which
// of the given ids are searchable now; oldest is when the longest-waiting of them was posted,
// zero when unknown) until every product is visible; it prints the summary.
// k, when it has brokers, is the cluster of c's events topic (for the POST->Kafka split).
func measureSearchable(b *testing.B, c *servedCatalog, sr searchableRun, find func(ctx context.Context, ids []string, oldest time.Time) ([]string, error), k cluster, target string) {
	b.Helper()
	const workers = 16
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vis := newVisibility()

	// The events topic, from its end: when each product's event reached Kafka.
	var consDone chan struct{}
	if len(k.brokers) > 0 {
		cons, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.ConsumeTopics(c.cfg.ProductEventsTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		consDone = make(chan struct{})
		go func() {
			defer close(consDone)
			for {
				fs := cons.PollFetches(ctx)
				if ctx.Err() != nil || fs.IsClientClosed() {
					return
				}
				now := time.Now()
				fs.EachRecord(func(r *kgo.Record) { vis.kafkaAt(string(r.Key), now) })
			}
		}()
		defer func() { cancel(); cons.Close(); <-consDone }()
	}

	// The poller.
	var polls, pollErrs atomic.Int64
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() {
		defer close(pollDone)
		t := time.NewTicker(sr.poll)
		defer t.Stop()
		for {
			select {
			case <-stopPoll:
				return
			case <-t.C:
			}
			ids, oldest := vis.pending()
			if len(ids) == 0 {
				continue
			}
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			found, err := find(pctx, ids, oldest)
			pcancel()
			at := time.Now()
			polls.Add(1)
			if err != nil {
				pollErrs.Add(1)
				continue
			}
			vis.seen(found, at)
		}
	}()

	// The writers: open loop, as in benchLatency.
	type job struct {
		seq      int
		measured bool
	}
	jobs := make(chan job, sr.rate)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	var (
		wg      sync.WaitGroup
		failed  atomic.Int64
		posted  atomic.Int64
		postLat = make([]durations, workers)
		run     = runID()
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				body := fmt.Sprintf(`{"sku":"VIS-%s-%07d","name":"Searchable product %d","description":"%s","category":"kitchen/bottles","brand":"Acme","price":{"amount":%d,"currency":"EUR"},"stock":%d,"attributes":{"color":"steel","volume":"500ml"}}`,
					run, j.seq, j.seq, strings.Repeat("A sturdy everyday thing for the benchmark. ", 7), 1000+j.seq%5000, j.seq%100)
				start := time.Now()
				res, err := client.Post(c.base+"/v1/products", "application/json", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				var out struct {
					ID string `json:"id"`
				}
				err = json.NewDecoder(res.Body).Decode(&out)
				_ = res.Body.Close()
				at := time.Now()
				if err != nil || res.StatusCode != http.StatusCreated || out.ID == "" {
					failed.Add(1)
					continue
				}
				vis.postedAt(out.ID, at, j.measured)
				if j.measured {
					posted.Add(1)
					postLat[w] = append(postLat[w], at.Sub(start))
				}
			}
		}()
	}
	start := time.Now()
	total := int((sr.warmup + sr.window).Seconds() * float64(sr.rate))
	warmJobs := int(sr.warmup.Seconds() * float64(sr.rate))
	dropped := 0
	for sent := 0; sent < total; {
		due := min(total, int(time.Since(start).Seconds()*float64(sr.rate)))
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
	writeTime := time.Since(start)
	deadline := time.Now().Add(60 * time.Second)
	for vis.outstanding() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	missing := vis.outstanding()
	close(stopPoll)
	<-pollDone

	vis.mu.Lock()
	lat, toK, fromK := vis.lat.sorted(), vis.toKafka.sorted(), vis.fromKafka.sorted()
	b.Logf("per second since the first POST: posted / reached Kafka / became searchable")
	for sec, end := 0, time.Since(start); time.Duration(sec)*time.Second < end; sec++ {
		from, to := start.Add(time.Duration(sec)*time.Second), start.Add(time.Duration(sec+1)*time.Second)
		b.Logf("  %3ds %5d %5d %5d", sec, countIn(vis.tPosted, from, to), countIn(vis.tKafka, from, to), countIn(vis.tSeen, from, to))
	}
	vis.mu.Unlock()
	var posts durations
	for _, p := range postLat {
		posts = append(posts, p...)
	}
	posts = posts.sorted()
	p50, p99, pmax := lat.pct(50), lat.pct(99), lat.pct(100)
	b.ReportMetric(ms(p50), "p50_ms")
	b.ReportMetric(ms(p99), "p99_ms")
	b.ReportMetric(ms(pmax), "max_ms")
	b.ReportMetric(float64(posted.Load())/max(writeTime-sr.warmup, time.Millisecond).Seconds(), "writes/s")
	b.ReportMetric(ms(posts.pct(99)), "post_p99_ms")
	if len(toK) > 0 {
		b.ReportMetric(ms(toK.pct(99)), "post_to_kafka_p99_ms")
		b.ReportMetric(ms(fromK.pct(99)), "kafka_to_searchable_p99_ms")
	}
	line := fmt.Sprintf("commit->searchable at %d writes/s scheduled for %s: p50 %.0fms p99 %.0fms max %.0fms over %d products | %s %s",
		sr.rate, sr.window, ms(p50), ms(p99), ms(pmax), len(lat), target, verdict(p99 <= targetSearchableP99 && missing == 0 && len(lat) > 0))
	if len(toK) > 0 {
		line += fmt.Sprintf(" | POST->Kafka p50 %.0fms p99 %.0fms, Kafka->searchable p50 %.0fms p99 %.0fms", ms(toK.pct(50)), ms(toK.pct(99)), ms(fromK.pct(50)), ms(fromK.pct(99)))
	}
	if relayed := scrapeHistogram(c.base+"/metrics", "catalog_outbox_relay_commit_to_kafka_seconds"); relayed != "" {
		line += " | service histograms over the whole run: relay commit->Kafka ack " + relayed
	}
	if applied := scrapeHistogram(c.base+"/metrics", "catalog_projector_commit_to_applied_seconds"); applied != "" {
		line += ", projector commit->applied " + applied
	}
	line += fmt.Sprintf(" | POST p50 %.1fms p99 %.1fms; poll every %s (%d polls", ms(posts.pct(50)), ms(posts.pct(99)), sr.poll, polls.Load())
	if n := pollErrs.Load(); n > 0 {
		line += fmt.Sprintf(", %d failed", n)
	}
	line += ")"
	if n := failed.Load(); n > 0 {
		line += fmt.Sprintf(" | %d POSTS FAILED", n)
	}
	if dropped > 0 {
		line += fmt.Sprintf(" | %d writes dropped: the API could not keep up", dropped)
	}
	if missing > 0 {
		line += fmt.Sprintf(" | %d PRODUCTS NEVER BECAME SEARCHABLE within 60 s", missing)
	}
	summary(b, "%s", line)
}
