package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
)

// adminFake is a scripted rebuild service behind a real gRPC port on loopback.
type adminFake struct {
	mu       sync.Mutex
	startErr error
	snaps    []readmodel.Snapshot // Get returns these in order, then the last
	gets     int
	indices  []rebuild.IndexInfo
	keep     int
	rollback func() (rebuild.Rollback, error) // nil: nothing to roll back to
	lost     bool                             // RunnerLost's answer
}

func (f *adminFake) Start(context.Context, readmodel.Source) (readmodel.Snapshot, error) {
	if f.startErr != nil {
		return readmodel.Snapshot{}, f.startErr
	}
	return f.snaps[0], nil
}

func (f *adminFake) Get(context.Context, string) (readmodel.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.snaps) == 0 {
		return readmodel.Snapshot{}, readmodel.ErrNotFound
	}
	s := f.snaps[min(f.gets, len(f.snaps)-1)]
	f.gets++
	return s, nil
}

func (f *adminFake) Cancel(context.Context, string) (readmodel.Snapshot, error) {
	return readmodel.Snapshot{}, readmodel.ErrFinished
}

func (f *adminFake) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	return f.indices, nil
}

func (f *adminFake) RollbackAlias(context.Context) (rebuild.Rollback, error) {
	if f.rollback != nil {
		return f.rollback()
	}
	return rebuild.Rollback{}, fmt.Errorf("rollback: %w (the live index x is the oldest)", rebuild.ErrNoPreviousIndex)
}

func (f *adminFake) RunnerLost(readmodel.Snapshot) bool { return f.lost }

func (f *adminFake) PruneIndices(_ context.Context, keep int) ([]string, error) {
	f.keep = keep
	return []string{"ps_v1_20250101_000000"}, nil
}

func serveFake(t *testing.T, f *adminFake) *service.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcport.NewServer(grpcport.Config{WatchPollInterval: 5 * time.Millisecond}, f, grpcport.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &service.Config{GRPCAddr: ln.Addr().String()}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func snap(phase readmodel.Phase, done, total int64, at time.Duration, errMsg string) readmodel.Snapshot {
	starts := map[readmodel.Phase]time.Time{readmodel.PhasePending: t0, readmodel.PhaseFill: t0.Add(time.Second)}
	s := readmodel.Snapshot{ID: "r1", Source: readmodel.SourceDatabase, Phase: phase, ToIndex: "ps_v1_new", DocsDone: done,
		DocsTotal: total, StartedAt: t0, UpdatedAt: t0.Add(at), Error: errMsg, PhaseStarts: starts}
	if phase.Terminal() {
		fin := t0.Add(at)
		s.FinishedAt = &fin
		starts[phase] = fin
	}
	return s
}

func runCmd(t *testing.T, build func(*service.Config) *cobra.Command, cfg *service.Config, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := build(cfg)
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestRebuildWaitSucceeded(t *testing.T) {
	cfg := serveFake(t, &adminFake{snaps: []readmodel.Snapshot{
		snap(readmodel.PhasePending, 0, 0, 0, ""),
		snap(readmodel.PhaseFill, 50, 100, 2*time.Second, ""),
		snap(readmodel.PhaseSucceeded, 100, 100, 3*time.Second, ""),
	}})
	out, errOut, err := runCmd(t, newRebuildCmd, cfg, "--wait")
	if err != nil {
		t.Fatalf("err = %v\nstderr:\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "r1" || !strings.Contains(out, "succeeded") {
		t.Errorf("stdout = %q", out)
	}
	// Not a terminal: plain lines, one per phase, no carriage returns.
	if strings.Contains(errOut, "\r") || !strings.Contains(errOut, "phase=fill docs=50/100") || !strings.Contains(errOut, "phase=succeeded") {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestRebuildWaitFailedIsAnError(t *testing.T) {
	failed := snap(readmodel.PhaseFailed, 10, 100, 3*time.Second, "write ps_v1_new: cluster\nunavailable")
	cfg := serveFake(t, &adminFake{snaps: []readmodel.Snapshot{snap(readmodel.PhasePending, 0, 0, 0, ""), failed}})
	_, _, err := runCmd(t, newRebuildCmd, cfg, "--wait")
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("err = %v, want a failure (exit 1)", err)
	}
	if !strings.Contains(err.Error(), "failed in phase fill") || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "cluster unavailable") {
		t.Errorf("err = %q", err)
	}
}

func TestRebuildAlreadyRunning(t *testing.T) {
	cfg := serveFake(t, &adminFake{
		startErr: fmt.Errorf("start rebuild: %w", readmodel.ErrAlreadyRunning),
		snaps:    []readmodel.Snapshot{snap(readmodel.PhaseFill, 1, 2, time.Second, "")},
	})
	_, _, err := runCmd(t, newRebuildCmd, cfg)
	if err == nil || !strings.Contains(err.Error(), "rebuild r1 is already running (phase fill)") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
}

func TestRebuildUsageAndConnectionErrors(t *testing.T) {
	var ue usageError
	_, _, err := runCmd(t, newRebuildCmd, &service.Config{GRPCAddr: "127.0.0.1:1"}, "--source=s3")
	if !errors.As(err, &ue) {
		t.Errorf("--source=s3: err = %v, want a usage error", err)
	}
	_, _, err = runCmd(t, newRebuildCmd, &service.Config{GRPCAddr: "127.0.0.1:1"})
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "GRPC_ADDR=127.0.0.1:1") || strings.Contains(err.Error(), "\n") {
		t.Errorf("unreachable: err = %v", err)
	}
	_, _, err = runCmd(t, newIndexCmd, &service.Config{GRPCAddr: "127.0.0.1:1"}, "prune", "--keep", "-1")
	if !errors.As(err, &ue) {
		t.Errorf("--keep -1: err = %v, want a usage error", err)
	}
}

func TestIndexCommands(t *testing.T) {
	created := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	f := &adminFake{indices: []rebuild.IndexInfo{
		{Name: "product_search_v2_20260203_040506", MappingVersion: 2, Created: created, Live: 1234567, Tombstones: 12, Aliased: true},
		{Name: "product_search_v1_20260101_000000", MappingVersion: 1, Created: created.AddDate(0, -1, 0), Live: 5},
	}}
	cfg := serveFake(t, f)

	out, _, err := runCmd(t, newIndexCmd, cfg, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "*") || strings.HasPrefix(lines[2], "*") ||
		!strings.Contains(lines[1], "1,234,567") || !strings.Contains(lines[1], "2026-02-03 04:05:06") {
		t.Errorf("table:\n%s", out)
	}

	out, _, err = runCmd(t, newIndexCmd, cfg, "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []indexJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(got) != 2 || !got[0].Aliased || got[0].LiveDocs != 1234567 || !got[0].Created.Equal(created) {
		t.Errorf("json = %+v", got)
	}

	out, _, err = runCmd(t, newIndexCmd, cfg, "prune")
	if err != nil || f.keep != 2 || !strings.Contains(out, "deleted ps_v1_20250101_000000") {
		t.Errorf("prune: out = %q, keep = %d, err = %v", out, f.keep, err)
	}

	_, _, err = runCmd(t, newIndexCmd, cfg, "rollback")
	if err == nil || !strings.Contains(err.Error(), "no previous index") {
		t.Errorf("rollback: err = %v", err)
	}
}

// TestIndexRollbackSaysHowTheIndexWasCaughtUp: a rollback prints the switch on stdout and
// how many events brought the older index up to date on stderr; a refused one exits 1 with
// the server's reason, which points at a rebuild.
func TestIndexRollbackSaysHowTheIndexWasCaughtUp(t *testing.T) {
	f := &adminFake{rollback: func() (rebuild.Rollback, error) {
		return rebuild.Rollback{From: "ps_v1_new", To: "ps_v1_old", Since: rebuild.Offsets{0: 10}, CaughtUp: 1234, Drained: 2}, nil
	}}
	cfg := serveFake(t, f)
	out, errOut, err := runCmd(t, newIndexCmd, cfg, "rollback")
	if err != nil {
		t.Fatal(err)
	}
	if out != "alias rolled back: ps_v1_new -> ps_v1_old\n" || !strings.Contains(errOut, "1,234 events") || !strings.Contains(errOut, "2 more drained") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}

	f.rollback = func() (rebuild.Rollback, error) {
		return rebuild.Rollback{}, fmt.Errorf("rollback to ps_v0_old: %w: it has mapping v0 and this release writes v1, so it cannot be brought up to date; run 'catalog rebuild' instead",
			rebuild.ErrRollbackMappingOutdated)
	}
	_, _, err = runCmd(t, newIndexCmd, cfg, "rollback")
	if err == nil || !strings.Contains(err.Error(), "mapping v0") || !strings.Contains(err.Error(), "catalog rebuild") || strings.Contains(err.Error(), "FailedPrecondition") {
		t.Errorf("refused rollback: %v", err)
	}
	if errors.As(err, new(usageError)) {
		t.Errorf("a refused rollback is a usage error (exit 2), want a failure (exit 1): %v", err)
	}
	if _, _, err := runCmd(t, newIndexCmd, cfg, "rollback", "--timeout", "0s"); !errors.As(err, new(usageError)) {
		t.Errorf("--timeout 0s: %v, want a usage error", err)
	}
}

// TestRebuildStatusShowsADeadRunner: a record whose runner stopped beating says so, with the
// runner and the age of its last heartbeat, instead of a phase that looks alive.
func TestRebuildStatusShowsADeadRunner(t *testing.T) {
	s := snap(readmodel.PhaseFill, 10, 100, time.Second, "")
	s.Owner, s.HeartbeatAt = "host-a/4242/abcdef", time.Now().Add(-9*time.Second)
	f := &adminFake{snaps: []readmodel.Snapshot{s}, lost: true}
	cfg := serveFake(t, f)
	out, _, err := runCmd(t, newRebuildCmd, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "host-a/4242/abcdef NOT RESPONDING (last heartbeat 9s ago)") {
		t.Errorf("status of a dead runner's rebuild:\n%s", out)
	}
	f.lost = false
	out, _, err = runCmd(t, newRebuildCmd, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "NOT RESPONDING") || !strings.Contains(out, "host-a/4242/abcdef (heartbeat") {
		t.Errorf("status of a live runner's rebuild:\n%s", out)
	}
}

func TestRenderProgressBar(t *testing.T) {
	p := &projectionv1.RebuildProgress{
		Rebuild: &projectionv1.Rebuild{Id: "r1"}, Phase: projectionv1.RebuildPhase_REBUILD_PHASE_FILL,
		DocsDone: 521000, DocsTotal: 1000000, RateDocsPerSecond: 8120.4, Eta: durationpb.New(59 * time.Second),
	}
	line := renderProgressBar(p, 100)
	for _, want := range []string{"fill", "52.1%", "521,000/1,000,000", "8,120/s", "ETA 59s", "[", ">"} {
		if !strings.Contains(line, want) {
			t.Errorf("bar %q lacks %q", line, want)
		}
	}
	if len(line) > 100 {
		t.Errorf("bar is %d columns, want <= 100", len(line))
	}
	for _, w := range []int{10, 40, 60, 200} {
		if got := renderProgressBar(p, w); len(got) > w {
			t.Errorf("width %d: %d columns: %q", w, len(got), got)
		}
	}
	plain := renderProgressLine(p, t0)
	if plain != "2026-03-01T12:00:00Z rebuild r1 phase=fill docs=521000/1000000 rate=8120/s eta=59s" {
		t.Errorf("plain = %q", plain)
	}
}

func TestPlainProgressThrottlesRepeats(t *testing.T) {
	var buf bytes.Buffer
	now := t0
	v := &progressView{w: &buf, width: 80, now: func() time.Time { return now }}
	fill := &projectionv1.RebuildProgress{Rebuild: &projectionv1.Rebuild{Id: "r1"}, Phase: projectionv1.RebuildPhase_REBUILD_PHASE_FILL}
	v.update(fill)
	now = now.Add(time.Second)
	v.update(fill) // same phase, too soon: no line
	now = now.Add(5 * time.Second)
	v.update(fill) // same phase, 5 s later: a line
	v.update(&projectionv1.RebuildProgress{Rebuild: &projectionv1.Rebuild{Id: "r1"}, Phase: projectionv1.RebuildPhase_REBUILD_PHASE_VALIDATE})
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, buf.String())
	}
}

func TestDialTarget(t *testing.T) {
	for in, want := range map[string]string{":9090": "127.0.0.1:9090", "0.0.0.0:9090": "127.0.0.1:9090", "[::]:9090": "[::1]:9090", "db:1": "db:1"} {
		if got, err := dialTarget(in); err != nil || got != want {
			t.Errorf("dialTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestRebuildStatusJSONFollowsTheCLIConventions: like `status --json`, numbers are numbers,
// phases and sources lower-case words, durations seconds in *_seconds fields.
func TestRebuildStatusJSONFollowsTheCLIConventions(t *testing.T) {
	cfg := serveFake(t, &adminFake{snaps: []readmodel.Snapshot{snap(readmodel.PhaseSucceeded, 100, 100, 3*time.Second, "")}})
	out, errOut, err := runCmd(t, newRebuildCmd, cfg, "status", "--json")
	if err != nil {
		t.Fatalf("err = %v\n%s", err, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if got["phase"] != "succeeded" || got["source"] != "database" || got["docs_done"] != float64(100) || got["docs_total"] != float64(100) {
		t.Errorf("phase/source/docs = %v/%v/%#v/%#v, want succeeded/database/100/100\n%s", got["phase"], got["source"], got["docs_done"], got["docs_total"], out)
	}
	timings, _ := got["phase_timings"].([]any)
	if len(timings) == 0 {
		t.Fatalf("no phase timings:\n%s", out)
	}
	first, _ := timings[0].(map[string]any)
	if first["phase"] != "pending" || first["duration_seconds"] != float64(1) {
		t.Errorf("first phase timing = %v, want pending with duration_seconds 1", first)
	}
	if strings.Contains(out, "REBUILD_PHASE_") || strings.Contains(out, `"duration":`) {
		t.Errorf("proto names leak into the JSON:\n%s", out)
	}
}

// TestRebuildStatusShowsRateETAAndResumes: the record's recent rate, the time the phase still
// needs with the moment it ends, the events apart from the documents, and how often the
// rebuild was resumed; --json carries the same figures for scripts.
func TestRebuildStatusShowsRateETAAndResumes(t *testing.T) {
	s := snap(readmodel.PhaseFill, 400_000, 1_000_000, 10*time.Second, "")
	s.Rate, s.EventsDone, s.EventsTotal, s.Resumes = 12_000, 3, 3, 1
	cfg := serveFake(t, &adminFake{snaps: []readmodel.Snapshot{s}})
	out, _, err := runCmd(t, newRebuildCmd, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"documents 400,000/1,000,000", "events    3/3", "rate      12,000 documents/s (last 30 s)",
		"eta       50s (fill ends about 2026-03-01T12:01:00Z)", "resumed   1 time(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, newRebuildCmd, cfg, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if got["rate_per_second"] != 12000.0 || got["rate_unit"] != "documents" || got["eta_seconds"] != 50.0 ||
		got["estimated_completion"] != "2026-03-01T12:01:00Z" || got["resumes"] != 1.0 {
		t.Errorf("status --json: %s", out)
	}
}

// TestRebuildStatusShowsAHandedOffRebuild: a record without a runner whose runner is "lost"
// was handed off (a shutdown, a lost lock): status says a replica resumes it, not that a
// runner does not respond.
func TestRebuildStatusShowsAHandedOffRebuild(t *testing.T) {
	s := snap(readmodel.PhaseFill, 10, 100, time.Second, "")
	cfg := serveFake(t, &adminFake{snaps: []readmodel.Snapshot{s}, lost: true})
	out, _, err := runCmd(t, newRebuildCmd, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "runner    none: handed off") || !strings.Contains(out, "resumes it from its last completed chunk") || strings.Contains(out, "NOT RESPONDING") {
		t.Errorf("status of a handed-off rebuild:\n%s", out)
	}
}

// TestRenderProgressInEvents: a catch-up (or a Kafka fill) counts events: the bar shows them,
// labelled, and the plain line says what the rate counts.
func TestRenderProgressInEvents(t *testing.T) {
	p := &projectionv1.RebuildProgress{
		Rebuild: &projectionv1.Rebuild{Id: "r1", RateUnit: "events", RatePerSecond: 250, Resumes: 2},
		Phase:   projectionv1.RebuildPhase_REBUILD_PHASE_CATCH_UP, DocsDone: 1000, DocsTotal: 1000,
		EventsDone: 500, EventsTotal: 2000, RateEventsPerSecond: 250, Eta: durationpb.New(6 * time.Second),
	}
	line := renderProgressBar(p, 120)
	for _, want := range []string{"catch_up", "25.0%", "500/2,000 events", "250/s", "ETA 6s"} {
		if !strings.Contains(line, want) {
			t.Errorf("bar %q lacks %q", line, want)
		}
	}
	plain := renderProgressLine(p, t0)
	if plain != "2026-03-01T12:00:00Z rebuild r1 phase=catch_up docs=1000/1000 events=500/2000 rate=250/s rate_unit=events eta=6s resumes=2" {
		t.Errorf("plain = %q", plain)
	}
}
