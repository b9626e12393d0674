//go:build drill

// Package drill is the scale-out drill (make drill): the catalog deployed as several replicas
// of every role on the three-broker Kafka and three-node search cluster of `make
// deps-cluster`, under probe-style load, through broker, search node and replica faults and a
// rolling restart, with a Postgres-against-index oracle after each step. It is behind the
// drill build tag: it needs the cluster, takes minutes and kills cluster members.
package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// repoRoot is the repository's root, where scripts/deps.sh and the cluster's state live.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// env is what the drill reads from the environment of `make drill` (scripts/deps.sh env
// --cluster) and its own knobs.
type env struct {
	bin         string   // CATALOG_BIN: the catalog binary under test
	databaseURL string   // admin URL: the drill creates its own database there
	brokers     []string // KAFKA_BROKERS: the three brokers
	searchURLs  []string // DEPS_CLUSTER_SEARCH_URLS: every search node
	compat      string   // ELASTICSEARCH_COMPAT
	portBase    int      // DRILL_PORT_BASE: replicas listen on portBase+1...
	rate        int      // DRILL_WRITE_RATE: writes per second
	logDir      string   // DRILL_LOG_DIR: replicas' logs
}

func loadEnv(t *testing.T) env {
	t.Helper()
	e := env{
		bin:         os.Getenv("CATALOG_BIN"),
		databaseURL: firstOf(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		brokers:     splitList(os.Getenv("KAFKA_BROKERS")),
		searchURLs:  splitList(firstOf(os.Getenv("DEPS_CLUSTER_SEARCH_URLS"), os.Getenv("ELASTICSEARCH_URL"))),
		compat:      os.Getenv("ELASTICSEARCH_COMPAT"),
		portBase:    envInt(t, "DRILL_PORT_BASE", 19100),
		rate:        envInt(t, "DRILL_WRITE_RATE", 200),
		logDir:      os.Getenv("DRILL_LOG_DIR"),
	}
	if e.bin == "" {
		t.Fatal("CATALOG_BIN is not set: run the drill with `make drill`, which builds bin/catalog")
	}
	if len(e.brokers) != 3 || len(e.searchURLs) != 3 {
		t.Fatalf("the drill needs the cluster of `make deps-cluster` (3 brokers, 3 search nodes); got KAFKA_BROKERS=%v and search nodes %v: "+
			"run `make drill`, or eval \"$(scripts/deps.sh env --cluster)\"", e.brokers, e.searchURLs)
	}
	if e.logDir == "" {
		e.logDir = t.TempDir()
	}
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// replica is one catalog process of the deployment: `catalog serve --roles=...`.
type replica struct {
	name, roles string
	httpAddr    string
	grpcAddr    string
	env         []string
	bin         string
	logPath     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *replica) base() string { return "http://" + r.httpAddr }

// start runs the process; its output is appended to its log file.
func (r *replica) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "\n==== %s start %s ====\n", r.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(r.bin, "serve")
	cmd.Env = r.env
	// A drill that dies (a timeout, ^C) must not leave replicas behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("start %s: %w", r.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(done)
	}()
	r.cmd, r.done = cmd, done
	return nil
}

// signal sends sig and waits up to timeout for the process to exit.
func (r *replica) signal(sig syscall.Signal, timeout time.Duration) error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of %s", r.name, timeout, sig)
	}
}

// kill is a crash: SIGKILL.
func (r *replica) kill() error { return r.signal(syscall.SIGKILL, 10*time.Second) }

// stop is a graceful stop: SIGTERM, as an orchestrator's rolling update sends.
func (r *replica) stop() error { return r.signal(syscall.SIGTERM, 40*time.Second) }

// exited reports whether the process has ended by itself.
func (r *replica) exited() bool {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// awaitReady waits until /readyz answers 200: the replica's roles have their dependencies.
func (r *replica) awaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if r.exited() {
			return fmt.Errorf("%s exited during start-up:\n%s", r.name, tailFile(r.logPath, 30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base()+"/readyz", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s:\n%s", r.name, timeout, tailFile(r.logPath, 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tailFile returns the last lines of a file, for failure messages.
func tailFile(path string, lines int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	l := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// deps runs scripts/deps.sh with args (cluster kill|start|restart NAME, ...) and returns how
// long it took: for start and restart, the time until the member is back and the cluster
// replicated again.
func deps(ctx context.Context, args ...string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "scripts", "deps.sh"), args...)
	cmd.Dir = repoRoot()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return time.Since(start), fmt.Errorf("scripts/deps.sh %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return time.Since(start), nil
}

// kafkaAdmin is an admin client of the cluster.
func kafkaAdmin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("catalog-drill"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// leaders counts the partitions of topic each broker leads.
func leaders(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int, int32, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return nil, -1, err
	}
	td, ok := md.Topics[topic]
	if !ok {
		return nil, -1, fmt.Errorf("metadata of %s: not in the answer", topic)
	}
	if td.Err != nil {
		return nil, -1, fmt.Errorf("metadata of %s: %w", topic, td.Err)
	}
	out := map[int32]int{}
	p0 := int32(-1)
	for _, p := range td.Partitions {
		out[p.Leader]++
		if p.Partition == 0 {
			p0 = p.Leader
		}
	}
	return out, p0, nil
}

// topicDepth is the number of records retained in topic.
func topicDepth(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if err := errors.Join(starts.Error(), ends.Error()); err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			n += o.Offset - s.Offset
		}
	})
	return n, nil
}
