package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/internal/testenv"
	grpcport "github.com/marketplace/catalog/ports/grpc"
)

// Targets of the rebuild at scale, checked (reported, never asserted) by BenchmarkRebuildScale.
const (
	// scaleRateRatio: the fill rate at the large catalog is at least this share of the fill
	// rate at the small one: the fill's cost grows linearly with the catalog.
	scaleRateRatio = 0.85
	// scaleRSSLimit bounds the peak resident memory of the process that runs the rebuild.
	scaleRSSLimit = 300 << 20
	// scaleRSSGrowth: the peak at the large catalog is at most this multiple of the peak at
	// the small one: memory does not depend on the catalog's size.
	scaleRSSGrowth = 1.2
	// scaleResumeExtra: a rebuild SIGKILLed halfway through its fill and resumed takes at
	// most this much longer than one that was not interrupted.
	scaleResumeExtra = 0.10
)

// Ports of the `catalog serve` processes BenchmarkRebuildScale starts (a range of its own, so
// it does not collide with a development server or the acceptance checks).
const (
	scaleHTTPAddr = "127.0.0.1:18901"
	scaleGRPCAddr = "127.0.0.1:18902"
)

// scaleSettings are BenchmarkRebuildScale's workload, from the environment (make bench-scale
// documents them).
type scaleSettings struct {
	products, baseline int      // SCALE_PRODUCTS (5,000,000), SCALE_BASELINE (200,000)
	engines            []string // SCALE_ENGINES: opensearch,bleve
	bleveProducts      int      // SCALE_BLEVE_PRODUCTS: the large catalog on Bleve (SCALE_PRODUCTS)
	kill, verify       bool     // SCALE_KILL, SCALE_VERIFY (both 1)
}

func scaleSettingsFromEnv(b *testing.B) scaleSettings {
	b.Helper()
	num := func(name string, def int) int {
		raw := os.Getenv(name)
		if raw == "" {
			return def
		}
		n, err := strconv.Atoi(strings.ReplaceAll(raw, "_", ""))
		if err != nil || n < 1000 {
			b.Fatalf("%s=%q: want a number of products of at least 1000", name, raw)
		}
		return n
	}
	flag := func(name string) bool { return os.Getenv(name) != "0" }
	s := scaleSettings{products: num("SCALE_PRODUCTS", 5_000_000), baseline: num("SCALE_BASELINE", 200_000),
		kill: flag("SCALE_KILL"), verify: flag("SCALE_VERIFY")}
	s.bleveProducts = num("SCALE_BLEVE_PRODUCTS", s.products)
	engines := os.Getenv("SCALE_ENGINES")
	if engines == "" {
		engines = "opensearch,bleve"
	}
	for _, e := range strings.Split(engines, ",") {
		if e != "opensearch" && e != "bleve" {
			b.Fatalf("SCALE_ENGINES=%q: want opensearch and/or bleve", engines)
		}
		s.engines = append(s.engines, e)
	}
	return s
}

// BenchmarkRebuildScale is the rebuild at marketplace scale (make bench-scale; skipped unless
// CATALOG_BENCH_SCALE=1, because it takes hours). Catalogs of SCALE_BASELINE (200,000) and
// SCALE_PRODUCTS (5,000,000) products are seeded straight into PostgreSQL with INSERT ...
// SELECT generate_series, once each. For each engine, the search server of `make deps`
// (OpenSearch) and the embedded one (Bleve), `bin/catalog serve` runs as a process of its own
// on the real Kafka, and a database rebuild is started through the gRPC port and followed to
// its end, with the process's memory read from /proc every 250 ms:
//
//   - the fill rate (documents over the fill phase's duration, from the record) at both sizes:
//     at the large catalog at least 85% of the small one's, so the cost is linear;
//   - the process's peak RSS (VmHWM) at both sizes: under 300 MiB, and at most 1.2 times the
//     small catalog's at the large one (independent of the size); for Bleve, which maps its
//     index files, the anonymous part (RssAnon, sampled) is reported beside it;
//   - the same large rebuild with `catalog serve` SIGKILLed when the fill passes 50% and
//     started again at once: it resumes (same id, from its last completed chunk) and succeeds;
//     its total time is at most 10% above the uninterrupted one's;
//   - `catalog verify` on a freshly started process after each rebuild: its rate at both sizes
//     and the process's peak RSS, which must not grow with the catalog either. On Bleve the
//     rebuild's process is first left running until the merges that follow the fill are done
//     (its peak includes them), so the verify's process measures the verify, not those merges.
//
// The summary lines name the machine, its load before and after, and the figures with
// PASS/MISS; the targets are reported, not asserted.
func BenchmarkRebuildScale(b *testing.B) {
	if os.Getenv("CATALOG_BENCH_SCALE") != "1" {
		b.Skip("the rebuild at scale takes hours: run it with 'make bench-scale' (CATALOG_BENCH_SCALE=1)")
	}
	set := scaleSettingsFromEnv(b)
	bin := buildScaleBinary(b)
	k := realKafka(b)
	var search searchServer
	for _, e := range set.engines {
		if e == "opensearch" {
			search = realSearch(b)
		}
	}
	fmt.Printf("\n=== %s: machine: %s; settings: %+v\n", b.Name(), machine(), set)
	b.Cleanup(func() { fmt.Printf("\n=== %s: done; machine: %s\n", b.Name(), machine()) })

	dbs := map[int]string{}
	seeded := func(b *testing.B, n int) string {
		if url, ok := dbs[n]; ok {
			return url
		}
		url := testenv.NewDatabase(b)
		ctx := context.Background()
		db, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := postgres.Migrate(ctx, db, quietLog()); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		seedProducts(b, db, n, runID())
		fmt.Printf("=== %s: seeded %d products with INSERT ... SELECT generate_series in %s\n", b.Name(), n, time.Since(start).Round(time.Second))
		early, late := chunkCost(b, db, n)
		fmt.Printf("=== %s: a chunk of %d products read by ProductSource.Chunk at the start of the table: %s, at 95%% of it: %s (median of 9 each)\n",
			b.Name(), scaleChunk, early.Round(time.Microsecond), late.Round(time.Microsecond))
		dbs[n] = url
		return url
	}

	large := func(engine string) int {
		if engine == "bleve" {
			return set.bleveProducts
		}
		return set.products
	}
	// Seeded here, so the databases live as long as the whole benchmark and are shared by the
	// engines (a rebuild reads them and changes nothing).
	seeded(b, set.baseline)
	for _, engine := range set.engines {
		seeded(b, large(engine))
	}
	for _, engine := range set.engines {
		b.Run(engine, func(b *testing.B) {
			noNsPerOp(b)
			n := large(engine)
			small := runScale(b, scaleRun{bin: bin, engine: engine, search: search, kafka: k, dbURL: dbs[set.baseline], products: set.baseline, verify: set.verify})
			big := runScale(b, scaleRun{bin: bin, engine: engine, search: search, kafka: k, dbURL: dbs[n], products: n, verify: set.verify})
			var killed scaleResult
			if set.kill {
				killed = runScale(b, scaleRun{bin: bin, engine: engine, search: search, kafka: k, dbURL: dbs[n], products: n, killAt: 0.5})
			}
			reportScale(b, small, big, killed)
		})
	}
}

// scaleChunk is the rebuild's chunk size (rebuild.Config's default BatchSize).
const scaleChunk = 5000

// chunkCost is the median time of reading one chunk with the rebuild's ProductSource at the
// start of the products table and at 95% of it: the database side of the fill costs the same
// per chunk however deep it is, or the fill would slow down as the catalog grows.
func chunkCost(b *testing.B, db *postgres.DB, n int) (early, late time.Duration) {
	b.Helper()
	src, err := postgres.NewProductSource(db)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var deep string
	if err := db.Pool.QueryRow(ctx, `SELECT id::text FROM products ORDER BY id OFFSET $1 LIMIT 1`, n*95/100).Scan(&deep); err != nil {
		b.Fatal(err)
	}
	median := func(after string) time.Duration {
		var took durations
		for range 9 {
			start := time.Now()
			c, err := src.Chunk(ctx, after, scaleChunk)
			if err != nil || len(c) == 0 {
				b.Fatalf("chunk after %q: %d products, %v", after, len(c), err)
			}
			took = append(took, time.Since(start))
		}
		return took.sorted().pct(50)
	}
	return median(""), median(deep)
}

// scaleRun is one rebuild of BenchmarkRebuildScale.
type scaleRun struct {
	bin      string
	engine   string
	search   searchServer
	kafka    cluster
	dbURL    string
	products int
	// killAt, when positive, is the share of the fill after which the process is SIGKILLed
	// and started again.
	killAt float64
	// verify runs `catalog verify` on a fresh process after the rebuild.
	verify bool
}

// scaleResult is what a scaleRun measured.
type scaleResult struct {
	products     int
	ok           bool
	outcome      string
	total        time.Duration // StartRebuild returned -> terminal phase seen
	fill         time.Duration // the fill phase, from the record
	phases       string
	peakRSS      uint64 // the largest VmHWM of the processes that ran the rebuild
	peakAnon     uint64 // the largest RssAnon sampled
	killedAt     int64  // documents done when the process was killed
	lowest       int64  // the lowest documents done seen after the restart
	resumes      int32
	resumedAfter time.Duration // kill -> the record shows the resume
	fillCPU      time.Duration // CPU time the process spent in the fill (uninterrupted runs)
	verifyRate   float64
	verifyTook   time.Duration
	verifyRSS    uint64
	startRSS     uint64 // the fresh process's peak before the verify began (its start-up)
	verifyAnon   uint64 // the largest anonymous memory sampled during the verify
	verifyOK     bool
	settled      time.Duration // rebuild ended -> the embedded engine's segment files stopped changing
}

// cpuPerThousand is the process's CPU time per thousand documents filled: unlike the rate, it
// hardly depends on what else runs on the machine.
func (r scaleResult) cpuPerThousand() time.Duration {
	if r.products == 0 {
		return 0
	}
	return r.fillCPU * 1000 / time.Duration(r.products)
}

func (r scaleResult) fillRate() float64 {
	if r.fill <= 0 {
		return 0
	}
	return float64(r.products) / r.fill.Seconds()
}

// runScale runs one rebuild on a fresh alias (and data directory) and cleans up after it.
func runScale(b *testing.B, run scaleRun) scaleResult {
	b.Helper()
	res := scaleResult{products: run.products}
	topic := createTopic(b, run.kafka, "scale", 12)
	if run.kafka.name == "kafka" {
		// The serving process creates the DLQ topic itself; createTopic only cleans up its own.
		b.Cleanup(func() { deleteTopic(run.kafka, topic+".dlq") })
	}
	alias := strings.ToLower(testenv.Name("bench_scale"))
	dataDir, err := os.MkdirTemp("", "catalog-scale-")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = os.RemoveAll(dataDir)
		if run.engine == "opensearch" {
			run.search.deleteIndices(alias + "_v*")
		}
	}()
	env := append(os.Environ(),
		"DATABASE_URL="+run.dbURL,
		"KAFKA_BROKERS="+strings.Join(run.kafka.brokers, ","),
		"EMBEDDED_KAFKA_ADDR=",
		"SEARCH_ALIAS="+alias,
		"PRODUCT_EVENTS_TOPIC="+topic,
		"DLQ_TOPIC="+topic+".dlq",
		"PROJECTOR_GROUP="+topic+"-projector",
		"HTTP_ADDR="+scaleHTTPAddr,
		"GRPC_ADDR="+scaleGRPCAddr,
		"CONSOLE_ADDR=",
		"CATALOG_DATA_DIR="+dataDir,
		"LOG_LEVEL=warn",
	)
	if run.engine == "opensearch" {
		env = append(env, "ELASTICSEARCH_URL="+run.search.url, "ELASTICSEARCH_COMPAT="+run.search.compat)
	} else {
		env = append(env, "ELASTICSEARCH_URL=")
	}
	proc := startScaleServe(b, run.bin, env)
	defer func() { proc.stop() }()
	conn, err := grpc.NewClient(scaleGRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := projectionv1.NewProjectionAdminClient(conn)
	ctx := context.Background()
	started, err := client.StartRebuild(ctx, &projectionv1.StartRebuildRequest{Source: projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE})
	if err != nil {
		b.Fatalf("start rebuild of %d products on %s: %v", run.products, run.engine, err)
	}
	t0 := time.Now()
	var (
		last              *projectionv1.Rebuild
		killedAt          time.Time
		lastPrint         time.Time
		cpuBefore, cpuNow time.Duration
		cpuDone           bool
	)
	res.lowest = -1
	for {
		time.Sleep(250 * time.Millisecond)
		if st, ok := proc.memory(); ok {
			res.peakRSS, res.peakAnon = max(res.peakRSS, st.hwm), max(res.peakAnon, st.anon)
			cpuNow = st.cpu
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := client.GetRebuild(gctx, &projectionv1.GetRebuildRequest{Id: started.GetId()})
		cancel()
		if err != nil {
			if time.Since(t0) > 12*time.Hour {
				b.Fatalf("rebuild %s: %v", started.GetId(), err)
			}
			continue // the process restarting
		}
		last = r
		switch {
		case r.GetPhase() < projectionv1.RebuildPhase_REBUILD_PHASE_FILL:
			cpuBefore = cpuNow // the fill begins after this reading at the latest
		case r.GetPhase() > projectionv1.RebuildPhase_REBUILD_PHASE_FILL && !cpuDone && killedAt.IsZero():
			res.fillCPU, cpuDone = cpuNow-cpuBefore, true
		}
		if time.Since(lastPrint) > time.Minute {
			lastPrint = time.Now()
			fmt.Printf("    %s %s: %s %d/%d documents, %.0f %s/s, eta %s, rss %d MiB (load %s)\n", b.Name(), time.Since(t0).Round(time.Second),
				phaseName(r.GetPhase()), r.GetDocsDone(), r.GetDocsTotal(), r.GetRatePerSecond(), r.GetRateUnit(),
				r.GetEta().AsDuration().Round(time.Second), res.peakRSS>>20, loadAvg())
		}
		if run.killAt > 0 && killedAt.IsZero() && r.GetPhase() == projectionv1.RebuildPhase_REBUILD_PHASE_FILL &&
			r.GetDocsTotal() > 0 && float64(r.GetDocsDone()) >= run.killAt*float64(r.GetDocsTotal()) {
			res.killedAt = r.GetDocsDone()
			proc.kill()
			killedAt = time.Now()
			proc = startScaleServe(b, run.bin, env)
			fmt.Printf("    %s: SIGKILLed catalog serve at %d of %d documents, started it again\n", b.Name(), res.killedAt, r.GetDocsTotal())
			continue
		}
		if !killedAt.IsZero() {
			if r.GetPhase() == projectionv1.RebuildPhase_REBUILD_PHASE_FILL && (res.lowest < 0 || r.GetDocsDone() < res.lowest) {
				res.lowest = r.GetDocsDone()
			}
			if r.GetResumes() > 0 && res.resumedAfter == 0 {
				res.resumedAfter = time.Since(killedAt)
			}
		}
		if grpcport.PhaseFromProto(r.GetPhase()).Terminal() {
			break
		}
	}
	res.total = time.Since(t0)
	res.resumes = last.GetResumes()
	res.ok = last.GetPhase() == projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED && last.GetDocsDone() == int64(run.products)
	res.outcome = fmt.Sprintf("%s, %d/%d documents", phaseName(last.GetPhase()), last.GetDocsDone(), last.GetDocsTotal())
	if e := last.GetError(); e != "" {
		res.outcome += ": " + e
	}
	var parts []string
	for _, pt := range last.GetPhaseTimings() {
		if d := pt.GetDuration(); d != nil {
			parts = append(parts, fmt.Sprintf("%s %s", phaseName(pt.GetPhase()), d.AsDuration().Round(100*time.Millisecond)))
			if pt.GetPhase() == projectionv1.RebuildPhase_REBUILD_PHASE_FILL {
				res.fill = d.AsDuration()
			}
		}
	}
	res.phases = strings.Join(parts, ", ")
	if run.engine == "bleve" && res.ok {
		// The embedded engine goes on merging the fill's segments after the switch. That work
		// is the rebuild's: it stays in this process (and its peak), and the verify's fresh
		// process starts on the settled index, as a verify does on a serving node.
		res.settled = settleSegments(b, filepath.Join(dataDir, "search"), proc, &res)
		fmt.Printf("    %s: the index's segments settled %s after the rebuild ended\n", b.Name(), res.settled.Round(time.Second))
	}
	if st, ok := proc.memory(); ok {
		res.peakRSS, res.peakAnon = max(res.peakRSS, st.hwm), max(res.peakAnon, st.anon)
	}
	fmt.Printf("    %s: rebuild of %d products: %s in %s [%s], peak RSS %d MiB (anonymous %d MiB)\n", b.Name(), run.products,
		res.outcome, res.total.Round(time.Second), res.phases, res.peakRSS>>20, res.peakAnon>>20)

	if run.verify && res.ok {
		// A fresh process, so its peak memory is the verify's (and the start-up's).
		proc.stop()
		proc = startScaleServe(b, run.bin, env)
		if st, ok := proc.memory(); ok {
			res.startRSS = st.hwm
		}
		fmt.Printf("    %s: the verify's process before it answered /healthz, the largest resident set sampled: %s\n", b.Name(), proc.startPeak)
		res.verifyOK, res.verifyRate, res.verifyTook, res.verifyAnon = scaleVerify(b, run.bin, env, proc)
		if st, ok := proc.memory(); ok {
			res.verifyRSS = st.hwm
		}
		fmt.Printf("    %s: verify of %d products: clean %v, %.0f products/s (%s), peak RSS %d MiB (%d MiB at start-up; anonymous up to %d MiB)\n", b.Name(), run.products,
			res.verifyOK, res.verifyRate, res.verifyTook.Round(time.Second), res.verifyRSS>>20, res.startRSS>>20, res.verifyAnon>>20)
	}
	return res
}

// settleQuiet is how long the embedded engine's segment files must stay the same for
// settleSegments to take its merging as done: scorch's merger starts its next merge at once
// while there is work, and a merge creates its output file when it begins.
const settleQuiet = 10 * time.Second

// settleSegments waits (at most ten minutes) until the set of segment files under dir has not
// changed for settleQuiet, sampling proc's memory into res meanwhile, and returns how long that
// took from the call, not counting the quiet period itself.
func settleSegments(b *testing.B, dir string, proc *scaleServe, res *scaleResult) time.Duration {
	b.Helper()
	var count int
	defer func() { fmt.Printf("    %s: %d segment files\n", b.Name(), count) }()
	files := func() string {
		var names []string
		_ = filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".zap") {
				names = append(names, path)
			}
			return nil
		})
		count = len(names)
		return strings.Join(names, "\n") // WalkDir visits in lexical order
	}
	start := time.Now()
	last, changed := files(), start
	for time.Since(changed) < settleQuiet {
		if time.Since(start) > 10*time.Minute {
			fmt.Printf("    %s: the index's segments still changed after %s; verifying anyway\n", b.Name(), time.Since(start).Round(time.Second))
			break
		}
		time.Sleep(250 * time.Millisecond)
		if st, ok := proc.memory(); ok {
			res.peakRSS, res.peakAnon = max(res.peakRSS, st.hwm), max(res.peakAnon, st.anon)
		}
		if now := files(); now != last {
			last, changed = now, time.Now()
		}
	}
	return changed.Sub(start)
}

// scaleVerify runs `catalog verify --json` against proc and returns whether it was clean,
// its rate and its duration, sampling proc's memory meanwhile (anon: the largest anonymous
// memory seen).
func scaleVerify(b *testing.B, bin string, env []string, proc *scaleServe) (clean bool, rate float64, took time.Duration, anon uint64) {
	var peak residentParts
	defer func() {
		fmt.Printf("    %s: the largest resident set sampled during the verify: %s\n", b.Name(), peak)
	}()
	b.Helper()
	cmd := exec.Command(bin, "verify", "--json")
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-time.After(250 * time.Millisecond):
			if st, ok := proc.memory(); ok {
				anon = max(anon, st.anon)
			}
			if r, ok := proc.resident(); ok && r.total() > peak.total() {
				peak = r
			}
		}
	}
	took = time.Since(start)
	var rep struct {
		Consistent bool    `json:"consistent"`
		Rate       float64 `json:"rate_per_second"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		fmt.Printf("    %s: catalog verify failed after %s: %v; its last words:\n      %s\n", b.Name(), took.Round(time.Second), err,
			strings.Join(lines[max(0, len(lines)-3):], "\n      "))
		return false, 0, took, anon
	}
	return err == nil && rep.Consistent, rep.Rate, took, anon
}

// reportScale prints the figures of one engine against the targets.
func reportScale(b *testing.B, small, big, killed scaleResult) {
	b.Helper()
	ratio := 0.0
	if small.fillRate() > 0 {
		ratio = big.fillRate() / small.fillRate()
	}
	rssGrowth := 0.0
	if small.peakRSS > 0 {
		rssGrowth = float64(big.peakRSS) / float64(small.peakRSS)
	}
	b.ReportMetric(small.fillRate(), "fill_docs/s_small")
	b.ReportMetric(big.fillRate(), "fill_docs/s_large")
	b.ReportMetric(100*ratio, "%_rate_large_of_small")
	b.ReportMetric(float64(big.peakRSS>>20), "peak_rss_MiB_large")
	if small.fillCPU > 0 && big.fillCPU > 0 {
		summary(b, "CPU time of the rebuilding process per 1,000 documents filled: %s at %d products, %s at %d products (x%.2f)",
			small.cpuPerThousand().Round(time.Millisecond), small.products, big.cpuPerThousand().Round(time.Millisecond), big.products,
			float64(big.cpuPerThousand())/float64(small.cpuPerThousand()))
	}
	summary(b, "fill %d products %.0f docs/s (%s), %d products %.0f docs/s (%s): %.0f%% of the small rate, target >= %.0f%% %s | %s %s",
		small.products, small.fillRate(), small.fill.Round(time.Second), big.products, big.fillRate(), big.fill.Round(time.Second),
		100*ratio, 100*scaleRateRatio, verdict(small.ok && big.ok && ratio >= scaleRateRatio), small.outcome, big.outcome)
	summary(b, "peak RSS of the rebuilding process: %d MiB at %d products, %d MiB at %d products (x%.2f; target < %d MiB and <= x%.1f) %s; anonymous memory peaked at %d MiB and %d MiB",
		small.peakRSS>>20, small.products, big.peakRSS>>20, big.products, rssGrowth, scaleRSSLimit>>20, scaleRSSGrowth,
		verdict(big.peakRSS < scaleRSSLimit && small.peakRSS < scaleRSSLimit && rssGrowth <= scaleRSSGrowth), small.peakAnon>>20, big.peakAnon>>20)
	if killed.products > 0 {
		extra := 0.0
		if big.total > 0 {
			extra = (killed.total - big.total).Seconds() / big.total.Seconds()
		}
		b.ReportMetric(100*extra, "%_extra_after_kill")
		summary(b, "SIGKILL at %d of %d documents: resumed %d time(s) %s after the kill, lowest documents done after it %d; %s in %s against %s uninterrupted: %+.1f%% (target < %.0f%%) %s; fill %s against %s",
			killed.killedAt, killed.products, killed.resumes, killed.resumedAfter.Round(100*time.Millisecond), killed.lowest,
			killed.outcome, killed.total.Round(time.Second), big.total.Round(time.Second), 100*extra, 100*scaleResumeExtra,
			verdict(killed.ok && killed.resumes == 1 && killed.lowest >= killed.killedAt && extra < scaleResumeExtra),
			killed.fill.Round(time.Second), big.fill.Round(time.Second))
	}
	if small.verifyTook > 0 || big.verifyTook > 0 {
		vratio, vgrowth := 0.0, 0.0
		if small.verifyRate > 0 {
			vratio = big.verifyRate / small.verifyRate
		}
		if small.verifyRSS > 0 {
			vgrowth = float64(big.verifyRSS) / float64(small.verifyRSS)
		}
		summary(b, "catalog verify: %d products %.0f/s (%s, clean %v), %d products %.0f/s (%s, clean %v): %.0f%% of the small rate; peak RSS %d MiB and %d MiB (x%.2f; target < %d MiB and <= x%.1f) %s",
			small.products, small.verifyRate, small.verifyTook.Round(time.Second), small.verifyOK, big.products, big.verifyRate,
			big.verifyTook.Round(time.Second), big.verifyOK, 100*vratio, small.verifyRSS>>20, big.verifyRSS>>20, vgrowth, scaleRSSLimit>>20, scaleRSSGrowth,
			verdict(small.verifyOK && big.verifyOK && vratio >= scaleRateRatio && big.verifyRSS < scaleRSSLimit && vgrowth <= scaleRSSGrowth))
	}
}

// scaleServe is one `catalog serve` process of BenchmarkRebuildScale.
type scaleServe struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *testenv.Output

	mu   sync.Mutex
	last procMemory
	// startPeak is the largest resident set sampled before the process answered /healthz,
	// by what it maps.
	startPeak residentParts
	dataDir   string // CATALOG_DATA_DIR as the kernel names the files it maps
}

// residentParts is a process's resident memory by what it maps, from /proc/PID/smaps.
type residentParts struct {
	segments, index, binary, anon, other uint64 // segment files (.zap), the data directory's other files, the executable, anonymous memory, other files
}

func (r residentParts) total() uint64 { return r.segments + r.index + r.binary + r.anon + r.other }

func (r residentParts) String() string {
	return fmt.Sprintf("segment files %d MiB, other index files %d MiB, executable %d MiB, anonymous %d MiB, other %d MiB",
		r.segments>>20, r.index>>20, r.binary>>20, r.anon>>20, r.other>>20)
}

// resident reads the process's resident memory by mapping.
func (p *scaleServe) resident() (residentParts, bool) {
	dataDir := p.dataDir
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "smaps"))
	if err != nil {
		return residentParts{}, false
	}
	var r residentParts
	cur := &r.anon
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			path := ""
			if len(f) > 5 {
				path = f[5]
			}
			switch {
			case dataDir != "" && strings.HasPrefix(path, dataDir) && strings.HasSuffix(path, ".zap"):
				cur = &r.segments
			case dataDir != "" && strings.HasPrefix(path, dataDir):
				cur = &r.index
			case path == p.cmd.Path:
				cur = &r.binary
			case strings.HasPrefix(path, "/"):
				cur = &r.other
			default:
				cur = &r.anon
			}
		case len(f) >= 2 && f[0] == "Rss:":
			if kb, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				*cur += kb << 10
			}
		}
	}
	return r, true
}

// procMemory is a process's memory as /proc/PID/status reports it, and its CPU time so far
// (/proc/PID/stat).
type procMemory struct {
	hwm, rss, anon uint64 // VmHWM (peak RSS), VmRSS, RssAnon in bytes
	cpu            time.Duration
}

func startScaleServe(b *testing.B, bin string, env []string) *scaleServe {
	b.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	out := &testenv.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &scaleServe{cmd: cmd, done: make(chan struct{}), out: out, dataDir: dataDirOf(env)}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			b.Fatalf("catalog serve exited at start-up:\n%s", out.String())
		default:
		}
		if r, ok := p.resident(); ok && r.total() > p.startPeak.total() {
			p.startPeak = r
		}
		if r, err := http.Get("http://" + scaleHTTPAddr + "/healthz"); err == nil {
			_ = r.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			b.Fatalf("catalog serve never became healthy:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dataDirOf is CATALOG_DATA_DIR of env, resolved as the kernel names mapped files.
func dataDirOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "CATALOG_DATA_DIR="); ok && v != "" {
			if abs, err := filepath.EvalSymlinks(v); err == nil {
				return abs
			}
			return v
		}
	}
	return ""
}

// memory reads the process's memory; ok is false once it has ended (the last reading stays).
func (p *scaleServe) memory() (procMemory, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		return p.last, false
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmHWM:":
			m.hwm = kb << 10
		case "VmRSS:":
			m.rss = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		}
	}
	if m.hwm == 0 {
		return p.last, false
	}
	if raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "stat")); err == nil {
		// utime and stime are the 14th and 15th fields, in clock ticks of 1/100 s (USER_HZ);
		// the command name before them is in parentheses and may hold spaces.
		if i := bytes.LastIndexByte(raw, ')'); i > 0 {
			if f := strings.Fields(string(raw[i+1:])); len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				m.cpu = time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	p.last = m
	return m, true
}

func (p *scaleServe) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process with SIGTERM (SIGKILL after a minute).
func (p *scaleServe) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.kill()
	}
}

// buildScaleBinary builds ./cmd/catalog into a temporary directory.
func buildScaleBinary(b *testing.B) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "catalog")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "../cmd/catalog")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, msg)
	}
	return out
}

// machine describes the machine and its load, for the figures' context.
func machine() string {
	mem := "?"
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	model := "?"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "?"
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(raw)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM; load average %s (1, 5, 15 min)", runtime.NumCPU(), model, mem, load)
}

func phaseName(p projectionv1.RebuildPhase) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "REBUILD_PHASE_"))
}
