package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/service"
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

// TestRebuildKilledDuringFillResumes: the service process running a rebuild is SIGKILLed in
// the fill phase. The alias still points at the old index and search serves; within seconds
// the other replica reports the rebuild's runner as lost, and its recovery resumes the rebuild
// under the same id from its last completed chunk, without any restart: the same new index,
// documents done counting on from where the record stood (never below), one resume recorded.
// The rebuild succeeds with every product, the alias moves to its index, validation passed and
// `catalog verify` is clean.
func TestRebuildKilledDuringFillResumes(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "KILL", "kill", 20)
	rp.waitSearch(t, "category=kill&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 20 })
	// A fill long enough to be seen and killed in: progress is saved every 500 ms and watched
	// every 300 ms, so a fill under a second (20,000 products on a quiet machine) can go from
	// its first saved progress to done between two looks.
	seedSQL(t, rp.db, 80000, "KF")
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	victim := startServeProc(t, siblingConfig(t, rp.cfg))
	vc := adminClient(t, victim.cfg.GRPCAddr)
	r := startRebuild(t, vc, srcDatabase)
	seen := awaitFill(t, vc, r.GetId(), 30*time.Second)
	victim.kill(t)
	killedAt := time.Now()
	newIndex := seen.GetToIndex()
	if newIndex == "" {
		t.Fatal("the record in fill names no new index")
	}

	// As the record says, the process died in fill (not after it), and its runner was alive.
	a := adminClient(t, rp.cfg.GRPCAddr)
	rec, err := a.GetRebuild(context.Background(), &projectionv1.GetRebuildRequest{Id: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetPhase() != phaseFill || rec.GetDocsDone() == 0 || rec.GetRunner() == "" {
		t.Fatalf("after the kill the record says %s at %d documents, runner %q; want fill with some written and its runner", rec.GetPhase(), rec.GetDocsDone(), rec.GetRunner())
	}
	atKill := rec.GetDocsDone()
	t.Logf("killed in fill at %d of %d documents", atKill, rec.GetDocsTotal())
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
		t.Fatalf("alias on %s after the kill, want the old index %s", got, from)
	}
	rp.waitSearch(t, "category=kill&size=1", 5*time.Second, "search through the surviving process", func(p searchPage) bool { return p.Total == 20 })

	// The surviving replica says the runner is gone within seconds, then resumes the rebuild.
	var lostAfter, resumedAfter time.Duration
	low := atKill
	var steps []string
	final := watchRebuild(t, a, r.GetId(), 5*time.Minute, func(p *projectionv1.RebuildProgress) bool {
		rb := p.GetRebuild()
		if rb.GetRunnerLost() && lostAfter == 0 {
			lostAfter = time.Since(killedAt)
			if out, _, code := runCLI(t, rp.cfg.GRPCAddr, 30*time.Second, "rebuild", "status", r.GetId()); code != 0 || !strings.Contains(out, "NOT RESPONDING") {
				t.Errorf("catalog rebuild status of the dead runner's rebuild (exit %d):\n%s", code, out)
			}
		}
		if rb.GetResumes() > 0 && resumedAfter == 0 {
			resumedAfter = time.Since(killedAt)
		}
		if p.GetPhase() == phaseFill {
			low = min(low, p.GetDocsDone())
		}
		steps = append(steps, fmt.Sprintf("%s %d/%d resumes=%d", strings.TrimPrefix(p.GetPhase().String(), "REBUILD_PHASE_"), p.GetDocsDone(), p.GetDocsTotal(), rb.GetResumes()))
		return false
	})
	t.Logf("runner reported lost %s after the kill, rebuild resumed %s after it; progress: %s", lostAfter.Round(100*time.Millisecond),
		resumedAfter.Round(100*time.Millisecond), strings.Join(compactSteps(steps), ", "))
	if final.GetPhase() != phaseOK || final.GetResumes() != 1 || final.GetToIndex() != newIndex || final.GetRunner() == seen.GetRunner() {
		t.Fatalf("the rebuild ended %s (%q), resumed %d times by %q on %s; want succeeded, resumed once by the surviving replica on %s",
			final.GetPhase(), final.GetError(), final.GetResumes(), final.GetRunner(), final.GetToIndex(), newIndex)
	}
	if lostAfter == 0 {
		t.Error("no replica reported the dead runner before the rebuild was resumed")
	}
	if low < atKill {
		t.Errorf("documents done went back from %d to %d after the kill", atKill, low)
	}
	total := productCount(t, rp.db)
	if final.GetDocsDone() != total || final.GetDocsTotal() != total {
		t.Errorf("the resumed rebuild reports %d of %d documents, want all %d products once", final.GetDocsDone(), final.GetDocsTotal(), total)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != newIndex {
		t.Fatalf("alias on %s after the resumed rebuild, want %s", got, newIndex)
	}
	if out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, time.Minute, "verify"); code != 0 {
		t.Fatalf("catalog verify after the resumed rebuild: exit %d\n%s\n%s", code, out, errOut)
	}
	rp.waitSearch(t, "category=kill&size=1", 10*time.Second, "search after the resumed rebuild", func(p searchPage) bool { return p.Total == 20 })
}

// compactSteps drops consecutive repeats of a progress step, for a readable log.
func compactSteps(steps []string) []string {
	var out []string
	for _, s := range steps {
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	if len(out) > 40 {
		out = append(append(out[:20], "..."), out[len(out)-19:]...)
	}
	return out
}

// lockHolder returns the backend pid holding the rebuild lock in db's database, 0 if none.
func lockHolder(t *testing.T, db *postgres.DB) int32 {
	t.Helper()
	var pid int32
	err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(max(pid), 0) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
		postgres.RebuildLockKey()).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestRebuildLockLostHandsTheRunOff: the database session holding the rebuild lock is
// terminated in the middle of a fill (an administrator, idle_session_timeout, a pooler, a
// network blip). Nothing keeps a second rebuild out any more, so the running one stops within
// seconds; it keeps its index and progress and hands the record off, and a serving replica's
// recovery, which takes the lock, resumes it under the same id. A replica started while the
// runner still lives leaves it alone. The rebuild then succeeds on the index it began.
func TestRebuildLockLostHandsTheRunOff(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "LOCK", "lock", 10)
	rp.waitSearch(t, "category=lock&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 10 })
	seedSQL(t, rp.db, 80000, "LK") // a fill long enough to act in (see TestRebuildKilledDuringFillResumes)
	a := adminClient(t, rp.cfg.GRPCAddr)
	r := startRebuild(t, a, srcDatabase)
	seen := awaitFill(t, a, r.GetId(), 30*time.Second)

	pid := lockHolder(t, rp.db)
	if pid == 0 {
		t.Fatal("nobody holds the rebuild lock during the fill")
	}
	if _, err := rp.db.Pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	// A replica starting now runs its recovery at once: the rebuild's runner is alive, so the
	// rebuild is not its to recover until the runner has handed it off.
	replica := serveInProcess(t, siblingConfig(t, rp.cfg))
	b := adminClient(t, replica.cfg.GRPCAddr)

	var stoppedAfter time.Duration
	final := watchRebuild(t, b, r.GetId(), 5*time.Minute, func(p *projectionv1.RebuildProgress) bool {
		if p.GetRebuild().GetRunner() != seen.GetRunner() && stoppedAfter == 0 {
			stoppedAfter = time.Since(cutAt)
		}
		return false
	})
	t.Logf("the runner gave the rebuild up %s after its lock's session was terminated; it ended %s on %s, resumed %d times",
		stoppedAfter.Round(100*time.Millisecond), final.GetPhase(), final.GetToIndex(), final.GetResumes())
	if final.GetPhase() != phaseOK || final.GetResumes() != 1 || final.GetToIndex() != seen.GetToIndex() {
		t.Fatalf("rebuild ended %s (%q), resumed %d times, on %s; want succeeded, resumed once, on %s",
			final.GetPhase(), final.GetError(), final.GetResumes(), final.GetToIndex(), seen.GetToIndex())
	}
	if stoppedAfter > 15*time.Second {
		t.Errorf("the run went on for %s without its lock", stoppedAfter.Round(time.Second))
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != final.GetToIndex() {
		t.Fatalf("alias on %s, want %s", got, final.GetToIndex())
	}
	awaitReadModelMatchesDB(t, rp, 30*time.Second)
}

// TestRebuildCancelAndShutdown: a rebuild cancelled through another replica ends cancelled
// with the unfinished index deleted and the alias untouched; one whose process is shut down
// (SIGTERM, a deploy) is handed off and resumed by the other replica under the same id, and
// succeeds; the next rebuild can start at once.
func TestRebuildCancelAndShutdown(t *testing.T) {
	rp := startReadPath(t)
	seedSQL(t, rp.db, 80000, "CS") // long enough a fill to be seen and cancelled in (see TestRebuildKilledDuringFillResumes)
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	a := adminClient(t, rp.cfg.GRPCAddr)
	check := func(t *testing.T, c projectionv1.ProjectionAdminClient, id, index string) {
		t.Helper()
		rec := watchRebuild(t, c, id, time.Minute, nil)
		if rec.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED {
			t.Errorf("rebuild %s ended %s (%q), want cancelled", id, rec.GetPhase(), rec.GetError())
		}
		if index == "" || indexExists(t, rp.esURL, index) {
			t.Errorf("the unfinished index %q was not deleted", index)
		}
		if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
			t.Fatalf("alias on %s, want %s", got, from)
		}
	}

	t.Run("cancel through another replica", func(t *testing.T) {
		replica := serveInProcess(t, siblingConfig(t, rp.cfg))
		b := adminClient(t, replica.cfg.GRPCAddr)
		r := startRebuild(t, a, srcDatabase)
		seen := awaitFill(t, b, r.GetId(), 30*time.Second)
		if _, err := b.CancelRebuild(context.Background(), &projectionv1.CancelRebuildRequest{Id: r.GetId()}); err != nil {
			t.Fatalf("CancelRebuild through the other replica: %v", err)
		}
		check(t, a, r.GetId(), seen.GetToIndex())
		_, err := b.CancelRebuild(context.Background(), &projectionv1.CancelRebuildRequest{Id: r.GetId()})
		if code, reason, _ := errorInfo(err); code != codes.FailedPrecondition || reason != "REBUILD_FINISHED" {
			t.Errorf("cancel of a finished rebuild: %s / %q (%v)", code, reason, err)
		}
	})
	t.Run("SIGTERM", func(t *testing.T) {
		proc := startServeProc(t, siblingConfig(t, rp.cfg))
		c := adminClient(t, proc.cfg.GRPCAddr)
		r := startRebuild(t, c, srcDatabase)
		seen := awaitFill(t, c, r.GetId(), 30*time.Second)
		termAt := time.Now()
		if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-proc.done:
		case <-time.After(30 * time.Second):
			t.Fatal("catalog serve did not stop within 30 s of SIGTERM")
		}
		t.Logf("catalog serve stopped %s after SIGTERM", time.Since(termAt).Round(time.Millisecond))
		if proc.err != nil {
			t.Errorf("catalog serve after SIGTERM: %v", proc.err)
		}
		if !strings.Contains(proc.output.String(), "rebuild interrupted; a replica holding the lock resumes it") {
			t.Errorf("the stopping process did not log the hand-off:\n%s", tail(proc.output.String(), 20))
		}
		rec := watchRebuild(t, a, r.GetId(), 5*time.Minute, nil)
		t.Logf("the handed-off rebuild ended %s %s after SIGTERM, resumed %d times", rec.GetPhase(), time.Since(termAt).Round(100*time.Millisecond), rec.GetResumes())
		if rec.GetPhase() != phaseOK || rec.GetResumes() != 1 || rec.GetToIndex() != seen.GetToIndex() {
			t.Fatalf("rebuild %s ended %s (%q), resumed %d times on %s; want succeeded, resumed once on %s",
				r.GetId(), rec.GetPhase(), rec.GetError(), rec.GetResumes(), rec.GetToIndex(), seen.GetToIndex())
		}
		from = rec.GetToIndex()
		if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
			t.Fatalf("alias on %s, want %s", got, from)
		}
	})
	// Nothing holds the lock: a rebuild starts at once (and is cancelled again, to save time).
	r := startRebuild(t, a, srcDatabase)
	if _, err := a.CancelRebuild(context.Background(), &projectionv1.CancelRebuildRequest{Id: r.GetId()}); err != nil {
		t.Fatal(err)
	}
	if rec := watchRebuild(t, a, r.GetId(), 30*time.Second, nil); rec.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED {
		t.Errorf("rebuild %s ended %s (%q), want cancelled", rec.GetId(), rec.GetPhase(), rec.GetError())
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
		t.Fatalf("alias on %s, want %s", got, from)
	}
}

// TestRebuildValidationFailureDoesNotSwitch: the new index damaged before validation (the
// BeforeValidate test hook) fails the rebuild before the switch: the record is failed and
// names the document, the alias is untouched, the new index is gone. A product removed from
// the new index, and a live document the database does not know.
func TestRebuildValidationFailureDoesNotSwitch(t *testing.T) {
	rp := startReadPath(t)
	ids := createProducts(t, rp.component, "VAL", "validation", 10)
	rp.waitSearch(t, "category=validation&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 10 })

	t.Run("missing document", func(t *testing.T) {
		missing := ids[3]
		failedValidation(t, rp, missing, "missing", func(t *testing.T, index string) {
			code, raw := esRequest(t, "DELETE", rp.esURL+"/"+index+"/_doc/"+missing+"?refresh=true", "")
			if code != http.StatusOK {
				t.Errorf("hook: delete %s from %s: %d %s", missing, index, code, raw)
			}
		})
	})
	t.Run("unknown document", func(t *testing.T) {
		phantom := "01900000-0000-7000-8000-00000000beef"
		failedValidation(t, rp, phantom, "does not know", func(t *testing.T, index string) {
			code, raw := esRequest(t, "GET", rp.esURL+"/"+index+"/_doc/"+ids[0], "")
			var doc struct {
				Source map[string]any `json:"_source"`
			}
			if code != http.StatusOK || json.Unmarshal(raw, &doc) != nil {
				t.Errorf("hook: get %s from %s: %d %s", ids[0], index, code, raw)
				return
			}
			doc.Source["id"], doc.Source["sku"] = phantom, "PHANTOM"
			body, _ := json.Marshal(doc.Source)
			code, raw = esRequest(t, "PUT", rp.esURL+"/"+index+"/_doc/"+phantom+"?version=1&version_type=external&refresh=true", string(body))
			if code != http.StatusCreated {
				t.Errorf("hook: put %s into %s: %d %s", phantom, index, code, raw)
			}
		})
	})
}

// failedValidation runs a database rebuild through a rebuild.Service built here on the real
// adapters, with damage as its BeforeValidate hook, and checks that it failed in validation
// naming id (and saying what), without switching the alias.
func failedValidation(t *testing.T, rp *readPath, id, what string, damage func(*testing.T, string)) {
	ctx := context.Background()
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	var hookIndex atomic.Value
	svc := newRebuildService(t, rp, rp.esURL, func(_ context.Context, index string) {
		hookIndex.Store(index)
		damage(t, index)
	})
	started, err := svc.Start(ctx, readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	final := awaitServiceRebuild(t, svc, started.ID)

	if final.Phase != readmodel.PhaseFailed {
		t.Fatalf("rebuild ended %s (%q), want failed", final.Phase, final.Error)
	}
	if !strings.Contains(final.Error, id) || !strings.Contains(final.Error, what) {
		t.Errorf("the failure does not name the document %s (%q): %q", id, what, final.Error)
	}
	t.Logf("recorded failure: %s", final.Error)
	idx, _ := hookIndex.Load().(string)
	if idx == "" || idx != final.ToIndex {
		t.Fatalf("the hook ran on %q, the record names %q", idx, final.ToIndex)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
		t.Fatalf("alias moved to %s, want it on %s", got, from)
	}
	if indexExists(t, rp.esURL, idx) {
		t.Errorf("the failed rebuild's index %s was not deleted", idx)
	}
	// Any replica reports the failure.
	rec, err := adminClient(t, rp.cfg.GRPCAddr).GetRebuild(ctx, &projectionv1.GetRebuildRequest{Id: started.ID})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetPhase() != phaseFailed || !strings.Contains(rec.GetError(), id) {
		t.Errorf("through gRPC the record says %s %q", rec.GetPhase(), rec.GetError())
	}
	rp.waitSearch(t, "category=validation&size=1", 5*time.Second, "search unchanged", func(p searchPage) bool { return p.Total == 10 })
}

// newRebuildService builds the rebuild use case on the real adapters of rp's deployment (the
// database, the topic, the alias), talking to the search cluster at esURL, with hook as its
// BeforeValidate test hook.
func newRebuildService(t *testing.T, rp *readPath, esURL string, hook func(context.Context, string)) *rebuild.Service {
	t.Helper()
	return newRebuildServiceWith(t, rp, esURL, rebuild.Config{BeforeValidate: hook}, nil)
}

// newRebuildServiceWith is newRebuildService with cfg (its settle time and projector group are
// the deployment's) and, when wrap is not nil, the product source wrap returns around the
// real one.
func newRebuildServiceWith(t *testing.T, rp *readPath, esURL string, cfg rebuild.Config, wrap func(rebuild.ProductSource) rebuild.ProductSource) *rebuild.Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := postgres.NewRebuildStore(rp.db)
	if err != nil {
		t.Fatal(err)
	}
	var source rebuild.ProductSource
	if source, err = postgres.NewProductSource(rp.db); err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		source = wrap(source)
	}
	events, err := kafka.NewEventLog(kafka.Config{Brokers: rp.kafka.Brokers}, rp.cfg.ProductEventsTopic, log)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := elasticsearch.Config{URL: esURL, Compat: rp.compat, Alias: rp.cfg.SearchAlias}
	es, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	indices, err := elasticsearch.NewIndices(es, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	target, err := elasticsearch.NewTarget(es, indices, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Settle, cfg.ProjectorGroup = rp.cfg.SearchRefreshInterval, rp.cfg.ProjectorGroup
	svc, err := rebuild.NewService(cfg, store, source, events, target, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.HandOffAll()
		svc.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = target.Close(ctx)
		events.Close()
	})
	return svc
}

func awaitServiceRebuild(t *testing.T, svc *rebuild.Service, id string) readmodel.Snapshot {
	t.Helper()
	var final readmodel.Snapshot
	eventuallyT(t, 40*time.Second, "the rebuild to end", func() bool {
		s, err := svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		final = s
		return s.Phase.Terminal()
	})
	svc.Wait()
	return final
}

// TestRebuildDrainFailureLosesNoWrites: writes the live projector applies to the old index
// between catch-up and the switch reach the new index only through the drain. Here the
// search cluster refuses the rebuild's bulk writes for a while once the alias has been
// switched (an outage in the drain; the process dying in the drain has the same effect). Whatever the rebuild's record then says, once
// the pipeline has settled the read model behind the alias must hold every product of the
// database: a rebuild must never leave acknowledged writes out of the live read model.
func TestRebuildDrainFailureLosesNoWrites(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "DR", "drain", 10)
	rp.waitSearch(t, "category=drain&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 10 })
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	// The rebuild's view of the search cluster: once an _aliases request went through, every
	// _bulk request is answered 503, for 10 s or until the rebuild has ended.
	target, err := url.Parse(rp.esURL)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	var switchedAt atomic.Int64
	var ended atomic.Bool
	var refused atomic.Int64
	outage := func() bool {
		at := switchedAt.Load()
		return at != 0 && !ended.Load() && time.Since(time.Unix(0, at)) < 10*time.Second
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if outage() && strings.HasSuffix(r.URL.Path, "/_bulk") {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"type":"test_outage","reason":"refused by the test"},"status":503}`)
			return
		}
		forward.ServeHTTP(w, r)
		if r.URL.Path == "/_aliases" {
			switchedAt.CompareAndSwap(0, time.Now().UnixNano())
		}
	}))
	defer proxy.Close()

	// Between catch-up and validation, products are created through the API and projected by
	// the live projector into the old index (through the alias): events past the catch-up.
	var window []string
	svc := newRebuildService(t, rp, proxy.URL, func(context.Context, string) {
		for i := range 5 {
			code, body, err := tryDo(rp.base, "POST", "/v1/products", productBody(fmt.Sprintf("DR-W-%d", i), "In the window", "drain", 5, 1))
			if err != nil || code != 201 {
				t.Errorf("hook: create: %d %v %v", code, body, err)
				return
			}
			window = append(window, body["id"].(string))
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if _, p := rp.search(t, "category=drain&size=1"); p.Total == 15 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("hook: the window's products never reached the old index")
	})
	started, err := svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	final := awaitServiceRebuild(t, svc, started.ID)
	ended.Store(true)
	now := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	t.Logf("rebuild ended %s (%q); alias %s -> %s (was %s); %d bulk requests refused after the switch",
		final.Phase, final.Error, final.FromIndex, now, from, refused.Load())
	if len(window) != 5 {
		t.Fatalf("the hook created %d products", len(window))
	}
	awaitReadModelMatchesDB(t, rp, 5*time.Second)
	rp.waitSearch(t, "category=drain&size=1", 5*time.Second, "all 15 products searchable", func(p searchPage) bool { return p.Total == 15 })
}

// TestRebuildCancelledDuringSwitchKeepsTheAlias: a rebuild cancelled (CancelRebuild) while
// its _aliases request is in flight. The request reaches the
// cluster although the client gave up on it, as a request does that was sent just before the
// cancellation. Whatever the rebuild then records, the alias must still exist on a complete
// index: search must keep serving.
func TestRebuildCancelledDuringSwitchKeepsTheAlias(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "SW", "switch", 5)
	rp.waitSearch(t, "category=switch&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 5 })
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	// The cluster as the rebuild sees it: the first _aliases request cancels the rebuild. If
	// the client abandons the request, it is applied anyway, just before the next DELETE (the
	// cleanup's) reaches the cluster; a client that waits gets its answer as usual.
	target, err := url.Parse(rp.esURL)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	var (
		svc       *rebuild.Service
		mu        sync.Mutex
		seenAlias bool
		stashed   []byte
		abandoned atomic.Bool
	)
	landed := make(chan struct{})
	apply := func(body []byte) {
		code, raw := esRequest(t, "POST", rp.esURL+"/_aliases", string(body))
		t.Logf("the abandoned _aliases request applied: %d %s", code, raw)
		close(landed)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.Method == "POST" && r.URL.Path == "/_aliases" && !seenAlias {
			seenAlias = true
			mu.Unlock()
			body, _ := io.ReadAll(r.Body)
			if cur, err := svc.Get(context.Background(), ""); err == nil {
				_, _ = svc.Cancel(context.Background(), cur.ID)
			}
			select {
			case <-r.Context().Done(): // the rebuild gave up on its switch
				abandoned.Store(true)
				mu.Lock()
				stashed = body
				mu.Unlock()
				time.AfterFunc(5*time.Second, func() {
					mu.Lock()
					b := stashed
					stashed = nil
					mu.Unlock()
					if b != nil {
						apply(b)
					}
				})
				return
			case <-time.After(3 * time.Second):
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
			forward.ServeHTTP(w, r)
			return
		}
		b := stashed
		if r.Method == "DELETE" {
			stashed = nil
		} else {
			b = nil
		}
		mu.Unlock()
		if b != nil {
			apply(b)
		}
		forward.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	svc = newRebuildService(t, rp, proxy.URL, nil)
	started, err := svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	final := awaitServiceRebuild(t, svc, started.ID)
	if abandoned.Load() {
		select {
		case <-landed:
		case <-time.After(10 * time.Second):
			t.Fatal("the abandoned _aliases request never reached the cluster")
		}
	}
	now := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	t.Logf("rebuild ended %s (%q) from %s to %s; switch abandoned by the client: %v; alias now on %q",
		final.Phase, final.Error, final.FromIndex, final.ToIndex, abandoned.Load(), now)
	if now == "" {
		t.Fatalf("the alias %s no longer exists: the cancelled rebuild deleted the index its switch had made live", rp.cfg.SearchAlias)
	}
	if now != from && now != final.ToIndex {
		t.Fatalf("alias on %s, neither the old %s nor the new %s", now, from, final.ToIndex)
	}
	if now == final.ToIndex && final.Phase != readmodel.PhaseSucceeded {
		t.Errorf("the alias is on the rebuild's index %s but the record says %s (%q)", now, final.Phase, final.Error)
	}
	if code, p := rp.search(t, "category=switch&size=1"); code != 200 || p.Total != 5 {
		t.Fatalf("search after the cancelled switch: %d total %d, want 200 with 5", code, p.Total)
	}
}

// TestRollbackAndPrune: the CLI's rollback returns the alias to the previous index; prune
// --keep 0 deletes the others but never the active one; both are refused while a rebuild runs.
func TestRollbackAndPrune(t *testing.T) {
	rp := startReadPath(t)
	client := adminClient(t, rp.cfg.GRPCAddr)
	createProducts(t, rp.component, "RB", "rollback", 5)
	rp.waitSearch(t, "category=rollback&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 5 })
	first := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	second := runRebuild(t, client, srcDatabase).GetToIndex()
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != second {
		t.Fatalf("alias on %s after the rebuild, want %s", got, second)
	}

	// Refused while a rebuild runs (it could switch the alias concurrently).
	running := startRebuild(t, client, srcDatabase)
	for name, call := range map[string]func() error{
		"prune": func() error {
			_, err := client.PruneIndices(context.Background(), &projectionv1.PruneIndicesRequest{Keep: 0})
			return err
		},
		"rollback": func() error {
			_, err := client.RollbackAlias(context.Background(), &projectionv1.RollbackAliasRequest{})
			return err
		},
	} {
		if code, reason, _ := errorInfo(call()); code != codes.FailedPrecondition || reason != "REBUILD_ALREADY_RUNNING" {
			t.Errorf("%s during a rebuild: %s / %q, want FailedPrecondition / REBUILD_ALREADY_RUNNING", name, code, reason)
		}
	}
	third := watchRebuild(t, client, running.GetId(), 50*time.Second, nil)
	if third.GetPhase() != phaseOK {
		t.Fatalf("rebuild ended %s: %s", third.GetPhase(), third.GetError())
	}
	for _, ix := range []string{first, second, third.GetToIndex()} {
		if !indexExists(t, rp.esURL, ix) {
			t.Fatalf("index %s vanished", ix)
		}
	}

	out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "index", "rollback")
	if code != 0 || !strings.Contains(out, third.GetToIndex()+" -> "+second) {
		t.Fatalf("catalog index rollback: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != second {
		t.Fatalf("alias on %s after rollback, want %s", got, second)
	}
	rp.waitSearch(t, "category=rollback&size=1", 5*time.Second, "search after rollback", func(p searchPage) bool { return p.Total == 5 })

	out, errOut, code = runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "index", "prune", "--keep", "0")
	if code != 0 {
		t.Fatalf("catalog index prune --keep 0: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if strings.Contains(out, second) {
		t.Errorf("prune claims to have deleted the active index: %s", out)
	}
	if !indexExists(t, rp.esURL, second) {
		t.Fatalf("prune deleted the active index %s", second)
	}
	for _, ix := range []string{first, third.GetToIndex()} {
		if indexExists(t, rp.esURL, ix) {
			t.Errorf("prune --keep 0 left %s", ix)
		}
	}
	list, err := client.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ixs := list.GetIndices(); len(ixs) != 1 || ixs[0].GetName() != second || !ixs[0].GetAliased() || ixs[0].GetLiveDocs() != 5 {
		t.Fatalf("indices after prune: %v, want only the aliased %s with 5 live documents", ixs, second)
	}
	rp.waitSearch(t, "category=rollback&size=1", 5*time.Second, "search after prune", func(p searchPage) bool { return p.Total == 5 })

	// Nothing older to roll back to, nothing to prune; the active index stays.
	_, err = client.RollbackAlias(context.Background(), &projectionv1.RollbackAliasRequest{})
	if code, reason, _ := errorInfo(err); code != codes.FailedPrecondition || reason != "NO_PREVIOUS_INDEX" {
		t.Errorf("rollback with one index: %s / %q, want FailedPrecondition / NO_PREVIOUS_INDEX (%v)", code, reason, err)
	}
	pr, err := client.PruneIndices(context.Background(), &projectionv1.PruneIndicesRequest{Keep: 0})
	if err != nil || len(pr.GetDeleted()) != 0 || !indexExists(t, rp.esURL, second) {
		t.Errorf("prune with only the active index: deleted %v, err %v, active exists %v", pr.GetDeleted(), err, indexExists(t, rp.esURL, second))
	}
}

// TestIncidentLiveIndexDeleted: the runbook's "live index deleted by accident". Search fails,
// a write during the outage waits in the projector, and `catalog rebuild --wait` restores
// search on a new complete index behind a recreated alias.
func TestIncidentLiveIndexDeleted(t *testing.T) {
	rp := startReadPath(t)
	createProducts(t, rp.component, "INC", "incident", 20)
	rp.waitSearch(t, "category=incident&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 20 })
	live := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)

	if code, raw := esRequest(t, "DELETE", rp.esURL+"/"+live, ""); code != http.StatusOK {
		t.Fatalf("DELETE %s: %d %s", live, code, raw)
	}
	code, page := rp.search(t, "category=incident&size=1")
	if code == 200 && page.Total == 20 {
		t.Fatalf("search still serves after the live index was deleted")
	}
	t.Logf("search with the live index deleted: %d, total %d", code, page.Total)
	product201(t, rp.component, "INC-outage", "Written during the outage", "incident", 1)
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != "" {
		t.Fatalf("alias points at %s after the delete", got)
	}

	out, errOut, exit := runCLI(t, rp.cfg.GRPCAddr, 60*time.Second, "rebuild", "--wait")
	if exit != 0 {
		t.Fatalf("catalog rebuild --wait: exit %d\nstdout: %s\nstderr: %s", exit, out, errOut)
	}
	now := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if now == "" || now == live || !strings.Contains(now, fmt.Sprintf("_v%d_", elasticsearch.MappingVersion)) || !strings.Contains(out, now) {
		t.Fatalf("alias on %q after the rebuild (was %s); CLI said %s", now, live, out)
	}
	// Searchable when --wait returned, the product written during the outage included.
	if code, page := rp.search(t, "category=incident&size=1"); code != 200 || page.Total != 21 {
		t.Errorf("right after `catalog rebuild --wait`: %d total %d, want 200 with 21", code, page.Total)
	}
	rp.waitSearch(t, "category=incident&size=1", 10*time.Second, "search restored", func(p searchPage) bool { return p.Total == 21 })
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
}

// withOldMappingIndex puts the alias on {alias}_v0_20250101_000000 before the service starts,
// an index of an older mapping version (the current mapping with _meta.mapping_version 0).
func withOldMappingIndex(name *string) readPathOption {
	return func(t *testing.T, c *service.Config) {
		ecfg := elasticsearch.Config{URL: c.ElasticsearchURL, Compat: c.ElasticsearchCompat, Alias: c.SearchAlias}
		cl, err := elasticsearch.NewClient(ecfg)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := elasticsearch.NewIndices(cl, ecfg)
		if err != nil {
			t.Fatal(err)
		}
		tmp, err := ix.CreateIndex(context.Background(), elasticsearch.CreateIndexOptions{Now: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		code, raw := esRequest(t, "GET", c.ElasticsearchURL+"/"+tmp+"/_mapping", "")
		if code != 200 {
			t.Fatalf("mapping of %s: %d %s", tmp, code, raw)
		}
		esRequest(t, "DELETE", c.ElasticsearchURL+"/"+tmp, "")
		var res map[string]struct {
			Mappings map[string]any `json:"mappings"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		mapping := res[tmp].Mappings
		mapping["_meta"] = map[string]any{"mapping_version": 0}
		*name = readmodel.IndexName(c.SearchAlias, 0, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		body, _ := json.Marshal(map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
			"mappings": mapping,
			"aliases":  map[string]any{c.SearchAlias: map[string]any{"is_write_index": true}},
		})
		if code, raw := esRequest(t, "PUT", c.ElasticsearchURL+"/"+*name, string(body)); code != 200 {
			t.Fatalf("create %s: %d %s", *name, code, raw)
		}
	}
}

// TestIncidentMappingChangeRebuild: the alias is on an index of an older mapping version
// (v0); a rebuild moves it to an index of the current version.
func TestIncidentMappingChangeRebuild(t *testing.T) {
	var old string
	rp := startReadPath(t, withOldMappingIndex(&old))
	client := adminClient(t, rp.cfg.GRPCAddr)
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != old {
		t.Fatalf("the service moved the alias at start-up to %s; want it left on %s", got, old)
	}
	createProducts(t, rp.component, "MAP", "mapping", 10)
	rp.waitSearch(t, "category=mapping&size=1", 30*time.Second, "the products in the old index", func(p searchPage) bool { return p.Total == 10 })

	final := runRebuild(t, client, srcDatabase)
	wantPart := fmt.Sprintf("%s_v%d_", rp.cfg.SearchAlias, elasticsearch.MappingVersion)
	if final.GetFromIndex() != old || !strings.HasPrefix(final.GetToIndex(), wantPart) {
		t.Fatalf("rebuild %s -> %s, want %s -> %s*", final.GetFromIndex(), final.GetToIndex(), old, wantPart)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != final.GetToIndex() {
		t.Fatalf("alias on %s, want %s", got, final.GetToIndex())
	}
	list, err := client.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, ix := range list.GetIndices() {
		versions[ix.GetName()] = fmt.Sprintf("v%d aliased=%v live=%d", ix.GetMappingVersion(), ix.GetAliased(), ix.GetLiveDocs())
	}
	want := map[string]string{
		old:                "v0 aliased=false live=10",
		final.GetToIndex(): fmt.Sprintf("v%d aliased=true live=10", elasticsearch.MappingVersion),
	}
	if !reflect.DeepEqual(versions, want) {
		t.Fatalf("ListIndices: %v, want %v", versions, want)
	}
	rp.waitSearch(t, "category=mapping&size=1", 10*time.Second, "search on the new mapping", func(p searchPage) bool { return p.Total == 10 })
	awaitReadModelMatchesDB(t, rp, 20*time.Second)
}
