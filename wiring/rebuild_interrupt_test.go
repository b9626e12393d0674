package wiring_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

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
