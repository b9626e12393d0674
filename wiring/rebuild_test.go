package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
)

const (
	srcDatabase = projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE
	srcKafka    = projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA
	phaseOK     = projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED
	phaseFailed = projectionv1.RebuildPhase_REBUILD_PHASE_FAILED
	phaseFill   = projectionv1.RebuildPhase_REBUILD_PHASE_FILL
)

// createProducts creates n products of category through the REST API and returns their ids.
func createProducts(t *testing.T, c *component, prefix, category string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = product201(t, c, fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("%s product %d", prefix, i), category, int64(100+i))
	}
	return ids
}

func productBody(sku, name, category string, amount, stock int64) string {
	return fmt.Sprintf(`{"sku":%q,"name":%q,"description":"rebuild test","category":%q,"brand":"Acme","price":{"amount":%d,"currency":"EUR"},"stock":%d,"attributes":{"color":"blue"}}`,
		sku, name, category, amount, stock)
}

// TestRebuildUnderLiveLoad: writers create, update and delete products through the REST API
// at a steady rate and a probe searches through the alias during a whole gRPC-started
// rebuild, from each source. The probe never gets an error or an incomplete result, and
// afterwards every product's (id, version, deleted) in the database equals the read model's.
func TestRebuildUnderLiveLoad(t *testing.T) {
	// The database rebuild gets 10,000 more products inserted with SQL, so that it runs for a
	// few seconds; the Kafka one replays only what has events.
	t.Run("database", func(t *testing.T) { rebuildUnderLiveLoad(t, srcDatabase, 10000) })
	t.Run("kafka", func(t *testing.T) { rebuildUnderLiveLoad(t, srcKafka, 0) })
}

func rebuildUnderLiveLoad(t *testing.T, src projectionv1.RebuildSource, sqlSeed int) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)

	const nProbe = 100
	createProducts(t, rp.component, "PROBE", "probe", nProbe)
	rp.waitSearch(t, "category=probe&size=1", 30*time.Second, "the probe's products", func(p searchPage) bool { return p.Total == nProbe })
	if sqlSeed > 0 {
		seedSQL(t, rp.db, sqlSeed, "LL")
	}
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	// Writers: about 30 writes/s in all, creates, updates and deletes of their own products.
	ctx, stopWriters := context.WithCancel(context.Background())
	var (
		wg        sync.WaitGroup
		writes    atomic.Int64
		writeErrs atomic.Int64
		errMu     sync.Mutex
		firstErrs []string
	)
	writeErr := func(format string, args ...any) {
		writeErrs.Add(1)
		errMu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, args...))
		}
		errMu.Unlock()
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			type own struct {
				id, sku string
				version int64
			}
			var mine []own
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				switch r := rng.IntN(10); {
				case len(mine) < 5 || r < 4:
					sku := fmt.Sprintf("LOAD-%d-%d", w, n)
					code, body, err := tryDo(rp.base, "POST", "/v1/products", productBody(sku, "Load "+sku, "load", 500, 5))
					if err != nil || code != 201 {
						writeErr("create %s: %d %v %v", sku, code, body, err)
						continue
					}
					mine = append(mine, own{id: body["id"].(string), sku: sku, version: 1})
				case r < 8:
					i := rng.IntN(len(mine))
					p := mine[i]
					code, body, err := tryDo(rp.base, "PUT", "/v1/products/"+p.id,
						productBody(p.sku, "Load "+p.sku, "load", int64(500+n), int64(n%20)), "If-Match", fmt.Sprint(p.version))
					if err != nil || code != 200 {
						writeErr("update %s v%d: %d %v %v", p.id, p.version, code, body, err)
						continue
					}
					mine[i].version = int64(body["version"].(float64))
				default:
					i := rng.IntN(len(mine))
					p := mine[i]
					code, body, err := tryDo(rp.base, "DELETE", "/v1/products/"+p.id, "", "If-Match", fmt.Sprint(p.version))
					if err != nil || code != 204 {
						writeErr("delete %s v%d: %d %v %v", p.id, p.version, code, body, err)
						continue
					}
					mine = append(mine[:i], mine[i+1:]...)
				}
				writes.Add(1)
			}
		}()
	}
	defer func() { stopWriters(); wg.Wait() }()

	// The probe: every search through the alias answers 200 with all the probe's products.
	probeCtx, stopProbe := context.WithCancel(context.Background())
	var (
		probes    atomic.Int64
		probeFail atomic.Int64
		probeMu   sync.Mutex
		probeErrs []string
		probeDone = make(chan struct{})
	)
	go func() {
		defer close(probeDone)
		for probeCtx.Err() == nil {
			res, err := http.Get(rp.base + "/v1/products/search?category=probe&size=1")
			probes.Add(1)
			var p searchPage
			code := 0
			if err == nil {
				code = res.StatusCode
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				_ = json.Unmarshal(raw, &p)
			}
			if err != nil || code != 200 || p.Total != nProbe || len(p.Items) != 1 {
				probeFail.Add(1)
				probeMu.Lock()
				if len(probeErrs) < 10 {
					probeErrs = append(probeErrs, fmt.Sprintf("%s: %d total=%d items=%d err=%v", time.Now().Format("15:04:05.000"), code, p.Total, len(p.Items), err))
				}
				probeMu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	eventuallyT(t, 10*time.Second, "the writers to get going", func() bool { return writes.Load() >= 20 })
	start := time.Now()
	r := startRebuild(t, client, src)
	phases := map[projectionv1.RebuildPhase]bool{}
	final := watchRebuild(t, client, r.GetId(), 50*time.Second, func(p *projectionv1.RebuildProgress) bool {
		phases[p.GetPhase()] = true
		return false
	})
	took := time.Since(start)
	writesDuring := writes.Load()
	// Keep writing a little past the switch, then stop.
	time.Sleep(time.Second)
	stopWriters()
	wg.Wait()
	stopProbe()
	<-probeDone

	if final.GetPhase() != phaseOK {
		t.Fatalf("rebuild ended %s: %s", final.GetPhase(), final.GetError())
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != final.GetToIndex() || got == from {
		t.Fatalf("alias on %s, want the rebuild's new index %s (was %s)", got, final.GetToIndex(), from)
	}
	if n := probeFail.Load(); n > 0 {
		t.Errorf("the probe failed %d of %d searches during the rebuild: %s", n, probes.Load(), strings.Join(probeErrs, "; "))
	}
	if n := writeErrs.Load(); n > 0 {
		t.Errorf("%d writes failed: %s", n, strings.Join(firstErrs, "; "))
	}
	n := awaitReadModelMatchesDB(t, rp, 30*time.Second)
	t.Logf("%s rebuild took %s (phases seen %d); %d writes by then, %d in all; %d probe searches, none failed; %d products match the read model",
		src, took.Round(time.Millisecond), len(phases), writesDuring, writes.Load(), probes.Load(), n)
}

// TestRebuildDatabaseAndKafkaSourcesAgree: a database-sourced and a Kafka-sourced rebuild of
// the same data produce the same documents (ids, external versions and sources), which are
// also those the live projector wrote.
func TestRebuildDatabaseAndKafkaSourcesAgree(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	ids := createProducts(t, rp.component, "SRC", "sources", 30)
	for i, id := range ids[:12] {
		if r := rp.do(t, "PUT", "/v1/products/"+id, productBody(fmt.Sprintf("SRC-%d", i), "Renamed", "sources", 777, 0), "If-Match", "1"); r.status != 200 {
			t.Fatalf("update: %d %v", r.status, r.body)
		}
	}
	for i, id := range ids[:4] { // a second update of some
		if r := rp.do(t, "PUT", "/v1/products/"+id, productBody(fmt.Sprintf("SRC-%d", i), "Renamed twice", "sources", 778, 9), "If-Match", "2"); r.status != 200 {
			t.Fatalf("update: %d %v", r.status, r.body)
		}
	}
	for _, id := range ids[20:26] {
		if r := rp.do(t, "DELETE", "/v1/products/"+id, "", "If-Match", "1"); r.status != 204 {
			t.Fatalf("delete: %d %v", r.status, r.body)
		}
	}
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
	live := dumpIndex(t, rp.esURL, rp.cfg.SearchAlias)
	liveSettings := indexSettings(t, rp.esURL, aliasIndex(t, rp.esURL, rp.cfg.SearchAlias))

	fromDB := runRebuild(t, client, srcDatabase)
	dbDocs := dumpIndex(t, rp.esURL, fromDB.GetToIndex())
	fromKafka := runRebuild(t, client, srcKafka)
	kafkaDocs := dumpIndex(t, rp.esURL, fromKafka.GetToIndex())
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != fromKafka.GetToIndex() || fromKafka.GetFromIndex() != fromDB.GetToIndex() {
		t.Fatalf("alias on %s; database rebuild %s -> %s, kafka rebuild %s -> %s", got,
			fromDB.GetFromIndex(), fromDB.GetToIndex(), fromKafka.GetFromIndex(), fromKafka.GetToIndex())
	}
	if len(dbDocs) != len(ids) {
		t.Fatalf("database rebuild has %d documents, want %d", len(dbDocs), len(ids))
	}
	// The bulk-load settings (refresh off, no replicas) were put back before the switch.
	for _, ix := range []string{fromDB.GetToIndex(), fromKafka.GetToIndex()} {
		if got := indexSettings(t, rp.esURL, ix); got != liveSettings {
			t.Errorf("settings of the rebuilt %s: %s, want those of a live index: %s", ix, got, liveSettings)
		}
	}
	diff := func(a, b map[string]indexDoc, an, bn string) {
		t.Helper()
		if reflect.DeepEqual(a, b) {
			return
		}
		var lines []string
		for id, d := range a {
			if e, ok := b[id]; !ok || e != d {
				lines = append(lines, fmt.Sprintf("%s\n  %s: v%d %s\n  %s: v%d %s (present %v)", id, an, d.Version, d.Source, bn, e.Version, e.Source, ok))
			}
		}
		for id := range b {
			if _, ok := a[id]; !ok {
				lines = append(lines, fmt.Sprintf("%s only in %s", id, bn))
			}
		}
		sort.Strings(lines)
		if len(lines) > 5 {
			lines = append(lines[:5], fmt.Sprintf("... %d in all", len(lines)))
		}
		t.Errorf("%s and %s differ:\n%s", an, bn, strings.Join(lines, "\n"))
	}
	diff(dbDocs, kafkaDocs, "database rebuild", "kafka rebuild")
	diff(dbDocs, live, "database rebuild", "live projection")
}

// TestRebuildSingleFlight: two StartRebuild calls at once, on one process and on two service
// processes sharing the database and the alias: exactly one runs, the other is refused with
// FAILED_PRECONDITION / REBUILD_ALREADY_RUNNING.
func TestRebuildSingleFlight(t *testing.T) {
	rp := startReadPath(t)
	seedSQL(t, rp.db, 5000, "SF") // so a rebuild runs for a while (it holds the lock to its end anyway)
	a := adminClient(t, rp.cfg.GRPCAddr)
	other := startServeProc(t, siblingConfig(t, rp.cfg))
	b := adminClient(t, other.cfg.GRPCAddr)

	race := func(name string, clients ...projectionv1.ProjectionAdminClient) *projectionv1.Rebuild {
		t.Helper()
		before := rebuildCount(t, rp.db)
		type result struct {
			r   *projectionv1.Rebuild
			err error
		}
		results := make([]result, len(clients))
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				<-gate
				results[i].r, results[i].err = c.StartRebuild(ctx, &projectionv1.StartRebuildRequest{Source: srcDatabase})
			}()
		}
		close(gate)
		wg.Wait()
		var winner *projectionv1.Rebuild
		for i, res := range results {
			if res.err == nil {
				if winner != nil {
					t.Fatalf("%s: two rebuilds started: %s and %s", name, winner.GetId(), res.r.GetId())
				}
				winner = res.r
				continue
			}
			code, reason, _ := errorInfo(res.err)
			if code != codes.FailedPrecondition || reason != "REBUILD_ALREADY_RUNNING" {
				t.Errorf("%s: call %d refused with %s / %q, want FailedPrecondition / REBUILD_ALREADY_RUNNING: %v", name, i, code, reason, res.err)
			}
		}
		if winner == nil {
			t.Fatalf("%s: no rebuild started: %v", name, results)
		}
		// Any replica reports it: follow it through the other one.
		final := watchRebuild(t, clients[len(clients)-1], winner.GetId(), 50*time.Second, nil)
		if final.GetPhase() != phaseOK {
			t.Fatalf("%s: rebuild %s ended %s: %s", name, final.GetId(), final.GetPhase(), final.GetError())
		}
		if n := rebuildCount(t, rp.db) - before; n != 1 {
			t.Fatalf("%s: %d rebuild records were created, want 1", name, n)
		}
		t.Logf("%s: %s won, %d documents in %s", name, final.GetId(), final.GetDocsDone(),
			final.GetFinishedAt().AsTime().Sub(final.GetStartedAt().AsTime()).Round(time.Millisecond))
		return final
	}
	race("one process", a, a)
	race("two processes", a, b)

	// While one runs on process A, process B refuses and names it.
	r := startRebuild(t, a, srcDatabase)
	_, err := b.StartRebuild(context.Background(), &projectionv1.StartRebuildRequest{Source: srcKafka})
	code, reason, meta := errorInfo(err)
	if code != codes.FailedPrecondition || reason != "REBUILD_ALREADY_RUNNING" || meta["rebuild_id"] != r.GetId() {
		t.Errorf("second process: %s / %q / %v, want FailedPrecondition / REBUILD_ALREADY_RUNNING naming %s: %v", code, reason, meta, r.GetId(), err)
	}
	if final := watchRebuild(t, b, r.GetId(), 50*time.Second, nil); final.GetPhase() != phaseOK {
		t.Fatalf("rebuild %s ended %s: %s", final.GetId(), final.GetPhase(), final.GetError())
	}
	// And afterwards the other process can run one.
	runRebuild(t, b, srcDatabase)
}

// TestRebuildReportsDocumentCounts: WatchRebuild's "documents done and expected" of a
// database rebuild with no writes going on: done never goes backwards, and a rebuild that
// succeeded reports every product of the snapshot done (what `catalog rebuild --wait` prints).
func TestRebuildReportsDocumentCounts(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	const n = 12001
	seedSQL(t, rp.db, n, "CNT")
	r := startRebuild(t, client, srcDatabase)
	var seen []string
	var prev int64
	var backwards []string
	final := watchRebuild(t, client, r.GetId(), 50*time.Second, func(p *projectionv1.RebuildProgress) bool {
		step := fmt.Sprintf("%s %d/%d", strings.TrimPrefix(p.GetPhase().String(), "REBUILD_PHASE_"), p.GetDocsDone(), p.GetDocsTotal())
		seen = append(seen, step)
		if p.GetDocsDone() < prev {
			backwards = append(backwards, step)
		}
		prev = max(prev, p.GetDocsDone())
		return false
	})
	t.Logf("progress: %s", strings.Join(seen, ", "))
	if final.GetPhase() != phaseOK {
		t.Fatalf("rebuild ended %s: %s", final.GetPhase(), final.GetError())
	}
	if len(backwards) > 0 {
		t.Errorf("documents done went backwards: %s", strings.Join(backwards, ", "))
	}
	if final.GetDocsDone() != n || final.GetDocsTotal() != n {
		t.Errorf("the succeeded rebuild of %d products reports %d of %d documents done", n, final.GetDocsDone(), final.GetDocsTotal())
	}
}

// TestRebuildKeepsLiveWritesFlowing: while a database rebuild fills its new index, a product
// written through the API becomes searchable (through the alias, on the old index) about as
// fast as without a rebuild: the rebuild must not stall the outbox relay, the projector or
// the read model for the length of its fill.
func TestRebuildKeepsLiveWritesFlowing(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	createProducts(t, rp.component, "FLOW", "flow", 5)
	rp.waitSearch(t, "category=flow&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 5 })
	start := time.Now()
	product201(t, rp.component, "FLOW-before", "Before the rebuild", "flow", 1)
	rp.waitSearch(t, "category=flow&size=1", 10*time.Second, "a write without a rebuild", func(p searchPage) bool { return p.Total == 6 })
	without := time.Since(start)

	seedSQL(t, rp.db, 60000, "FL") // a fill of well over ten seconds (cancelled once measured)
	r := startRebuild(t, client, srcDatabase)
	defer func() {
		_, _ = client.CancelRebuild(context.Background(), &projectionv1.CancelRebuildRequest{Id: r.GetId()})
		watchRebuild(t, client, r.GetId(), 30*time.Second, nil)
	}()
	watchRebuild(t, client, r.GetId(), 30*time.Second, func(p *projectionv1.RebuildProgress) bool {
		return p.GetPhase() == phaseFill && p.GetDocsDone() > 0
	})
	start = time.Now()
	product201(t, rp.component, "FLOW-during", "During the fill", "flow", 1)
	// Evidence for a failure: the oldest transaction holding an xid in this database, and the
	// horizon the outbox relay forwards up to (rows of transactions below the xmin only).
	var holder string
	if err := rp.db.Pool.QueryRow(context.Background(), `SELECT coalesce((SELECT format('pid %s xid %s open %s: %s', pid, backend_xid,
  date_trunc('millisecond', now() - xact_start), left(query, 80)) FROM pg_stat_activity
  WHERE datname = current_database() AND backend_xid IS NOT NULL ORDER BY xact_start LIMIT 1), 'none')
  || ' / relay horizon pg_snapshot_xmin = ' || pg_snapshot_xmin(pg_current_snapshot())`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	limit := without + 3*time.Second
	for {
		code, p := rp.search(t, "category=flow&size=1")
		if code == 200 && p.Total == 7 {
			t.Logf("searchable after %s without a rebuild, %s during the fill", without.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > limit {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec, err := client.GetRebuild(context.Background(), &projectionv1.GetRebuildRequest{Id: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	t.Errorf("a write during the fill is not searchable after %s (%s without a rebuild; the rebuild is in %s at %d of %d documents): "+
		"the rebuild stalls the live pipeline; oldest transaction with an xid right after the write: %s",
		limit.Round(time.Millisecond), without.Round(time.Millisecond), rec.GetPhase(), rec.GetDocsDone(), rec.GetDocsTotal(), holder)
}

// TestRebuildFromKafkaWaitsForTheOutbox: a product committed before a Kafka-sourced rebuild
// takes its database snapshot, whose event the outbox relay has not forwarded yet (the relay
// forwards only transactions older than the oldest one still running, and a long
// transaction elsewhere on the server holds that back for a few seconds). The snapshot holds
// the product, the log does not yet: the rebuild must wait for the log to catch up with its
// snapshot instead of failing validation.
func TestRebuildFromKafkaWaitsForTheOutbox(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	createProducts(t, rp.component, "OBX", "outbox", 5)
	rp.waitSearch(t, "category=outbox&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 5 })

	ctx := context.Background()
	conn, err := rp.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { _ = tx.Rollback(context.Background()) }) }
	defer release()
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // takes an xid
		t.Fatal(err)
	}
	late := product201(t, rp.component, "OBX-late", "Committed, not yet relayed", "outbox", 1)
	time.Sleep(1500 * time.Millisecond)
	_, p := rp.search(t, "category=outbox&size=1")
	t.Logf("1.5 s after the write, with the long transaction open, search shows %d of 6 products", p.Total)

	r := startRebuild(t, client, srcKafka)
	time.AfterFunc(3*time.Second, release) // the long transaction ends; the relay forwards the event
	final := watchRebuild(t, client, r.GetId(), 50*time.Second, nil)
	if final.GetPhase() != phaseOK {
		t.Fatalf("the Kafka rebuild ended %s: %s (the product %s was committed before its snapshot and relayed a few seconds later)",
			final.GetPhase(), final.GetError(), late)
	}
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
}
