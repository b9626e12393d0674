package wiring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/internal/testenv"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// ---- gRPC admin client ----

func adminClient(t *testing.T, addr string) projectionv1.ProjectionAdminClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return projectionv1.NewProjectionAdminClient(conn)
}

func startRebuild(t *testing.T, c projectionv1.ProjectionAdminClient, src projectionv1.RebuildSource) *projectionv1.Rebuild {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.StartRebuild(ctx, &projectionv1.StartRebuildRequest{Source: src})
	if err != nil {
		t.Fatalf("StartRebuild(%s): %v", src, err)
	}
	if r.GetId() == "" {
		t.Fatalf("StartRebuild returned a record without id: %v", r)
	}
	return r
}

// watchRebuild follows WatchRebuild until the rebuild is terminal or until stop (may be nil)
// returns true for a progress message; it returns the last record seen.
func watchRebuild(t *testing.T, c projectionv1.ProjectionAdminClient, id string, timeout time.Duration, stop func(*projectionv1.RebuildProgress) bool) *projectionv1.Rebuild {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := c.WatchRebuild(ctx, &projectionv1.WatchRebuildRequest{Id: id})
	if err != nil {
		t.Fatalf("WatchRebuild(%s): %v", id, err)
	}
	var last *projectionv1.Rebuild
	for {
		p, err := stream.Recv()
		if err != nil {
			if last != nil && grpcport.PhaseFromProto(last.GetPhase()).Terminal() {
				return last
			}
			t.Fatalf("WatchRebuild(%s) ended before the rebuild did (last %v): %v", id, last, err)
		}
		last = p.GetRebuild()
		if stop != nil && stop(p) {
			return last
		}
		if grpcport.PhaseFromProto(last.GetPhase()).Terminal() {
			return last
		}
	}
}

// awaitFill watches rebuild id through c until its fill has written something (progress is
// saved every 500 ms), and fails the test if the rebuild gets past the fill unseen.
func awaitFill(t *testing.T, c projectionv1.ProjectionAdminClient, id string, timeout time.Duration) *projectionv1.Rebuild {
	t.Helper()
	seen := watchRebuild(t, c, id, timeout, func(p *projectionv1.RebuildProgress) bool {
		return p.GetPhase() == phaseFill && p.GetDocsDone() > 0
	})
	if seen.GetPhase() != phaseFill {
		t.Fatalf("the rebuild never reported the fill phase: last %s (%s)", seen.GetPhase(), seen.GetError())
	}
	return seen
}

// runRebuild starts a rebuild, follows it to its end and requires success.
func runRebuild(t *testing.T, c projectionv1.ProjectionAdminClient, src projectionv1.RebuildSource) *projectionv1.Rebuild {
	t.Helper()
	start := time.Now()
	r := startRebuild(t, c, src)
	final := watchRebuild(t, c, r.GetId(), 50*time.Second, nil)
	if final.GetPhase() != projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED {
		t.Fatalf("rebuild %s from %s ended %s: %s", final.GetId(), src, final.GetPhase(), final.GetError())
	}
	t.Logf("rebuild %s (%s) succeeded in %s: %s -> %s, %d documents", final.GetId(), src,
		time.Since(start).Round(time.Millisecond), final.GetFromIndex(), final.GetToIndex(), final.GetDocsDone())
	return final
}

// errorInfo returns a status error's code and its google.rpc.ErrorInfo reason and metadata.
func errorInfo(err error) (codes.Code, string, map[string]string) {
	st, ok := status.FromError(err)
	if !ok {
		return codes.Unknown, "", nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason(), info.GetMetadata()
		}
	}
	return st.Code(), "", nil
}

// ---- the search cluster, straight ----

func esRequest(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

// aliasIndex returns the index the alias points at, "" when the alias does not exist.
func aliasIndex(t *testing.T, esURL, alias string) string {
	t.Helper()
	code, raw := esRequest(t, "GET", esURL+"/_alias/"+alias, "")
	if code == http.StatusNotFound {
		return ""
	}
	if code != http.StatusOK {
		t.Fatalf("GET _alias/%s: %d %s", alias, code, raw)
	}
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range res {
		names = append(names, name)
	}
	if len(names) != 1 {
		t.Fatalf("alias %s points at %d indices: %v", alias, len(names), names)
	}
	return names[0]
}

func indexExists(t *testing.T, esURL, index string) bool {
	t.Helper()
	code, _ := esRequest(t, "HEAD", esURL+"/"+index, "")
	return code == http.StatusOK
}

// indexDoc is one document of the read model, tombstones included.
type indexDoc struct {
	Version int64
	Deleted bool
	Source  string
}

// dumpIndex reads every document of target (an index or the alias), tombstones included, in
// pages of 10,000 (search_after on the id), after a refresh.
func dumpIndex(t *testing.T, esURL, target string) map[string]indexDoc {
	t.Helper()
	if code, raw := esRequest(t, "POST", esURL+"/"+target+"/_refresh", ""); code != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", target, code, raw)
	}
	out := map[string]indexDoc{}
	after := ""
	for {
		body := map[string]any{"size": 10000, "version": true, "sort": []any{map[string]any{"id": "asc"}},
			"query": map[string]any{"match_all": map[string]any{}}}
		if after != "" {
			body["search_after"] = []string{after}
		}
		raw, _ := json.Marshal(body)
		code, res := esRequest(t, "POST", esURL+"/"+target+"/_search", string(raw))
		if code != http.StatusOK {
			t.Fatalf("search %s: %d %s", target, code, res)
		}
		var page struct {
			Hits struct {
				Hits []struct {
					ID      string          `json:"_id"`
					Version int64           `json:"_version"`
					Source  json.RawMessage `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(res, &page); err != nil {
			t.Fatal(err)
		}
		for _, h := range page.Hits.Hits {
			var s struct {
				Deleted bool `json:"deleted"`
			}
			_ = json.Unmarshal(h.Source, &s)
			out[h.ID] = indexDoc{Version: h.Version, Deleted: s.Deleted, Source: string(h.Source)}
		}
		if len(page.Hits.Hits) < 10000 {
			return out
		}
		after = page.Hits.Hits[len(page.Hits.Hits)-1].ID
	}
}

// rowState is (version, deleted) of a product in the database.
type rowState struct {
	Version int64
	Deleted bool
}

func dbProducts(t *testing.T, db *postgres.DB) map[string]rowState {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id::text, version, deleted_at IS NOT NULL FROM products`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]rowState{}
	for rows.Next() {
		var id string
		var s rowState
		if err := rows.Scan(&id, &s.Version, &s.Deleted); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readModelDiff lists how the read model differs from the database by (id, version, deleted).
func readModelDiff(db map[string]rowState, docs map[string]indexDoc) []string {
	var diffs []string
	for id, r := range db {
		d, ok := docs[id]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s v%d deleted=%v: missing from the read model", id, r.Version, r.Deleted))
		case d.Version != r.Version || d.Deleted != r.Deleted:
			diffs = append(diffs, fmt.Sprintf("%s: database v%d deleted=%v, read model v%d deleted=%v", id, r.Version, r.Deleted, d.Version, d.Deleted))
		}
	}
	for id, d := range docs {
		if _, ok := db[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s v%d deleted=%v: in the read model, unknown to the database", id, d.Version, d.Deleted))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// awaitReadModelMatchesDB polls until every product's (id, version, deleted) in the database
// equals the read model's (through the alias), and no other document exists.
func awaitReadModelMatchesDB(t *testing.T, rp *readPath, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		db := dbProducts(t, rp.db)
		diffs := readModelDiff(db, dumpIndex(t, rp.esURL, rp.cfg.SearchAlias))
		if len(diffs) == 0 {
			return len(db)
		}
		if time.Now().After(deadline) {
			if len(diffs) > 20 {
				diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
			}
			t.Fatalf("read model still differs from the database after %s (%d products):\n%s", timeout, len(db), strings.Join(diffs, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seedSQL inserts n products straight into the products table (no events: fine for a
// database-sourced rebuild, which reads the table). A tenth of them are tombstones.
func seedSQL(t *testing.T, db *postgres.DB, n int, prefix string) {
	t.Helper()
	start := time.Now()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO products (id, sku, name, description, category, brand,
  price_amount, price_currency, stock, attributes, version, created_at, updated_at, deleted_at)
SELECT gen_random_uuid(), $2 || '-' || g, 'Bulk product number ' || g, repeat('A fine product. ', 8),
  'bulk-' || (g % 50), 'brand-' || (g % 20), 100 + g, 'EUR', g % 1000,
  jsonb_build_object('color', 'c' || (g % 7)), 1 + g % 3, now(), now(),
  CASE WHEN g % 10 = 0 THEN now() END
FROM generate_series(1, $1::int) AS g`, n, prefix); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d products with SQL in %s", n, time.Since(start).Round(time.Millisecond))
}

func rebuildCount(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM rebuilds`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitRebuildLockFree waits until no session holds the rebuild lock in this database (after
// a SIGKILL, PostgreSQL drops the dead session's lock when it notices the closed socket).
func awaitRebuildLockFree(t *testing.T, db *postgres.DB) {
	t.Helper()
	eventuallyT(t, 15*time.Second, "the rebuild lock to be released", func() bool {
		var n int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
			postgres.RebuildLockKey()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// ---- more service instances on the same database, topics and alias ----

// siblingConfig is cfg with its own listen ports: another replica of the same deployment.
func siblingConfig(t *testing.T, cfg service.Config) service.Config {
	c := cfg
	c.HTTPAddr, c.GRPCAddr, c.EmbeddedKafkaAddr = testenv.Addr(t), testenv.Addr(t), testenv.Addr(t)
	return c
}

// serveInProcess runs `catalog serve` in-process through the real wiring with cfg as it is
// (an existing, migrated database); startServe is this on a fresh database.
func serveInProcess(t *testing.T, cfg service.Config) *component {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, cleanupDB, err := wiring.InitializeDatabase(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanupDB)
	p, cleanup, err := wiring.InitializeServe(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			cleanup()
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("serve did not stop within 20s of cancellation")
		}
	}
	t.Cleanup(func() { _ = stop() })
	c := &component{base: "http://" + cfg.HTTPAddr, cfg: cfg, db: db, stop: stop}
	eventuallyT(t, 10*time.Second, "catalog serve to become healthy", func() bool {
		r, err := http.Get(c.base + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return true
	})
	return c
}

var catalogBin struct {
	sync.Once
	path string
	err  error
}

// buildCatalog builds ./cmd/catalog once per test binary.
func buildCatalog(t *testing.T) string {
	t.Helper()
	catalogBin.Do(func() {
		dir, err := os.MkdirTemp("", "catalog-bin")
		if err != nil {
			catalogBin.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		catalogBin.path = filepath.Join(dir, "catalog")
		cmd := exec.Command("go", "build", "-o", catalogBin.path, "./cmd/catalog")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			catalogBin.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if catalogBin.err != nil {
		t.Fatal(catalogBin.err)
	}
	return catalogBin.path
}

func configEnv(cfg service.Config) []string {
	return append(os.Environ(),
		"DATABASE_URL="+cfg.DatabaseURL,
		"KAFKA_BROKERS="+strings.Join(cfg.KafkaBrokers, ","),
		"EMBEDDED_KAFKA_ADDR="+cfg.EmbeddedKafkaAddr,
		"ELASTICSEARCH_URL="+cfg.ElasticsearchURL,
		"ELASTICSEARCH_COMPAT="+cfg.ElasticsearchCompat,
		"SEARCH_ALIAS="+cfg.SearchAlias,
		"PRODUCT_EVENTS_TOPIC="+cfg.ProductEventsTopic,
		"DLQ_TOPIC="+cfg.DLQTopic,
		"PROJECTOR_GROUP="+cfg.ProjectorGroup,
		"HTTP_ADDR="+cfg.HTTPAddr,
		"GRPC_ADDR="+cfg.GRPCAddr,
		// Off unless the test gives it an address: replicas on one machine would share 8081.
		"CONSOLE_ADDR="+cfg.ConsoleAddr,
		fmt.Sprintf("TOPIC_PARTITIONS=%d", cfg.TopicPartitions),
		fmt.Sprintf("OUTBOX_LANES=%d", cfg.OutboxLanes),
		"SEARCH_REFRESH_INTERVAL="+cfg.SearchRefreshInterval.String(),
		"SHUTDOWN_TIMEOUT=10s",
		"LOG_LEVEL=info",
	)
}

// serveProc is `catalog serve` (or another role) as a subprocess built from ./cmd/catalog.
type serveProc struct {
	cmd    *exec.Cmd
	cfg    service.Config
	base   string
	done   chan struct{}
	err    error
	output *testenv.Output
}

func startServeProc(t *testing.T, cfg service.Config) *serveProc {
	t.Helper()
	return startServeProcIn(t, cfg, t.TempDir())
}

// startServeProcIn is startServeProc on the given CATALOG_DATA_DIR, to restart a process on
// the state its predecessor left behind.
func startServeProcIn(t *testing.T, cfg service.Config, dataDir string) *serveProc {
	t.Helper()
	p := startCatalogProc(t, cfg, dataDir, "serve")
	out := p.output
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("catalog serve exited at start-up: %v\n%s", p.err, tail(out.String(), 60))
		default:
		}
		if r, err := http.Get(p.base + "/healthz"); err == nil {
			r.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog serve never became healthy\n%s", tail(out.String(), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startCatalogProc starts `catalog <role>` (serve, relay) as a subprocess with cfg on dataDir;
// at the end of the test it is stopped with SIGTERM (SIGKILL after 20 s) and, if the test
// failed, its output is logged.
func startCatalogProc(t *testing.T, cfg service.Config, dataDir, role string) *serveProc {
	t.Helper()
	bin := buildCatalog(t)
	cmd := exec.Command(bin, role)
	cmd.Env = append(configEnv(cfg), "CATALOG_DATA_DIR="+dataDir)
	out := &testenv.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, cfg: cfg, base: "http://" + cfg.HTTPAddr, done: make(chan struct{}), output: out}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("output of catalog %s (%s):\n%s", role, cfg.GRPCAddr, tail(out.String(), 60))
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("catalog serve did not die after SIGKILL")
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// runCLI runs the catalog binary with args against the admin port at grpcAddr and returns
// its stdout, stderr and exit code.
func runCLI(t *testing.T, grpcAddr string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := buildCatalog(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "GRPC_ADDR="+grpcAddr)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("catalog %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("catalog %s did not finish within %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), timeout, out.String(), errOut.String())
	}
	return out.String(), errOut.String(), code
}

// ---- REST without t.Fatal, for goroutines ----

func tryDo(base, method, path, body string, headers ...string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		_ = json.Unmarshal(raw, &out)
	}
	return res.StatusCode, out, nil
}

// indexSettings returns the refresh interval and replica settings of index (flat names).
func indexSettings(t *testing.T, esURL, index string) string {
	t.Helper()
	code, raw := esRequest(t, "GET", esURL+"/"+index+"/_settings?flat_settings=true", "")
	if code != http.StatusOK {
		t.Fatalf("settings of %s: %d %s", index, code, raw)
	}
	var res map[string]struct {
		Settings map[string]any `json:"settings"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	s := res[index].Settings
	return fmt.Sprintf("refresh_interval=%v auto_expand_replicas=%v number_of_replicas=%v",
		s["index.refresh_interval"], s["index.auto_expand_replicas"], s["index.number_of_replicas"])
}
