package wiring_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/service"
)

// Single-machine mode (no KAFKA_BROKERS, no ELASTICSEARCH_URL) keeps all of its local state
// under CATALOG_DATA_DIR: the embedded broker's log and offsets, the embedded search engine's
// indices and alias. These tests kill `catalog serve` with SIGKILL and restart it on the same
// directory; the read model must end up exactly the database's.

// writeBurst runs writers that create products and update them with If-Match until stop is
// closed, and returns the version of each product as last acknowledged by the API.
func writeBurst(base string, writers int, stop <-chan struct{}) (acked func() map[string]int64, wait func()) {
	var (
		mu  sync.Mutex
		ack = map[string]int64{}
		wg  sync.WaitGroup
		seq atomic.Int64
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				code, body, err := tryDo(base, "POST", "/v1/products", fmt.Sprintf(
					`{"sku":"BURST-%d","name":"Burst lamp %d","category":"burst","price":{"amount":%d,"currency":"EUR"},"stock":1}`, n, n, 100+n))
				if err != nil || code != 201 {
					continue // the process is gone or going: this write was never acknowledged
				}
				id := body["id"].(string)
				mu.Lock()
				ack[id] = 1
				mu.Unlock()
				for v := int64(1); v < 3; v++ {
					code, _, err := tryDo(base, "PUT", "/v1/products/"+id, fmt.Sprintf(
						`{"sku":"BURST-%d","name":"Burst lamp %d v%d","category":"burst","price":{"amount":%d,"currency":"EUR"},"stock":%d}`, n, n, v+1, 100+n, v+1),
						"If-Match", fmt.Sprint(v))
					if err != nil || code != 200 {
						break
					}
					mu.Lock()
					ack[id] = v + 1
					mu.Unlock()
				}
			}
		}()
	}
	return func() map[string]int64 {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int64, len(ack))
		for k, v := range ack {
			out[k] = v
		}
		return out
	}, wg.Wait
}

// checkAcknowledged fails for any acknowledged write the database does not hold.
func checkAcknowledged(t *testing.T, db *postgres.DB, acked map[string]int64) {
	t.Helper()
	lost := 0
	for id, v := range acked {
		var got int64
		if err := db.Pool.QueryRow(context.Background(), `SELECT version FROM products WHERE id = $1`, id).Scan(&got); err != nil || got < v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write lost: product %s at version %d, database has %d (%v)", id, v, got, err)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged products lost", lost, len(acked))
	}
}

// awaitVerifyClean runs `catalog verify` until it exits 0 (the projector has caught up and
// the read model matches the database) or the timeout passes.
func awaitVerifyClean(t *testing.T, grpcAddr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, errOut, code := runCLI(t, grpcAddr, 60*time.Second, "verify")
		if code == 0 {
			t.Logf("catalog verify: %s", strings.TrimSpace(tail(out, 3)))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog verify still not clean after %s (exit %d):\n%s\n%s", timeout, code, tail(out, 20), errOut)
		}
		time.Sleep(time.Second)
	}
}

// liveIndex is the index the alias points at, by ListIndices, with its document count.
func liveIndex(t *testing.T, c projectionv1.ProjectionAdminClient) (name string, docs int64) {
	t.Helper()
	res, err := c.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ix := range res.GetIndices() {
		if ix.GetAliased() {
			return ix.GetName(), ix.GetLiveDocs() + ix.GetTombstones()
		}
	}
	t.Fatal("no index is aliased")
	return "", 0
}

func productCount(t *testing.T, db *postgres.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM products`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// relayOnlyThenKill runs `catalog relay` on dataDir until the outbox backlog is empty, then
// kills it, and returns how many events it relayed.
func relayOnlyThenKill(t *testing.T, cfg service.Config, db *postgres.DB, dataDir string) int64 {
	t.Helper()
	stats, err := postgres.NewOpsStats(db, postgres.OpsStatsConfig{Lanes: cfg.OutboxLanes})
	if err != nil {
		t.Fatal(err)
	}
	backlog := func() int64 {
		st, err := stats.OutboxStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Backlog
	}
	before := backlog()
	relay := startCatalogProc(t, cfg, dataDir, "relay")
	eventuallyT(t, 30*time.Second, "the relay-only process to empty the outbox", func() bool { return backlog() == 0 })
	relay.kill(t)
	return before
}

// TestEmbeddedSurvivesSIGKILLDuringWrites: SIGKILL in the middle of a burst of writes, with
// events committed but not yet relayed, relayed but not yet projected, and projected but not
// yet committed as consumed. After a restart on the same data directory no acknowledged write
// is missing and `catalog verify` is clean once the projector has caught up.
func TestEmbeddedSurvivesSIGKILLDuringWrites(t *testing.T) {
	cfg, db := freshDeployment(t)
	dir := t.TempDir()
	for round := 1; round <= 2; round++ {
		proc := startServeProcIn(t, cfg, dir)
		stop := make(chan struct{})
		acked, wait := writeBurst(proc.base, 8, stop)
		// Kill once writes are flowing and the projector is behind: the window a process
		// that kept the broker in memory would lose.
		eventuallyT(t, 30*time.Second, "a burst of acknowledged writes", func() bool { return len(acked()) >= 300 })
		proc.kill(t)
		close(stop)
		wait()
		got := acked()
		t.Logf("round %d: killed after %d acknowledged products (%d rows in the database)", round, len(got), productCount(t, db))
		checkAcknowledged(t, db, got)
	}

	// Widen the window between relayed and projected to all of the backlog: `catalog relay`
	// alone (no projector) on the same data directory hands every remaining event to the
	// embedded broker and is killed too. Those events now exist only in the broker's log.
	relayed := relayOnlyThenKill(t, cfg, db, dir)
	t.Logf("a relay-only process handed the remaining backlog to the broker and was killed (%d events relayed by it)", relayed)

	restarted := startServeProcIn(t, cfg, dir)
	awaitVerifyClean(t, restarted.cfg.GRPCAddr, 90*time.Second)
	name, docs := liveIndex(t, adminClient(t, restarted.cfg.GRPCAddr))
	if want := productCount(t, db); docs != want {
		t.Fatalf("live index %s holds %d documents, the database %d products", name, docs, want)
	}
	// The search API serves what verify compared: every product of the burst is findable.
	code, page, err := tryDo(restarted.base, "GET", "/v1/products/search?category=burst&size=1", "")
	if err != nil || code != 200 {
		t.Fatalf("search after restart: %d %v", code, err)
	}
	if total := int64(page["total"].(float64)); total != productCount(t, db) {
		t.Fatalf("search finds %d burst products, the database holds %d", total, productCount(t, db))
	}
}

// TestEmbeddedSurvivesSIGKILLDuringRebuild: SIGKILL while a rebuild fills its new index and
// writes go on. After a restart the alias still points at the old, complete index until the
// interrupted rebuild, resumed by the restarted process (once its runner's heartbeat has
// expired) under the same id from its last completed chunk, succeeds on the index it began;
// verify is clean once the projector has caught up; then `catalog rebuild --wait`, changes
// after its switch, `catalog index rollback` (which brings the older index up to date first),
// `catalog index prune` and `catalog status` work on the embedded engine as they do on
// Elasticsearch.
func TestEmbeddedSurvivesSIGKILLDuringRebuild(t *testing.T) {
	cfg, db := freshDeployment(t)
	dir := t.TempDir()
	seedSQL(t, db, 30000, "EK") // rows without events: the first rebuild indexes them
	proc := startServeProcIn(t, cfg, dir)
	c := adminClient(t, proc.cfg.GRPCAddr)
	first := runRebuild(t, c, srcDatabase)
	from, _ := liveIndex(t, c)
	if from != first.GetToIndex() {
		t.Fatalf("alias on %s after the first rebuild, want %s", from, first.GetToIndex())
	}

	stop := make(chan struct{})
	acked, wait := writeBurst(proc.base, 4, stop)
	r := startRebuild(t, c, srcDatabase)
	seen := awaitFill(t, c, r.GetId(), 60*time.Second)
	proc.kill(t)
	close(stop)
	wait()
	t.Logf("killed in fill at %d of %d documents, %d products acknowledged during the rebuild", seen.GetDocsDone(), seen.GetDocsTotal(), len(acked()))
	checkAcknowledged(t, db, acked())

	awaitRebuildLockFree(t, db)
	restarted := startServeProcIn(t, cfg, dir)
	rc := adminClient(t, restarted.cfg.GRPCAddr)
	if name, _ := liveIndex(t, rc); name != from {
		t.Fatalf("alias on %s after the restart, want the old index %s", name, from)
	}
	rec := watchRebuild(t, rc, r.GetId(), 2*time.Minute, nil)
	if rec.GetPhase() != phaseOK || rec.GetResumes() != 1 || rec.GetToIndex() != seen.GetToIndex() || rec.GetDocsDone() < seen.GetDocsDone() {
		t.Fatalf("after the restart the record says %s (%q), resumed %d times, on %s at %d documents; want succeeded, resumed once, on %s, at %d or more",
			rec.GetPhase(), rec.GetError(), rec.GetResumes(), rec.GetToIndex(), rec.GetDocsDone(), seen.GetToIndex(), seen.GetDocsDone())
	}
	from = rec.GetToIndex()
	awaitVerifyClean(t, restarted.cfg.GRPCAddr, 90*time.Second)
	if name, docs := liveIndex(t, rc); name != from || docs != productCount(t, db) {
		t.Fatalf("alias on %s with %d documents, want %s with all %d products", name, docs, from, productCount(t, db))
	}

	// The next rebuild, then the operator's index commands, all through the CLI.
	if out, errOut, code := runCLI(t, restarted.cfg.GRPCAddr, 2*time.Minute, "rebuild", "--wait"); code != 0 {
		t.Fatalf("catalog rebuild --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	next, _ := liveIndex(t, rc)
	if next == from {
		t.Fatalf("alias still on %s after catalog rebuild --wait", from)
	}
	awaitVerifyClean(t, restarted.cfg.GRPCAddr, 60*time.Second)
	// Changes after the switch reach only the new index; the rollback must bring them along.
	stop = make(chan struct{})
	acked, wait = writeBurst(restarted.base, 2, stop)
	time.Sleep(time.Second)
	close(stop)
	wait()
	for id, v := range acked() {
		if code, _, err := tryDo(restarted.base, "DELETE", "/v1/products/"+id, "", "If-Match", fmt.Sprint(v)); err != nil || code != 204 {
			t.Fatalf("delete %s: %d %v", id, code, err)
		}
		break
	}
	t.Logf("%d products written and one deleted between the switch and the rollback", len(acked()))
	if out, errOut, code := runCLI(t, restarted.cfg.GRPCAddr, time.Minute, "index", "rollback"); code != 0 {
		t.Fatalf("catalog index rollback: exit %d\n%s\n%s", code, out, errOut)
	} else {
		t.Logf("catalog index rollback: %s", strings.TrimSpace(errOut))
	}
	if name, _ := liveIndex(t, rc); name != from {
		t.Fatalf("alias on %s after the rollback, want the previous index %s", name, from)
	}
	if out, errOut, code := runCLI(t, restarted.cfg.GRPCAddr, 30*time.Second, "index", "prune", "--keep", "0"); code != 0 {
		t.Fatalf("catalog index prune --keep 0: exit %d\n%s\n%s", code, out, errOut)
	}
	res, err := rc.ListIndices(context.Background(), &projectionv1.ListIndicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetIndices()) != 1 || res.GetIndices()[0].GetName() != from {
		t.Fatalf("after prune --keep 0 the indices are %v, want only the live %s", res.GetIndices(), from)
	}
	// The index rolled back to was caught up: it matches the database, the deleted product
	// and the changes after the switch included.
	awaitVerifyClean(t, restarted.cfg.GRPCAddr, 60*time.Second)
	if out, _, code := runCLI(t, restarted.cfg.GRPCAddr, 60*time.Second, "status"); code != 0 {
		t.Fatalf("catalog status after rollback and prune: exit %d\n%s", code, out)
	}
}
