package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/adapters/bleve"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/ports/projector"
	"github.com/marketplace/catalog/service"
)

// embeddedProducts is the embedded pipeline's workload.
const embeddedProducts = 50_000

// rawBleveBatch is the batch size of the raw Bleve baseline: the adapter's default
// MaxBatchDocs.
const rawBleveBatch = bleve.DefaultMaxBatchDocs

// BenchmarkEmbedded is the embedded pipeline's benchmark: the whole pipeline in one process with nothing
// but PostgreSQL, so topics are on the embedded broker (kfake) and the read model is the Bleve
// adapter on a fresh data directory. The same 50,000 products serve every figure: they are
// product.created events pre-filled into a fresh 12-partition topic, and the same products'
// rows in a fresh database (written with COPY).
//
//   - projector: the real projector (kafka.NewConcurrentSubscriber in a fresh group from the oldest
//     offset, projector.New, the decorated ProjectProductEvent handler) drains the topic into
//     the alias (bleve.Open, EnsureAlias, Store.Apply).
//   - rebuild: application/rebuild's Service over the Postgres store and source, the event
//     log on the embedded broker and the Bleve store as target rebuilds from the database.
//
// Both are compared with a raw Bleve batch load of the same 50,000 documents measured in the
// same run: the adapter's mapping and fields, batches of 2,000 from one goroutine, scorch's
// default synchronous (persisted) batches, on the same disk.
//
//   - commit-to-searchable: `catalog serve` in-process with KAFKA_BROKERS and ELASTICSEARCH_URL
//     empty (embedded broker and Bleve under CATALOG_DATA_DIR, as `make run`), 200 POSTs/s
//     open-loop; a poller reads the newest products through GET /v1/products/search.
func BenchmarkEmbedded(b *testing.B) {
	k := embeddedBroker(b)
	msgs, snaps := createdEvents(b, runID(), embeddedProducts)
	var raw *drainResult
	rawRate := func(b *testing.B) drainResult {
		if raw == nil {
			r := rawBleveLoad(b, snaps)
			raw = &r
		}
		return *raw
	}

	b.Run("projector", func(b *testing.B) {
		noNsPerOp(b)
		topic := createTopic(b, k, "embedded.projector", 12)
		took := prefillTopic(b, k, topic, msgs)
		b.Logf("prefilled %s with %d events in %s", topic, len(msgs), took.Round(time.Millisecond))
		store := openBleve(b, "proj")
		if _, _, err := store.EnsureAlias(context.Background()); err != nil {
			b.Fatal(err)
		}
		res := drainBleveProjector(b, k, topic, store, len(snaps))
		r := rawRate(b)
		ratio := res.rate() / r.rate()
		b.ReportMetric(res.rate(), "docs/s")
		b.ReportMetric(r.rate(), "raw_docs/s")
		b.ReportMetric(100*ratio, "%_of_raw")
		b.ReportMetric(ms(res.apply), "apply_ms")
		line := fmt.Sprintf("embedded projector drain %d events (embedded broker, 12 partitions) into Bleve: %.0f docs/s (%s, first event after %.0f ms, 10-90%% steady %.0f/s)",
			res.n, res.rate(), res.elapsed.Round(time.Millisecond), ms(res.first), res.steadyRate())
		line += fmt.Sprintf(" | raw Bleve batches of %d, same docs: %.0f docs/s (%s) -> %.0f%% of raw, target >= %.0f%% %s",
			rawBleveBatch, r.rate(), r.elapsed.Round(time.Millisecond), 100*ratio, 100*targetReadRatio,
			verdict(res.done == int64(res.n) && res.deadLettered == 0 && res.aliasDocs == int64(res.n) && ratio >= targetReadRatio))
		// Many events of a partition are in flight at once, so Apply times overlap: rate x mean
		// Apply time is how many were in flight on average (Little's law).
		line += fmt.Sprintf(" | an event spends %.1f ms in Store.Apply (group commit of the documents in flight + persist), about %.0f in flight at once",
			ms(res.apply), res.rate()*res.apply.Seconds())
		if res.aliasDocs != int64(res.n) {
			line += fmt.Sprintf(" | ALIAS HOLDS %d DOCUMENTS, want %d", res.aliasDocs, res.n)
		}
		if res.deadLettered > 0 {
			line += fmt.Sprintf(" | %d EVENTS DEAD-LETTERED", res.deadLettered)
		}
		summary(b, "%s", line)
	})

	b.Run("commit-to-searchable", func(b *testing.B) {
		noNsPerOp(b)
		name := strings.ToLower(testenv.Name("bench_emb_vis"))
		c := serveCatalog(b, name, func(cfg *service.Config) {
			cfg.KafkaBrokers, cfg.ElasticsearchURL = nil, ""
		})
		broker := cluster{name: "embedded", brokers: []string{c.cfg.EmbeddedKafkaAddr}}
		measureSearchable(b, c, searchableRun{rate: 200, warmup: time.Second, window: 15 * time.Second, poll: 50 * time.Millisecond},
			func(ctx context.Context, ids []string, oldest time.Time) ([]string, error) {
				return searchNewest(ctx, c.base, ids, oldest)
			}, broker, "embedded engine (no target of its own; the Elasticsearch pipeline's is 1300ms)")
	})

	b.Run("rebuild", func(b *testing.B) {
		noNsPerOp(b)
		db := migratedDB(b, 16)
		copyProducts(b, db, snaps)
		topic := createTopic(b, k, "embedded.rebuild", 12)
		store := openBleve(b, "rebuild")
		if _, _, err := store.EnsureAlias(context.Background()); err != nil {
			b.Fatal(err)
		}
		tt := &timedTarget{Target: store}
		svc := newRebuildService(b, db, k, topic, tt, 0)
		res := runRebuild(b, svc, tt, 10*time.Minute)
		r := rawRate(b)
		ratio := res.fillRate() / r.rate()
		b.ReportMetric(res.fillRate(), "fill_docs/s")
		b.ReportMetric(res.totalRate(), "docs/s")
		b.ReportMetric(r.rate(), "raw_docs/s")
		b.ReportMetric(100*ratio, "%_of_raw")
		line := fmt.Sprintf("embedded rebuild %d products from the database into Bleve: fill %.0f docs/s (%s), whole rebuild %s [%s]",
			len(snaps), res.fillRate(), res.phase(readmodel.PhaseFill).Round(time.Millisecond), res.total.Round(time.Millisecond), res.phases())
		line += fmt.Sprintf(" | raw Bleve batches of %d, same docs: %.0f docs/s (%s) -> fill at %.0f%% of raw, target >= %.0f%% %s",
			rawBleveBatch, r.rate(), r.elapsed.Round(time.Millisecond), 100*ratio, 100*targetReadRatio, verdict(res.ok() && ratio >= targetReadRatio))
		line += " | " + res.outcome()
		if split := res.fillSplit(); split != "" {
			line += " | " + split
		}
		summary(b, "%s", line)
	})
}

// copyProducts writes snaps as product rows with COPY.
func copyProducts(b *testing.B, db *postgres.DB, snaps []product.Snapshot) {
	b.Helper()
	rows := make([][]any, len(snaps))
	for i, s := range snaps {
		d := s.Details
		attrs := d.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		rows[i] = []any{string(s.ID), d.SKU, d.Name, d.Description, d.Category, d.Brand, d.Price.Amount(), d.Price.Currency(),
			d.Stock, attrs, s.Version, s.CreatedAt, s.UpdatedAt, s.DeletedAt}
	}
	n, err := db.Pool.CopyFrom(context.Background(), pgx.Identifier{"products"},
		[]string{"id", "sku", "name", "description", "category", "brand", "price_amount", "price_currency", "stock",
			"attributes", "version", "created_at", "updated_at", "deleted_at"}, pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(snaps)) {
		b.Fatalf("copy %d products: %d copied, %v", len(snaps), n, err)
	}
}

// openBleve opens the embedded read model on a fresh data directory; closed at the end.
func openBleve(b *testing.B, alias string) *bleve.Store {
	b.Helper()
	store, err := bleve.Open(bleve.Config{Dir: filepath.Join(b.TempDir(), "search"), Alias: "bench_" + alias})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	return store
}

// bleveDrain is a drain of the projector into Bleve.
type bleveDrain struct {
	drainResult
	apply        time.Duration
	aliasDocs    int64
	deadLettered int64
}

// drainBleveProjector runs the real projector over topic into store until n events were
// projected.
func drainBleveProjector(b *testing.B, k cluster, topic string, store *bleve.Store, n int) bleveDrain {
	b.Helper()
	log := quietLog()
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	pm, err := metrics.NewProjectorMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	obs := &countingObserver{next: pm}
	timed := &timedProjection{next: store}
	handler, err := command.NewProjectProductEventHandler(timed, decorator.Deps{Log: log, Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: k.brokers}, kafka.ConcurrentSubscriberConfig{ConsumerGroup: "bench-embedded-projector", FromOldest: true}, log)
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	prog := newProgress(n)
	go func() { done <- p.Run(ctx) }()
	deadline := time.After(5 * time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-done:
			b.Fatalf("projector stopped: %v", err)
		case <-deadline:
			b.Logf("embedded projector: timed out with %d of %d", obs.n.Load(), n)
			break loop
		case <-tick.C:
			if prog.observe(obs.n.Load()) {
				break loop
			}
		}
	}
	cancel()
	<-done
	_ = sub.Close()
	_ = dlq.Close()
	res := bleveDrain{drainResult: prog.res, deadLettered: obs.dead.Load()}
	if c := timed.n.Load(); c > 0 {
		res.apply = time.Duration(timed.ns.Load() / c)
	}
	if list, err := store.ListIndices(context.Background()); err == nil {
		for _, ix := range list {
			if ix.Aliased {
				res.aliasDocs = ix.Live + ix.Tombstones
			}
		}
	} else {
		b.Logf("list indices: %v", err)
	}
	return res
}

// rawBleveLoad indexes snaps into a fresh scorch index with the adapter's mapping
// (bleve.IndexMapping), in batches of rawBleveBatch from one goroutine, with Bleve's
// default (synchronous, persisted) batches. The documents are the adapter's fields, the
// source being the same JSON as the Elasticsearch baseline's. The clock runs from the first
// batch to the end of the last.
func rawBleveLoad(b *testing.B, snaps []product.Snapshot) drainResult {
	b.Helper()
	m, err := bleve.IndexMapping()
	if err != nil {
		b.Fatal(err)
	}
	bi, err := blevev2.NewUsing(filepath.Join(b.TempDir(), "raw"), m, scorch.Name, scorch.Name, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = bi.Close() }()
	docs := make([]map[string]any, len(snaps))
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		if docs[i], err = bleve.DocumentFields(s); err != nil {
			b.Fatal(err)
		}
		ids[i] = string(s.ID)
	}
	var indexed atomic.Int64
	p := newProgress(len(snaps))
	for start := 0; start < len(docs); start += rawBleveBatch {
		batch := bi.NewBatch()
		end := min(start+rawBleveBatch, len(docs))
		for i := start; i < end; i++ {
			if err := batch.Index(ids[i], docs[i]); err != nil {
				b.Fatalf("raw bleve: %v", err)
			}
		}
		if err := bi.Batch(batch); err != nil {
			b.Fatalf("raw bleve batch: %v", err)
		}
		indexed.Add(int64(end - start))
		p.observe(indexed.Load())
	}
	if n, err := bi.DocCount(); err != nil || n != uint64(len(snaps)) {
		b.Logf("raw bleve: %d documents, want %d (%v)", n, len(snaps), err)
	}
	return p.res
}

// searchNewest returns which of ids the search API finds now. The API has no id filter, so it
// pages through the newest products (sort=newest) until it has found them all or has gone past
// oldest (the longest-waiting id's POST time, same clock: same machine) by a second.
func searchNewest(ctx context.Context, base string, ids []string, oldest time.Time) ([]string, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var found []string
	cursor := ""
	for page := 0; page < 50; page++ {
		u := base + "/v1/products/search?sort=newest&size=100"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var out struct {
			Items []struct {
				ID        string    `json:"id"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		_ = res.Body.Close()
		if err != nil {
			return nil, err
		}
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("search: %s", res.Status)
		}
		for _, it := range out.Items {
			if want[it.ID] {
				found = append(found, it.ID)
			}
		}
		if len(found) == len(ids) || out.NextCursor == "" || len(out.Items) == 0 {
			break
		}
		last := out.Items[len(out.Items)-1].CreatedAt
		if (oldest.IsZero() && page >= 2) || (!oldest.IsZero() && last.Before(oldest.Add(-time.Second))) {
			break
		}
		cursor = out.NextCursor
	}
	return found, nil
}
