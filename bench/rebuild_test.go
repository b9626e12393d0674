package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// rebuildProducts is the rebuild's workload.
const rebuildProducts = 200_000

// BenchmarkRebuild seeds 200,000 products into a fresh database with one INSERT ... SELECT
// generate_series and rebuilds the read model from the database through application/rebuild's
// Service over the real adapters, assembled as wiring's provideRebuildService does
// (postgres.NewRebuildStore, postgres.NewProductSource, kafka.NewEventLog on the real Kafka,
// elasticsearch.NewTarget, Settle = the refresh interval), into a fresh alias on the real
// search server.
//
//   - idle: nothing else runs. Figures: the fill phase's documents/s (the target's figure),
//     every phase's duration, and beside it, in the same run, a raw esutil.BulkIndexer loading
//     the same 200,000 documents (read from the same table, pre-encoded) into a fresh index
//     with the rebuild's bulk-load settings (refresh off, no replica).
//   - writers=200: the same rebuild (the alias now points at the first rebuild's index) while
//     ProductRepository writes 200 times a second (half Add of new products, half Update of a
//     random seeded one), the relay forwards them to Kafka and the projector applies them
//     through the alias; the rebuild catches up from Kafka. Figures: the rebuild's duration,
//     fill rate, catch-up size, whether validation passed, and whether the read model matches
//     the database once the writers stopped and the projector caught up.
func BenchmarkRebuild(b *testing.B) {
	k := realKafka(b)
	s := realSearch(b)
	db := migratedDB(b, int32(48+2*postgres.DefaultLanes))
	ctx := context.Background()
	t0 := time.Now()
	seedProducts(b, db, rebuildProducts, runID())
	b.Logf("seeded %d products with SQL in %s", rebuildProducts, time.Since(t0).Round(time.Millisecond))
	checkpoint(b, db)

	topic := createTopic(b, k, "rebuild", 12)
	cfg := s.config(benchAlias(b, s, "rebuild"))
	ix := s.newIndices(b, cfg)
	if _, _, err := ix.EnsureAlias(ctx); err != nil {
		b.Fatal(err)
	}
	target, err := elasticsearch.NewTarget(s.client, ix, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = target.Close(cctx)
	})
	tt := &timedTarget{Target: target}
	svc := newRebuildService(b, db, k, topic, tt, cfg.RefreshInterval)

	b.Run("idle", func(b *testing.B) {
		noNsPerOp(b)
		res := runRebuild(b, svc, tt, 10*time.Minute)
		docs := productDocs(b, db)
		mismatch := ""
		if res.ok() {
			mismatch = sameSource(ctx, s, res.snap.ToIndex, docs[len(docs)/2])
		}
		raw := rawBulkLoad(b, s, freshIndex(b, ix, true), docs)
		ratio := res.fillRate() / raw.rate()
		b.ReportMetric(res.fillRate(), "fill_docs/s")
		b.ReportMetric(res.totalRate(), "docs/s")
		b.ReportMetric(raw.rate(), "raw_docs/s")
		b.ReportMetric(100*ratio, "%_of_raw")
		b.ReportMetric(res.total.Seconds(), "total_s")
		line := fmt.Sprintf("rebuild %d products from the database: fill %.0f docs/s (%s), whole rebuild %s (%.0f docs/s) [%s]",
			rebuildProducts, res.fillRate(), res.phase(readmodel.PhaseFill).Round(time.Millisecond), res.total.Round(time.Millisecond), res.totalRate(), res.phases())
		line += fmt.Sprintf(" | raw esutil.BulkIndexer same docs: %.0f docs/s (%s) -> fill at %.0f%% of raw, target >= %.0f%% %s",
			raw.rate(), raw.elapsed.Round(time.Millisecond), 100*ratio, 100*targetReadRatio, verdict(res.ok() && ratio >= targetReadRatio && raw.failures == 0))
		line += " | " + res.outcome()
		if split := res.fillSplit(); split != "" {
			line += " | " + split
		}
		if mismatch != "" {
			line += " | RAW BASELINE DOCUMENT DIFFERS: " + mismatch
		}
		summary(b, "%s", line)
	})

	b.Run("writers=200", func(b *testing.B) {
		noNsPerOp(b)
		benchRebuildUnderWrites(b, s, k, db, topic, cfg, ix, svc, tt, 200)
	})
}

// seedProducts inserts n valid live products (version 1, uuid ids, unique SKUs, EUR) with
// one INSERT ... SELECT generate_series, about the size of benchDetails' products.
func seedProducts(b *testing.B, db *postgres.DB, n int, run string) {
	b.Helper()
	// About 20,000 rows a second on a loaded 2-core machine; generously more for millions.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+time.Duration(n/2000)*time.Second)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (id, sku, name, description, category, brand,
  price_amount, price_currency, stock, attributes, version, created_at, updated_at)
SELECT gen_random_uuid(), 'SEED-' || $2 || '-' || g, 'Seeded product ' || g || ', stainless steel, 500 ml',
  repeat('A sturdy everyday thing for the benchmark. ', 7), 'kitchen/c' || (g % 50), 'brand-' || (g % 20),
  1000 + g % 5000, 'EUR', g % 100, '{}'::jsonb, 1, now(), now()
FROM generate_series(1, $1::int) AS g`, n, run); err != nil {
		b.Fatalf("seed %d products: %v", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE products`); err != nil { // visibility map and statistics, as a live table has
		b.Logf("vacuum: %v", err)
	}
}

// productDocs reads every product of the table as the read model's document, for the raw
// baseline: the same documents the rebuild wrote.
func productDocs(b *testing.B, db *postgres.DB) []bulkDoc {
	b.Helper()
	ctx := context.Background()
	rows, err := db.Pool.Query(ctx, `SELECT id::text, sku, name, description, category, brand, price_amount, price_currency,
  stock, attributes, version, created_at, updated_at, deleted_at FROM products ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []bulkDoc
	for rows.Next() {
		var (
			id, sku, name, desc, cat, brand, cur string
			amount, stock, version               int64
			attrs                                map[string]string
			created, updated                     time.Time
			deleted                              *time.Time
		)
		if err := rows.Scan(&id, &sku, &name, &desc, &cat, &brand, &amount, &cur, &stock, &attrs, &version, &created, &updated, &deleted); err != nil {
			b.Fatal(err)
		}
		d, err := product.NewDetails(sku, name, desc, cat, brand, amount, strings.TrimSpace(cur), stock, attrs)
		if err != nil {
			b.Fatal(err)
		}
		p, err := product.UnmarshalProductFromDatabase(product.ID(id), d, version, created, updated, deleted)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, encodeDoc(p.Snapshot()))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// newRebuildService assembles the rebuild use case as wiring's provideRebuildService does.
func newRebuildService(b *testing.B, db *postgres.DB, k cluster, topic string, target rebuild.Target, settle time.Duration) *rebuild.Service {
	b.Helper()
	store, err := postgres.NewRebuildStore(db)
	if err != nil {
		b.Fatal(err)
	}
	source, err := postgres.NewProductSource(db)
	if err != nil {
		b.Fatal(err)
	}
	events, err := kafka.NewEventLog(kafka.Config{Brokers: k.brokers}, topic, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	svc, err := rebuild.NewService(rebuild.Config{Settle: settle, ProjectorGroup: topic + "-projector"}, store, source, events, target, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.HandOffAll(); svc.Wait(); events.Close() })
	return svc
}

// rebuildResult is one rebuild, from Start to its terminal record.
type rebuildResult struct {
	snap     readmodel.Snapshot
	total    time.Duration // Start returned -> terminal phase seen
	filled   int64         // documents written by the fill (the rest is catch-up and drain)
	timedOut bool
	startErr error
	// fillWrites Target.Write calls of the fill took fillWriteTime in all.
	fillWrites    int
	fillWriteTime time.Duration
}

// fillSplit says how the fill's time divides between waiting for Target.Write (bulk requests)
// and everything else (the PostgreSQL cursor, decoding, the use case).
func (r rebuildResult) fillSplit() string {
	fill := r.phase(readmodel.PhaseFill)
	if fill <= 0 || r.fillWrites == 0 {
		return ""
	}
	return fmt.Sprintf("fill: %d Target.Write calls of %.0f docs, %.0f ms each = %.0f%% of the fill; reading PostgreSQL and the rest %.0f%%",
		r.fillWrites, float64(r.filled)/float64(r.fillWrites), ms(r.fillWriteTime)/float64(r.fillWrites),
		100*float64(r.fillWriteTime)/float64(fill), 100-100*float64(r.fillWriteTime)/float64(fill))
}

func (r rebuildResult) ok() bool {
	return r.startErr == nil && r.snap.Phase == readmodel.PhaseSucceeded
}

// phase is how long phase p took (until the next phase started).
func (r rebuildResult) phase(p readmodel.Phase) time.Duration {
	order := []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill, readmodel.PhaseCatchUp,
		readmodel.PhaseValidate, readmodel.PhaseSwitch, readmodel.PhaseDrain}
	for i, q := range order {
		if q != p {
			continue
		}
		start, ok := r.snap.PhaseStarts[p]
		if !ok {
			return 0
		}
		for _, next := range order[i+1:] {
			if t, ok := r.snap.PhaseStarts[next]; ok {
				return t.Sub(start)
			}
		}
		if r.snap.FinishedAt != nil {
			return r.snap.FinishedAt.Sub(start)
		}
	}
	return 0
}

func (r rebuildResult) phases() string {
	var parts []string
	for _, p := range []readmodel.Phase{readmodel.PhaseCreateIndex, readmodel.PhaseCapture, readmodel.PhaseFill, readmodel.PhaseCatchUp,
		readmodel.PhaseValidate, readmodel.PhaseSwitch, readmodel.PhaseDrain} {
		if d := r.phase(p); d > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", p, d.Round(time.Millisecond)))
		}
	}
	return strings.Join(parts, ", ")
}

func (r rebuildResult) fillRate() float64 {
	if d := r.phase(readmodel.PhaseFill); d > 0 && r.filled > 0 {
		return float64(r.filled) / d.Seconds()
	}
	return 0
}

func (r rebuildResult) totalRate() float64 {
	if r.total <= 0 {
		return 0
	}
	return float64(r.snap.DocsDone) / r.total.Seconds()
}

func (r rebuildResult) outcome() string {
	switch {
	case r.startErr != nil:
		return fmt.Sprintf("REBUILD DID NOT START: %v", r.startErr)
	case r.timedOut:
		return fmt.Sprintf("REBUILD TIMED OUT in phase %s", r.snap.Phase)
	case r.snap.Phase == readmodel.PhaseSucceeded:
		return fmt.Sprintf("validation passed, alias switched %s -> %s, %d documents written", r.snap.FromIndex, r.snap.ToIndex, r.snap.DocsDone)
	default:
		return fmt.Sprintf("REBUILD %s: %s", strings.ToUpper(string(r.snap.Phase)), r.snap.Error)
	}
}

// timedTarget records every Write of the rebuild (when it started, how long it took, how many
// documents), so the fill's documents and the share of the fill spent waiting for bulk writes
// (the rest is reading PostgreSQL and the use case) can be told apart.
type timedTarget struct {
	rebuild.Target
	mu     sync.Mutex
	writes []targetWrite
}

type targetWrite struct {
	at   time.Time
	took time.Duration
	docs int
}

func (t *timedTarget) Write(ctx context.Context, index string, docs []product.Snapshot) error {
	start := time.Now()
	err := t.Target.Write(ctx, index, docs)
	t.mu.Lock()
	t.writes = append(t.writes, targetWrite{at: start, took: time.Since(start), docs: len(docs)})
	t.mu.Unlock()
	return err
}

// between sums the writes that started in [from, to).
func (t *timedTarget) between(from, to time.Time) (docs int64, calls int, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range t.writes {
		if !w.at.Before(from) && w.at.Before(to) {
			docs += int64(w.docs)
			calls++
			took += w.took
		}
	}
	return docs, calls, took
}

// runRebuild starts a database-sourced rebuild and polls its record until it is terminal.
func runRebuild(b *testing.B, svc *rebuild.Service, tt *timedTarget, timeout time.Duration) rebuildResult {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	snap, err := svc.Start(ctx, readmodel.SourceDatabase)
	if err != nil {
		return rebuildResult{startErr: err}
	}
	res := rebuildResult{}
	deadline := time.Now().Add(timeout)
	for {
		cur, err := svc.Get(ctx, snap.ID)
		if err == nil {
			res.snap = cur
			if cur.Phase.Terminal() {
				break
			}
		}
		if time.Now().After(deadline) {
			res.timedOut = true
			_, _ = svc.Cancel(ctx, snap.ID)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.total = time.Since(start)
	if fs, ok := res.snap.PhaseStarts[readmodel.PhaseFill]; ok {
		fe := time.Now()
		if ce, ok := res.snap.PhaseStarts[readmodel.PhaseCatchUp]; ok {
			fe = ce
		}
		res.filled, res.fillWrites, res.fillWriteTime = tt.between(fs, fe)
	}
	return res
}

// benchRebuildUnderWrites runs the rebuild while writers, the relay and the projector run.
func benchRebuildUnderWrites(b *testing.B, s searchServer, k cluster, db *postgres.DB, topic string, cfg elasticsearch.Config, ix *elasticsearch.Indices, svc *rebuild.Service, tt *timedTarget, rate int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: k.brokers}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pub.Close() }()
	relay, err := postgres.NewRelay(db, pub, postgres.RelayConfig{}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	lp := startProjector(b, s, k, cfg, topic)
	lp.run()

	// Seeded products to update.
	var ids []product.ID
	rows, err := db.Pool.Query(ctx, `SELECT id::text FROM products ORDER BY random() LIMIT 20000`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, product.ID(id))
	}
	rows.Close()

	// Open-loop writers until stopped.
	const workers = 16
	var (
		adds, updates, failed atomic.Int64
		firstErr              atomic.Value
		dropped               int
		wg                    sync.WaitGroup
		run                   = runID()
	)
	jobs := make(chan int, rate)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range jobs {
				now := time.Now()
				var err error
				if seq%2 == 0 {
					var p *product.Product
					p, err = product.New(product.NewID(now), benchDetails(run, seq), now)
					if err == nil {
						_, _, err = repo.Add(ctx, p, nil)
					}
					if err == nil {
						adds.Add(1)
					}
				} else {
					id := ids[rand.IntN(len(ids))]
					_, err = repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
						if err := p.ChangeStock(p.Details().Stock+1, time.Now()); err != nil {
							return nil, err
						}
						return p, nil
					})
					if err == nil {
						updates.Add(1)
					}
				}
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	stopWriters := make(chan struct{})
	writersDone := make(chan struct{})
	writeStart := time.Now()
	go func() {
		defer close(writersDone)
		for sent := 0; ; {
			select {
			case <-stopWriters:
				close(jobs)
				return
			default:
			}
			due := int(time.Since(writeStart).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				select {
				case jobs <- sent:
				default:
					dropped++
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()

	// Let the pipeline settle into the write load, then rebuild.
	time.Sleep(2 * time.Second)
	res := runRebuild(b, svc, tt, 10*time.Minute)
	close(stopWriters)
	<-writersDone
	wg.Wait()
	writeTime := time.Since(writeStart)
	achieved := float64(adds.Load()+updates.Load()) / writeTime.Seconds()

	// After the writers: does the read model match the database once the projector caught up?
	var dbCount int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&dbCount); err != nil {
		b.Fatal(err)
	}
	var aliasDocs int64 = -1
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := aliasCount(qctx, ix, "")
		qcancel()
		if err == nil {
			aliasDocs = n
			if n == dbCount {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	versions := ""
	if aliasDocs == dbCount {
		versions = compareVersions(ctx, b, s, db, cfg.Alias, ids[:min(len(ids), 500)])
	}
	lp.stop(b)
	cancel()
	if err := <-relayDone; err != nil && !errors.Is(err, context.Canceled) {
		b.Logf("relay: %v", err)
	}

	caught := res.snap.DocsDone - res.filled
	b.ReportMetric(res.total.Seconds(), "rebuild_s")
	b.ReportMetric(res.fillRate(), "fill_docs/s")
	b.ReportMetric(float64(caught), "caught_up_docs")
	b.ReportMetric(achieved, "writes/s")
	line := fmt.Sprintf("rebuild %d products from the database under %d writes/s: %s (fill %.0f docs/s of %d products; %d events caught up and drained from Kafka) [%s] | %s",
		rebuildProducts, rate, res.total.Round(time.Millisecond), res.fillRate(), res.filled, caught, res.phases(), res.outcome())
	if split := res.fillSplit(); split != "" {
		line += " | " + split
	}
	line += fmt.Sprintf(" | writers achieved %.0f writes/s (%d adds, %d updates", achieved, adds.Load(), updates.Load())
	if dropped > 0 {
		line += fmt.Sprintf(", %d dropped: writers could not keep up", dropped)
	}
	if n := failed.Load(); n > 0 {
		line += fmt.Sprintf(", %d FAILED, first: %v", n, firstErr.Load())
	}
	line += ")"
	if aliasDocs == dbCount {
		line += fmt.Sprintf(" | afterwards the alias holds all %d products", dbCount)
		if versions != "" {
			line += "; " + versions
		}
	} else {
		line += fmt.Sprintf(" | AFTERWARDS THE ALIAS HOLDS %d DOCUMENTS, THE DATABASE %d PRODUCTS", aliasDocs, dbCount)
	}
	summary(b, "%s", line)
}

// compareVersions checks that the alias has each sampled product at the database's version.
func compareVersions(ctx context.Context, b *testing.B, s searchServer, db *postgres.DB, alias string, ids []product.ID) string {
	b.Helper()
	want := map[string]int64{}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = string(id)
	}
	rows, err := db.Pool.Query(ctx, `SELECT id::text, version FROM products WHERE id = ANY($1::uuid[])`, strs)
	if err != nil {
		return fmt.Sprintf("version check failed: %v", err)
	}
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err == nil {
			want[id] = v
		}
	}
	rows.Close()
	body, _ := json.Marshal(map[string]any{"size": len(strs), "version": true, "_source": false,
		"query": map[string]any{"ids": map[string]any{"values": strs}}})
	res, err := s.client.Search(s.client.Search.WithContext(ctx), s.client.Search.WithIndex(alias),
		s.client.Search.WithBody(strings.NewReader(string(body))))
	if err != nil {
		return fmt.Sprintf("version check failed: %v", err)
	}
	defer func() { _ = res.Body.Close() }()
	var out struct {
		Hits struct {
			Hits []struct {
				ID      string `json:"_id"`
				Version int64  `json:"_version"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return fmt.Sprintf("version check failed: %v", err)
	}
	bad := 0
	for _, h := range out.Hits.Hits {
		if want[h.ID] != h.Version {
			bad++
		}
	}
	bad += len(want) - len(out.Hits.Hits)
	if bad > 0 {
		return fmt.Sprintf("%d OF %d SAMPLED PRODUCTS HAVE ANOTHER VERSION IN THE READ MODEL", bad, len(want))
	}
	return fmt.Sprintf("%d sampled updated-or-not products at the database's version", len(want))
}
