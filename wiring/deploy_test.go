package wiring_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// occupy listens on a free loopback port for the test's lifetime, as another process would.
func occupy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

// TestBindErrorsNameTheSetting: a taken port stops the process with the variable to change,
// not only "address already in use".
func TestBindErrorsNameTheSetting(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	cfg, _ := freshDeployment(t)
	cfg.EmbeddedKafkaAddr = occupy(t)
	_, cleanup, err := wiring.InitializeServe(ctx, cfg, log)
	if err == nil {
		cleanup()
		t.Fatal("serve started on a taken EMBEDDED_KAFKA_ADDR")
	}
	if want := "set EMBEDDED_KAFKA_ADDR to a free host:port"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}

	for _, variable := range []string{"HTTP_ADDR", "GRPC_ADDR", "METRICS_ADDR"} {
		t.Run(variable, func(t *testing.T) {
			cfg, _ := freshDeployment(t, func(c *service.Config) { c.MetricsAddr = testenv.Addr(t) })
			taken := occupy(t)
			switch variable {
			case "HTTP_ADDR":
				cfg.HTTPAddr = taken
			case "GRPC_ADDR":
				cfg.GRPCAddr = taken
			case "METRICS_ADDR":
				cfg.MetricsAddr = taken
			}
			p, cleanup, err := wiring.InitializeServe(ctx, cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err = p.Run(runCtx)
			if want := "set " + variable + " to a free host:port"; err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("serve with a taken %s: %v; want an error saying %q", variable, err, want)
			}
		})
	}
}

// TestProjectorProcessAnswersItsReadiness: `catalog project` has no API, so its probes are on
// METRICS_ADDR: /healthz, and /readyz with the projector's own checks (Kafka and the search
// alias), failing when the alias is gone.
func TestProjectorProcessAnswersItsReadiness(t *testing.T) {
	cluster := testkafka.Real(t)
	esURL, compat := testenv.ElasticsearchURL(t)
	name := strings.ToLower(testenv.Name("prj"))
	testkafka.DropOnCleanup(t, cluster, name+".events", "dlq."+name+".events")
	cfg, _ := freshDeployment(t, func(c *service.Config) {
		c.KafkaBrokers = cluster.Brokers
		c.ElasticsearchURL, c.ElasticsearchCompat = esURL, compat
		c.SearchAlias, c.ProductEventsTopic, c.DLQTopic, c.ProjectorGroup = name, name+".events", "dlq."+name+".events", name+"-projector"
		c.TopicPartitions = 2
		c.MetricsAddr = testenv.Addr(t)
	})
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", esURL+"/"+name+"_v*", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, cleanup, err := wiring.InitializeProject(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; cleanup() })

	base := "http://" + cfg.MetricsAddr
	get := func(path string) (int, map[string]any) {
		res, err := http.Get(base + path)
		if err != nil {
			return 0, nil
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	eventuallyT(t, 20*time.Second, "the projector's /healthz", func() bool { s, _ := get("/healthz"); return s == 200 })
	status, body := get("/readyz")
	checks, _ := body["checks"].(map[string]any)
	if status != 200 || body["role"] != "projector" || checks["kafka"] == nil || checks["search"] == nil {
		t.Fatalf("/readyz of catalog project = %d %v; want 200 for role projector with checks kafka and search", status, body)
	}
	req, _ := http.NewRequest("DELETE", esURL+"/"+name+"_v*", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventuallyT(t, 10*time.Second, "/readyz to fail without the search alias", func() bool {
		s, b := get("/readyz")
		c, _ := b["checks"].(map[string]any)
		search, _ := c["search"].(map[string]any)
		return s == 503 && search["status"] == "fail"
	})
}

// metricNamesIn lists the catalog_ metric names a deployment file's expressions name.
func metricNamesIn(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bcatalog_[a-z0-9_]+`).FindAllString(string(b), -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// TestDeployFilesNameOnlyExportedMetrics: every metric the alert rules and the dashboard name
// is exported by a running `catalog serve` after some traffic, so renaming a metric (or
// exporting it only after its first event) breaks this test, not a silent alert.
func TestDeployFilesNameOnlyExportedMetrics(t *testing.T) {
	rp := startReadPath(t)
	id := product201(t, rp.component, "DEPLOY-1", "Deploy kettle", "kitchen", 1500)
	rp.waitSearch(t, "q=kettle", 30*time.Second, "the product to be searchable", func(p searchPage) bool {
		return len(p.Items) == 1 && p.Items[0].ID == id
	})
	exported := map[string]bool{}
	eventuallyT(t, 30*time.Second, "the status sampler's first sample", func() bool {
		res, err := http.Get(rp.base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(b), -1) {
			exported[m[1]] = true
		}
		return exported["catalog_status_problem"]
	})
	for _, file := range []string{"deploy/prometheus/catalog-rules.yaml", "deploy/grafana/catalog.json"} {
		names := metricNamesIn(t, file)
		if len(names) == 0 {
			t.Fatalf("%s names no catalog_ metric", file)
		}
		for _, n := range names {
			base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(n, "")
			if !exported[n] && !exported[base] {
				t.Errorf("%s names %s, which a running catalog serve does not export", file, n)
			}
		}
	}
}

// TestServeCreatesTheDLQTopicAtStart: the dead-letter topic exists before the first dead
// letter, with the configured partitions, so the first permanent failure does not meet a
// missing topic (and a partition that waits for it).
func TestServeCreatesTheDLQTopicAtStart(t *testing.T) {
	rp := startReadPath(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(rp.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A topic created a moment ago can still be unknown to the broker that answers the
	// metadata request (the controller's update reaches it shortly after): ask again until
	// the deadline, and fail only if the topic never shows up with its partitions.
	for {
		topics, err := kadm.NewClient(cl).ListTopics(ctx, rp.cfg.DLQTopic)
		if err != nil {
			t.Fatal(err)
		}
		td, ok := topics[rp.cfg.DLQTopic]
		if ok && td.Err == nil && len(td.Partitions) == rp.cfg.TopicPartitions {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("DLQ topic %s after start: %+v (exists %v); want %d partitions", rp.cfg.DLQTopic, td, ok, rp.cfg.TopicPartitions)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
