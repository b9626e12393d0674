package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/testenv"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// startOpsAdmin runs an admin-only gRPC port over cfg: the Operations service (and the
// rebuild service the port requires) assembled from the same adapters as the wiring, in a
// process role of its own, so status keeps answering while a test stops the pipeline's
// roles. It returns the port's address.
func startOpsAdmin(t *testing.T, cfg service.Config) string {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	pg, err := postgres.NewOpsStats(db, postgres.OpsStatsConfig{Lanes: cfg.OutboxLanes})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := kafka.NewOpsStats(kafka.Config{Brokers: cfg.KafkaBrokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	ecfg := elasticsearch.Config{URL: cfg.ElasticsearchURL, Compat: cfg.ElasticsearchCompat, Alias: cfg.SearchAlias}
	_, target := searchTarget(t, ecfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = target.Close(ctx)
	})
	store, err := postgres.NewRebuildStore(db)
	if err != nil {
		t.Fatal(err)
	}
	source, err := postgres.NewProductSource(db)
	if err != nil {
		t.Fatal(err)
	}
	events, err := kafka.NewEventLog(kafka.Config{Brokers: cfg.KafkaBrokers}, cfg.ProductEventsTopic, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(events.Close)
	rebuilds, err := rebuild.NewService(rebuild.Config{ProjectorGroup: cfg.ProjectorGroup}, store, source, events, target, log)
	if err != nil {
		t.Fatal(err)
	}
	audit, err := postgres.NewDLQAudit(db)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ops.NewService(ops.Config{Alias: cfg.SearchAlias, EventsTopic: cfg.ProductEventsTopic, DLQTopic: cfg.DLQTopic,
		ProjectorGroup: cfg.ProjectorGroup}, ops.Deps{Database: pg, Products: pg, Events: ks, ReadModel: target, Rebuilds: store, DeadLetters: audit, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	operations, err := grpcport.NewOperations(svc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcport.NewServer(grpcport.Config{}, rebuilds, grpcport.Deps{Log: log, Register: []func(grpc.ServiceRegistrar){operations.Register}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(runCtx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func opsClient(t *testing.T, addr string) operationsv1.OperationsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return operationsv1.NewOperationsClient(conn)
}

// awaitStatus polls GetStatus until cond holds and returns that status.
func awaitStatus(t *testing.T, c operationsv1.OperationsClient, req *operationsv1.GetStatusRequest, timeout time.Duration, what string,
	cond func(*operationsv1.GetStatusResponse) bool) *operationsv1.GetStatusResponse {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *operationsv1.GetStatusResponse
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := c.GetStatus(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("GetStatus: %v", err)
		}
		if cond(st) {
			return st
		}
		last = st
		if time.Now().After(deadline) {
			raw, _ := json.MarshalIndent(last, "", "  ")
			t.Fatalf("status: %s not reached within %s; last status:\n%s", what, timeout, raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// errorChecks lists the checks of the error-severity problems, sorted.
func errorChecks(st *operationsv1.GetStatusResponse) []string {
	var out []string
	for _, p := range st.GetProblems() {
		if p.GetSeverity() == operationsv1.Severity_SEVERITY_ERROR {
			out = append(out, p.GetCheck())
		}
	}
	slices.Sort(out)
	return out
}

func partitionLagSum(st *operationsv1.GetStatusResponse) int64 {
	var n int64
	for _, p := range st.GetProjector().GetPartitions() {
		n += p.GetLag()
	}
	return n
}

// cliExit runs `catalog <args>` against addr and returns its exit code and stderr.
func cliExit(t *testing.T, addr string, args ...string) (code int, stderr string) {
	t.Helper()
	_, stderr, code = runCLI(t, addr, 2*time.Minute, args...)
	return code, stderr
}

func runRole(t *testing.T, name string, run func(context.Context) error, cleanup func()) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30 s", name)
		}
		cleanup()
	}
	t.Cleanup(stop)
	return stop
}

// TestStatusFollowsTheRelayAndTheProjector: status is healthy on a running pipeline; while
// the relay is stopped the outbox backlog grows and ages (unhealthy); while only the
// projector is stopped the group's lag grows by exactly the relayed events (unhealthy); a
// poison message leaves the DLQ non-empty (unhealthy). The CLI's exit code follows.
func TestStatusFollowsTheRelayAndTheProjector(t *testing.T) {
	rp := startReadPath(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	createProducts(t, rp.component, "ST", "status", 3)
	rp.waitSearch(t, "category=status", 20*time.Second, "3 products", func(p searchPage) bool { return p.Total == 3 })

	addr := startOpsAdmin(t, rp.cfg)
	client := opsClient(t, addr)
	maxLag := int64(2)
	req := &operationsv1.GetStatusRequest{MaxOutboxAge: durationpb.New(2 * time.Second), MaxLag: &maxLag}
	cliArgs := []string{"status", "--max-outbox-age=2s", "--max-lag=2"}

	st := awaitStatus(t, client, req, 30*time.Second, "healthy with every document projected", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetHealthy() && st.GetReadModel().GetLiveDocuments() == 3 && st.GetProjector().GetTotalLag() == 0
	})
	if st.GetOutbox().GetBacklog() != 0 || st.GetProducts().GetLive() != 3 || st.GetDlq().GetDepth() != 0 || !st.GetReadModel().GetAliasExists() ||
		st.GetReadModel().GetIndexMappingVersion() != st.GetReadModel().GetCodeMappingVersion() || !st.GetProjector().GetHasCommittedOffsets() ||
		st.GetProjector().GetGroup() != rp.cfg.ProjectorGroup || len(st.GetProjector().GetPartitions()) != rp.cfg.TopicPartitions {
		t.Fatalf("healthy status: %v", st)
	}
	if code, stderr := cliExit(t, addr, cliArgs...); code != 0 {
		t.Fatalf("catalog status on a healthy pipeline: exit %d\n%s", code, stderr)
	}

	// The relay stops (the whole serve process does): events committed now stay in the outbox.
	if err := rp.stop(); err != nil {
		t.Fatal(err)
	}
	repo, err := postgres.NewProductRepository(rp.db, postgres.ProductRepositoryConfig{Topic: rp.cfg.ProductEventsTopic, Lanes: rp.cfg.OutboxLanes}, log)
	if err != nil {
		t.Fatal(err)
	}
	write := func(n int, prefix string) {
		t.Helper()
		for i := range n {
			now := time.Now()
			d, err := product.NewDetails(fmt.Sprintf("%s-%d", prefix, i), "Written while the relay is stopped", "", "status", "Acme", 100, "EUR", 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := product.New(product.NewID(now), d, now)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(4, "NORELAY-A")
	awaitStatus(t, client, req, 10*time.Second, "a backlog of 4", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetOutbox().GetBacklog() == 4
	})
	write(3, "NORELAY-B")
	st = awaitStatus(t, client, req, 20*time.Second, "a backlog of 7 older than 2 s", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetOutbox().GetBacklog() == 7 && st.GetOutbox().GetOldestAge().AsDuration() > 2*time.Second
	})
	if st.GetHealthy() || !slices.Equal(errorChecks(st), []string{ops.CheckOutboxAge}) {
		t.Fatalf("relay stopped: healthy %v, errors %v (%v)", st.GetHealthy(), errorChecks(st), st.GetProblems())
	}
	var lanes int64
	for _, l := range st.GetOutbox().GetLanes() {
		lanes += l.GetBacklog()
	}
	if lanes != 7 || st.GetProducts().GetLive() != 10 {
		t.Fatalf("lanes sum to %d, live products %d", lanes, st.GetProducts().GetLive())
	}
	if code, stderr := cliExit(t, addr, cliArgs...); code != 1 || !strings.Contains(stderr, ops.CheckOutboxAge) {
		t.Fatalf("catalog status with the relay stopped: exit %d\n%s", code, stderr)
	}

	// The relay runs alone, the projector is stopped: the backlog drains and the group lags by
	// exactly the 7 relayed events.
	relay, cleanupRelay, err := wiring.InitializeRelay(context.Background(), rp.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	stopRelay := runRole(t, "relay", relay.Run, cleanupRelay)
	st = awaitStatus(t, client, req, 30*time.Second, "the backlog relayed and a lag of 7", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetOutbox().GetBacklog() == 0 && st.GetProjector().GetTotalLag() == 7
	})
	if st.GetHealthy() || !slices.Equal(errorChecks(st), []string{ops.CheckProjectorLag}) || partitionLagSum(st) != 7 ||
		st.GetProjector().GetMembers() != 0 || st.GetReadModel().GetLiveDocuments() != 3 {
		t.Fatalf("projector stopped: healthy %v, errors %v, partitions sum %d, members %d, docs %d (%v)", st.GetHealthy(), errorChecks(st),
			partitionLagSum(st), st.GetProjector().GetMembers(), st.GetReadModel().GetLiveDocuments(), st.GetProblems())
	}
	if code, stderr := cliExit(t, addr, cliArgs...); code != 1 || !strings.Contains(stderr, ops.CheckProjectorLag) {
		t.Fatalf("catalog status with the projector stopped: exit %d\n%s", code, stderr)
	}
	stopRelay()

	// The projector runs alone and catches up; a poison message lands in the DLQ, which stays
	// unhealthy until an operator acts.
	proj, cleanupProj, err := wiring.InitializeProject(context.Background(), rp.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	runRole(t, "projector", proj.Run, cleanupProj)
	awaitStatus(t, client, req, 60*time.Second, "the projector caught up", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetHealthy() && st.GetProjector().GetTotalLag() == 0 && st.GetReadModel().GetLiveDocuments() == 10
	})
	rp.publish(t, rp.cfg.ProductEventsTopic, []byte(`{"not":"an event"`))
	st = awaitStatus(t, client, req, 30*time.Second, "a DLQ depth of 1", func(st *operationsv1.GetStatusResponse) bool {
		return st.GetDlq().GetDepth() == 1 && st.GetProjector().GetTotalLag() == 0
	})
	if st.GetHealthy() || !slices.Equal(errorChecks(st), []string{ops.CheckDLQ}) {
		t.Fatalf("poison message: healthy %v, errors %v (%v)", st.GetHealthy(), errorChecks(st), st.GetProblems())
	}
	if code, stderr := cliExit(t, addr, cliArgs...); code != 1 || !strings.Contains(stderr, ops.CheckDLQ) {
		t.Fatalf("catalog status with a message in the DLQ: exit %d\n%s", code, stderr)
	}
}

func runVerify(t *testing.T, c operationsv1.OperationsClient, settle time.Duration) *operationsv1.VerifyReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	samples := int32(10)
	stream, err := c.Verify(ctx, &operationsv1.VerifyRequest{Settle: durationpb.New(settle), Samples: &samples})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if rep := msg.GetReport(); rep != nil {
			return rep
		}
	}
}

// differencesOf renders a report's differences as "category id db=vN[d] index=vN[d]", sorted.
func differencesOf(rep *operationsv1.VerifyReport) []string {
	side := func(in bool, v int64, deleted bool) string {
		switch {
		case !in:
			return "-"
		case deleted:
			return fmt.Sprintf("v%dd", v)
		}
		return fmt.Sprintf("v%d", v)
	}
	var out []string
	for _, c := range rep.GetCategories() {
		if int64(len(c.GetSamples())) != c.GetCount() {
			out = append(out, fmt.Sprintf("%s: %d counted, %d samples", c.GetCategory(), c.GetCount(), len(c.GetSamples())))
		}
		for _, d := range c.GetSamples() {
			cat := strings.ToLower(strings.TrimPrefix(c.GetCategory().String(), "DIFFERENCE_CATEGORY_"))
			out = append(out, fmt.Sprintf("%s %s db=%s index=%s", cat, d.GetId(), side(d.GetInDatabase(), d.GetDatabaseVersion(), d.GetDatabaseDeleted()),
				side(d.GetInIndex(), d.GetIndexVersion(), d.GetIndexDeleted())))
		}
	}
	slices.Sort(out)
	return out
}

// esDocSource returns a document's _source, read straight from the index.
func esDocSource(t *testing.T, esURL, index, id string) map[string]any {
	t.Helper()
	code, raw := esRequest(t, "GET", esURL+"/"+index+"/_doc/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s/_doc/%s: %d %s", index, id, code, raw)
	}
	var doc struct {
		Source map[string]any `json:"_source"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Source
}

func esPutVersioned(t *testing.T, esURL, index, id string, version int64, source map[string]any) {
	t.Helper()
	body, err := json.Marshal(source)
	if err != nil {
		t.Fatal(err)
	}
	if code, raw := esRequest(t, "PUT", fmt.Sprintf("%s/%s/_doc/%s?version=%d&version_type=external", esURL, index, id, version), string(body)); code >= 300 {
		t.Fatalf("PUT %s/_doc/%s: %d %s", index, id, code, raw)
	}
}

// TestVerifyFindsExactlyThePlantedDifferences: on a healthy, running pipeline verify finds
// nothing; after the test plants a deleted document, a stale version, a phantom document and
// a resurrected tombstone, it finds exactly those four, with both sides' versions.
func TestVerifyFindsExactlyThePlantedDifferences(t *testing.T) {
	rp := startReadPath(t)
	ids := createProducts(t, rp.component, "VER", "verify", 10)
	if r := rp.do(t, "PUT", "/v1/products/"+ids[1], productBody("VER-1", "Updated", "verify", 999, 3), "If-Match", "1"); r.status != 200 {
		t.Fatalf("update: %d %v", r.status, r.body)
	}
	for _, id := range ids[2:4] {
		if r := rp.do(t, "DELETE", "/v1/products/"+id, "", "If-Match", "1"); r.status != 204 {
			t.Fatalf("delete: %d %v", r.status, r.body)
		}
	}
	awaitReadModelMatchesDB(t, rp, 30*time.Second)

	addr := startOpsAdmin(t, rp.cfg)
	client := opsClient(t, addr)
	rep := runVerify(t, client, time.Second)
	if !rep.GetConsistent() || rep.GetCandidates() != 0 || rep.GetProducts() != 10 || rep.GetDocuments() != 10 || len(rep.GetCategories()) != 5 {
		t.Fatalf("healthy pipeline: %v", rep)
	}
	index := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if rep.GetIndex() != index || rep.GetAlias() != rp.cfg.SearchAlias {
		t.Fatalf("verified %s -> %s, want %s -> %s", rep.GetAlias(), rep.GetIndex(), rp.cfg.SearchAlias, index)
	}
	if served := runVerify(t, opsClient(t, rp.cfg.GRPCAddr), time.Second); !served.GetConsistent() {
		t.Fatalf("verify through catalog serve: %v", served)
	}
	if code, stderr := cliExit(t, rp.cfg.GRPCAddr, "verify", "--settle=1s"); code != 0 {
		t.Fatalf("catalog verify on a healthy pipeline: exit %d\n%s", code, stderr)
	}

	// Plant the four differences, behind the pipeline's back.
	missing, stale, resurrected := ids[4], ids[5], ids[2]
	if code, raw := esRequest(t, "DELETE", rp.esURL+"/"+index+"/_doc/"+missing, ""); code != http.StatusOK {
		t.Fatalf("delete document: %d %s", code, raw)
	}
	if _, err := rp.db.Pool.Exec(context.Background(), `UPDATE products SET version = version + 1, updated_at = now() WHERE id = $1`, stale); err != nil {
		t.Fatal(err)
	}
	phantom := product.NewID(time.Now()).String()
	src := esDocSource(t, rp.esURL, index, ids[6])
	src["id"] = phantom
	esPutVersioned(t, rp.esURL, index, phantom, 1, src)
	tomb := esDocSource(t, rp.esURL, index, resurrected)
	if tomb["deleted"] != true {
		t.Fatalf("the deleted product's document is not a tombstone: %v", tomb)
	}
	tomb["deleted"] = false
	delete(tomb, "deleted_at")
	tomb["version"] = 3
	esPutVersioned(t, rp.esURL, index, resurrected, 3, tomb) // an old-style replay brought it back
	if code, raw := esRequest(t, "POST", rp.esURL+"/"+index+"/_refresh", ""); code != http.StatusOK {
		t.Fatalf("refresh: %d %s", code, raw)
	}

	rep = runVerify(t, client, time.Second)
	want := []string{
		"missing " + missing + " db=v1 index=-",
		"phantom " + phantom + " db=- index=v1",
		"resurrected " + resurrected + " db=v2d index=v3",
		"stale " + stale + " db=v2 index=v1",
	}
	slices.Sort(want)
	if got := differencesOf(rep); !slices.Equal(got, want) {
		t.Fatalf("differences:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if rep.GetConsistent() || rep.GetCandidates() != 4 || rep.GetProducts() != 10 || rep.GetDocuments() != 10 {
		t.Fatalf("report: %v", rep)
	}
	code, stderr := cliExit(t, rp.cfg.GRPCAddr, "verify", "--settle=1s")
	if code != 1 || !strings.Contains(stderr, "1 missing, 1 stale, 1 phantom, 1 resurrected") {
		t.Fatalf("catalog verify with planted differences: exit %d\n%s", code, stderr)
	}
}

// nopEvents and nopRebuilds stand in for the ports Verify does not use.
type nopEvents struct{}

func (nopEvents) GroupLag(context.Context, string, string) (ops.GroupLag, error) {
	return ops.GroupLag{}, nil
}
func (nopEvents) TopicOffsets(context.Context, string) (ops.TopicOffsets, error) { return nil, nil }

func (nopEvents) HandledDLQMessages(context.Context, string, ops.TopicOffsets) (int64, error) {
	return 0, nil
}

type nopRebuilds struct{}

func (nopRebuilds) List(context.Context, int) ([]*readmodel.Rebuild, error) { return nil, nil }
func (nopRebuilds) IndexPosition(context.Context, string) (rebuild.Offsets, bool, error) {
	return nil, false, nil
}

// heapSampler wraps the products port and measures the live heap (after a GC) every few
// pages while a verify runs.
type heapSampler struct {
	ops.Products
	mu          sync.Mutex
	pages       int
	base, peak  uint64
	measureEach int
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func (h *heapSampler) ProductVersions(ctx context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
	page, err := h.Products.ProductVersions(ctx, after, limit)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pages++
	if h.pages%h.measureEach == 0 {
		h.peak = max(h.peak, liveHeap())
	}
	return page, err
}

// TestVerifyLargeCatalogInBoundedMemory verifies a catalog of 200,000 products (set
// CATALOG_VERIFY_PRODUCTS for more, e.g. 1000000) against an index of as many documents
// with a few planted differences: it finds exactly those, logs the rate, and the live heap
// stays at a few pages' worth while it runs, so a million products need no more memory.
func TestVerifyLargeCatalogInBoundedMemory(t *testing.T) {
	if testing.Short() && !testenv.InCI() {
		t.Skip("200k products and documents; skipped with -short")
	}
	n := 200_000
	if v := os.Getenv("CATALOG_VERIFY_PRODUCTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			t.Fatalf("CATALOG_VERIFY_PRODUCTS=%q: want a number >= 1000", v)
		}
	}
	esURL, compat := testenv.ElasticsearchURL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: testenv.NewDatabase(t), MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	seedSQL(t, db, n, "BIG") // versions 1..3, a tenth tombstones

	alias := strings.ToLower(testenv.Name("verify_big"))
	ecfg := elasticsearch.Config{URL: esURL, Compat: compat, Alias: alias}
	indices, target := searchTarget(t, ecfg)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = target.Close(cctx)
		esRequest(t, "DELETE", esURL+"/"+alias+"_v*", "")
	})
	index, _, err := indices.EnsureAlias(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.NewOpsStats(db, postgres.OpsStatsConfig{})
	if err != nil {
		t.Fatal(err)
	}

	// Index every product as it is, except the planted differences.
	details, err := product.NewDetails("BIG", "Bulk product", "verify at scale", "bulk", "Acme", 100, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	snapshot := func(id string, version int64, deleted bool) product.Snapshot {
		s := product.Snapshot{ID: product.ID(id), Details: details, Version: version, CreatedAt: now, UpdatedAt: now}
		if deleted {
			s.DeletedAt = &now
		}
		return s
	}
	var wantDiffs []string
	start := time.Now()
	batches := make(chan []product.Snapshot, 4)
	var wg sync.WaitGroup
	var writeErr error
	var errOnce sync.Once
	for range 4 {
		wg.Go(func() {
			for b := range batches {
				if err := target.Write(ctx, index, b); err != nil {
					errOnce.Do(func() { writeErr = err })
				}
			}
		})
	}
	after, seen := "", 0
	for {
		page, err := pg.ProductVersions(ctx, after, 2000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		batch := make([]product.Snapshot, 0, len(page))
		for _, p := range page {
			seen++
			switch {
			case seen%50_000 == 1:
				wantDiffs = append(wantDiffs, "missing "+p.ID)
				continue
			case seen%50_000 == 2 && p.Version > 1:
				wantDiffs = append(wantDiffs, "stale "+p.ID)
				batch = append(batch, snapshot(p.ID, p.Version-1, p.Deleted))
				continue
			case seen%50_000 == 3 && p.Deleted:
				wantDiffs = append(wantDiffs, "resurrected "+p.ID)
				batch = append(batch, snapshot(p.ID, p.Version, false))
				continue
			}
			batch = append(batch, snapshot(p.ID, p.Version, p.Deleted))
		}
		batches <- batch
		after = page[len(page)-1].ID
	}
	var phantoms []product.Snapshot
	for i := range 3 {
		id := product.NewID(now.Add(time.Duration(i) * time.Millisecond)).String()
		wantDiffs = append(wantDiffs, "phantom "+id)
		phantoms = append(phantoms, snapshot(id, 1, false))
	}
	batches <- phantoms
	close(batches)
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if err := target.Refresh(ctx, index); err != nil {
		t.Fatal(err)
	}
	t.Logf("indexed %d documents in %s", n, time.Since(start).Round(time.Millisecond))
	slices.Sort(wantDiffs)

	newService := func(products ops.Products) *ops.Service {
		svc, err := ops.NewService(ops.Config{Alias: alias, EventsTopic: "unused", DLQTopic: "unused", ProjectorGroup: "unused"},
			ops.Deps{Database: pg, Products: products, Events: nopEvents{}, ReadModel: target, Rebuilds: nopRebuilds{}, DeadLetters: nopEvents{}})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	summary := func(rep ops.VerifyReport) []string {
		var out []string
		for _, c := range rep.Categories {
			for _, d := range c.Samples {
				out = append(out, string(c.Category)+" "+d.ID)
			}
		}
		slices.Sort(out)
		return out
	}

	// The rate, undisturbed.
	rep, err := newService(pg).Verify(ctx, ops.VerifyRequest{Settle: time.Second, Samples: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(rep); !slices.Equal(got, wantDiffs) || rep.Differences() != int64(len(wantDiffs)) {
		t.Fatalf("differences:\n got %v\nwant %v", got, wantDiffs)
	}
	if rep.Products != int64(n) || rep.Documents != int64(n-countPrefix(wantDiffs, "missing ")+3) {
		t.Fatalf("compared %d products and %d documents", rep.Products, rep.Documents)
	}
	scan := rep.Duration - rep.Settle
	t.Logf("verify: %d products, %d documents, %d differences in %s (%s of it the settle delay): %.0f products/s",
		rep.Products, rep.Documents, rep.Differences(), rep.Duration.Round(time.Millisecond), rep.Settle, float64(rep.Products)/scan.Seconds())

	// The live heap, sampled along the way.
	h := &heapSampler{Products: pg, measureEach: 5}
	h.base = liveHeap()
	rep, err = newService(h).Verify(ctx, ops.VerifyRequest{Settle: 0, Samples: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(rep); !slices.Equal(got, wantDiffs) {
		t.Fatalf("second run differs:\n got %v\nwant %v", got, wantDiffs)
	}
	grown := int64(h.peak) - int64(h.base)
	t.Logf("live heap: %d KiB before, peak %d KiB during the verify (%+d KiB), sampled on %d of %d product pages",
		h.base>>10, h.peak>>10, grown>>10, h.pages/h.measureEach, h.pages)
	// (id, version, deleted) of 200k products and documents alone would take over 30 MiB;
	// a page of each side is a few hundred KiB.
	if grown > 16<<20 {
		t.Fatalf("live heap grew by %d MiB during the verify: rows or documents are accumulating", grown>>20)
	}
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}
