package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/service"
)

// The CLI is a client of the gRPC admin port (ProjectionAdmin on GRPC_ADDR): the rebuild
// runs inside a service process, which holds the connections, the lock and the record, so
// the command can be run from anywhere that reaches the port and may exit at any time.

const (
	// adminRPCTimeout bounds each unary call. Rollback and prune touch the search cluster
	// and may take a few seconds; anything longer is a hung server.
	adminRPCTimeout = 30 * time.Second
	// plainProgressEvery is how often non-terminal output repeats an unchanged phase, so a
	// CI log shows the rebuild is alive without one line per poll.
	plainProgressEvery = 5 * time.Second
	// watchReconnectFor is how long --wait keeps re-watching while the port is unreachable
	// (a replica restarting, a rolling deploy) before it gives up.
	watchReconnectFor = 30 * time.Second
)

func newRebuildCmd(cfg *service.Config) *cobra.Command {
	var (
		source  string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rebuild [--source=database|kafka] [--wait] [--timeout=D]",
		Short: "Rebuild the search read model with no downtime (asks the gRPC admin port on GRPC_ADDR)",
		Long: `Asks the service on GRPC_ADDR to rebuild the search read model: a new index with the
current mapping is filled from the source, caught up with live events, validated against the
database and made live by one atomic alias switch. Readers never see downtime; if anything
fails before the switch, the alias is left untouched.

--source=database (the default) reads the products table in primary-key chunks, each in a
short transaction of its own, and catches up with the changes made meanwhile;
--source=kafka replays the events topic from offset 0 (only for topics that keep history).
A rebuild whose process is killed or shut down is resumed by a serving replica, under the
same id, from its last completed chunk.

Prints the rebuild's id on stdout. With --wait it follows the rebuild to its end, showing a
progress bar on a terminal and plain lines otherwise (with the rate over the last 30 seconds
and the time the phase still needs), and exits 0 if it succeeded and 1 if it failed or was
cancelled. Leaving early (Ctrl-C, --timeout) does not stop the rebuild.

Only one rebuild runs at a time across all replicas; asking for a second one fails with exit
code 1 and names the one that runs.`,
		Example: `  catalog rebuild --wait
  id=$(catalog rebuild --source=kafka) && catalog rebuild status --wait "$id"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := parseSourceFlag(source)
			if err != nil {
				return usageError{err}
			}
			if timeout < 0 {
				return usageError{fmt.Errorf("--timeout must not be negative, got %s", timeout)}
			}
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx := cmd.Context()
			rctx, cancel := context.WithTimeout(ctx, adminRPCTimeout)
			r, err := client.StartRebuild(rctx, &projectionv1.StartRebuildRequest{Source: src})
			cancel()
			if err != nil {
				return adminError(cfg.GRPCAddr, "start rebuild", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), r.GetId())
			if !wait {
				fmt.Fprintf(cmd.ErrOrStderr(), "rebuild %s started from the %s; follow it with 'catalog rebuild status --wait %s'\n",
					r.GetId(), sourceLabel(r.GetSource()), r.GetId())
				return nil
			}
			return waitForRebuild(ctx, cmd, client, cfg.GRPCAddr, r.GetId(), timeout)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&source, "source", "database", "where to read the full state from: database or kafka")
	fs.BoolVar(&wait, "wait", false, "follow the rebuild until it ends; exit 1 unless it succeeded")
	fs.DurationVar(&timeout, "timeout", 0, "with --wait, stop waiting after this long (the rebuild goes on); 0 waits until it ends")
	cmd.AddCommand(newRebuildStatusCmd(cfg), newRebuildCancelCmd(cfg))
	return cmd
}

func newRebuildStatusCmd(cfg *service.Config) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show a rebuild (the newest without ID); --wait follows it to its end",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usageError{fmt.Errorf("--timeout must not be negative, got %s", timeout)}
			}
			if wait && asJSON {
				return usageError{errors.New("--wait and --json cannot be combined")}
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			if wait {
				return waitForRebuild(cmd.Context(), cmd, client, cfg.GRPCAddr, id, timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), adminRPCTimeout)
			defer cancel()
			r, err := client.GetRebuild(ctx, &projectionv1.GetRebuildRequest{Id: id})
			if err != nil {
				return adminError(cfg.GRPCAddr, "get rebuild", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rebuildToJSON(r))
			}
			printRebuild(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rebuild until it ends; exit 1 unless it succeeded")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, stop waiting after this long; 0 waits until it ends")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func newRebuildCancelCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Stop a running rebuild; its unfinished index is deleted and the alias is untouched",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), adminRPCTimeout)
			defer cancel()
			if _, err := client.CancelRebuild(ctx, &projectionv1.CancelRebuildRequest{Id: args[0]}); err != nil {
				return adminError(cfg.GRPCAddr, "cancel rebuild", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancellation of rebuild %s requested; 'catalog rebuild status --wait %s' shows it end\n", args[0], args[0])
			return nil
		},
	}
}

func parseSourceFlag(s string) (projectionv1.RebuildSource, error) {
	switch s {
	case "database":
		return projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE, nil
	case "kafka":
		return projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA, nil
	}
	return 0, fmt.Errorf("--source must be database or kafka, got %q", s)
}

// waitForRebuild follows a rebuild to its end and turns the outcome into the exit status:
// nil only for a rebuild that succeeded.
func waitForRebuild(ctx context.Context, cmd *cobra.Command, client projectionv1.ProjectionAdminClient, addr, id string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	view := newProgressView(cmd.ErrOrStderr())
	last, err := followRebuild(ctx, client, id, view.update)
	view.done()
	if err != nil {
		if last == nil {
			return adminError(addr, "watch rebuild", err)
		}
		state := fmt.Sprintf("rebuild %s is still running (phase %s) and goes on; 'catalog rebuild status --wait %s' follows it again",
			last.GetId(), phaseLabel(last.GetPhase()), last.GetId())
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("gave up waiting after %s: %s", timeout, state)
		case ctx.Err() != nil:
			return fmt.Errorf("stopped waiting: %s", state)
		}
		return fmt.Errorf("%w; %s", adminError(addr, "watch rebuild", err), state)
	}
	out := cmd.OutOrStdout()
	switch last.GetPhase() {
	case projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED:
		fmt.Fprintf(out, "rebuild %s succeeded in %s: alias now on %s (%s documents)\n", last.GetId(),
			elapsed(last).Round(time.Second), last.GetToIndex(), groupDigits(last.GetDocsDone()))
		return nil
	case projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED:
		return fmt.Errorf("rebuild %s was cancelled in phase %s: %s", last.GetId(), phaseLabel(lastWorkPhase(last)), last.GetError())
	default:
		return fmt.Errorf("rebuild %s failed in phase %s: %s", last.GetId(), phaseLabel(lastWorkPhase(last)), oneLine(last.GetError()))
	}
}

// followRebuild streams a rebuild's progress to update until a terminal phase and returns
// the last record seen. A stream that breaks because a replica restarts or shuts down is
// opened again (the record is in the database, so any replica continues it) for up to
// watchReconnectFor.
func followRebuild(ctx context.Context, client projectionv1.ProjectionAdminClient, id string, update func(*projectionv1.RebuildProgress)) (*projectionv1.Rebuild, error) {
	var last *projectionv1.Rebuild
	var downSince time.Time
	for {
		err := func() error {
			stream, err := client.WatchRebuild(ctx, &projectionv1.WatchRebuildRequest{Id: id})
			if err != nil {
				return err
			}
			for {
				p, err := stream.Recv()
				if err != nil {
					return err
				}
				downSince = time.Time{}
				last = p.GetRebuild()
				id = last.GetId() // an empty id resolved to the newest rebuild: stay on it
				update(p)
			}
		}()
		if last != nil && terminal(last.GetPhase()) {
			return last, nil
		}
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the watch ended before the rebuild did")
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if status.Code(err) != codes.Unavailable || last == nil {
			return last, err // never reached: a wrong address, not a restart
		}
		if downSince.IsZero() {
			downSince = time.Now()
		} else if time.Since(downSince) > watchReconnectFor {
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func terminal(p projectionv1.RebuildPhase) bool {
	switch p {
	case projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED, projectionv1.RebuildPhase_REBUILD_PHASE_FAILED,
		projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED:
		return true
	}
	return false
}

// lastWorkPhase is the phase a finished rebuild ended in, which is what an operator needs
// to know about a failure ("failed in fill"), not the terminal phase itself.
func lastWorkPhase(r *projectionv1.Rebuild) projectionv1.RebuildPhase {
	p := r.GetPhase()
	for _, t := range r.GetPhaseTimings() {
		if !terminal(t.GetPhase()) {
			p = t.GetPhase()
		}
	}
	return p
}

func elapsed(r *projectionv1.Rebuild) time.Duration {
	end := r.GetUpdatedAt().AsTime()
	if r.GetFinishedAt() != nil {
		end = r.GetFinishedAt().AsTime()
	}
	return end.Sub(r.GetStartedAt().AsTime())
}

// progressView shows progress as a bar redrawn in place on a terminal and as plain lines
// otherwise (CI logs, files), where carriage returns would become garbage.
type progressView struct {
	w         io.Writer
	tty       bool
	width     int
	drawn     bool
	lastPhase projectionv1.RebuildPhase
	lastLine  time.Time
	now       func() time.Time
}

func newProgressView(w io.Writer) *progressView {
	v := &progressView{w: w, width: 80, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.tty = true
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 20 {
			v.width = width
		}
	}
	return v
}

func (v *progressView) update(p *projectionv1.RebuildProgress) {
	if v.tty {
		// \r returns to the line start, \x1b[K clears what a longer previous line left.
		fmt.Fprint(v.w, "\r"+renderProgressBar(p, v.width-1)+"\x1b[K")
		v.drawn = true
		return
	}
	now := v.now()
	if p.GetPhase() == v.lastPhase && now.Sub(v.lastLine) < plainProgressEvery && !terminal(p.GetPhase()) {
		return
	}
	v.lastPhase, v.lastLine = p.GetPhase(), now
	fmt.Fprintln(v.w, renderProgressLine(p, now))
}

// done ends the bar's line, so what follows starts on a fresh one.
func (v *progressView) done() {
	if v.drawn {
		fmt.Fprintln(v.w)
		v.drawn = false
	}
}

// renderProgressBar draws one line of at most width columns:
//
//	fill         [==========>         ]  52.1%  521,000/1,000,000  8,120/s  ETA 59s
//
// The bar and the figures follow the phase's work: documents in a database fill, events in a
// Kafka fill or a catch-up ("events" after the counts). The bar shrinks first when the
// terminal is narrow; the figures are what matter.
func renderProgressBar(p *projectionv1.RebuildProgress, width int) string {
	phase := fmt.Sprintf("%-15s", phaseLabel(p.GetPhase()))
	var figures strings.Builder
	done, total, unit := work(p)
	frac := -1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
		fmt.Fprintf(&figures, " %5.1f%%  %s/%s%s", frac*100, groupDigits(done), groupDigits(total), unit)
	} else if done > 0 {
		fmt.Fprintf(&figures, "  %s%s", groupDigits(done), unit)
	}
	if r := rate(p); r > 0 {
		fmt.Fprintf(&figures, "  %s/s", groupDigits(int64(r+0.5)))
	}
	if eta := p.GetEta(); eta != nil {
		fmt.Fprintf(&figures, "  ETA %s", formatETA(eta.AsDuration()))
	}
	if p.GetRebuild().GetRunnerLost() {
		if p.GetRebuild().GetRunner() == "" {
			figures.WriteString("  WAITING TO BE RESUMED")
		} else {
			figures.WriteString("  RUNNER NOT RESPONDING")
		}
	}
	barWidth := min(width-len(phase)-figures.Len()-3, 30)
	if barWidth < 5 {
		return truncate(phaseLabel(p.GetPhase())+figures.String(), width) // narrow: figures first
	}
	var bar strings.Builder
	bar.WriteString("[")
	filled := 0
	if frac >= 0 {
		filled = int(frac * float64(barWidth))
	}
	if terminal(p.GetPhase()) && p.GetPhase() == projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED {
		filled = barWidth
	}
	for i := range barWidth {
		switch {
		case i < filled:
			bar.WriteByte('=')
		case i == filled && frac >= 0:
			bar.WriteByte('>')
		default:
			bar.WriteByte(' ')
		}
	}
	bar.WriteString("]")
	return truncate(phase+" "+bar.String()+figures.String(), width)
}

// work is the progress a bar shows: events (labelled) while the phase's rate counts events,
// documents otherwise.
func work(p *projectionv1.RebuildProgress) (done, total int64, unit string) {
	if p.GetRebuild().GetRateUnit() == "events" || (p.GetRateEventsPerSecond() > 0 && p.GetRateDocsPerSecond() == 0) {
		return p.GetEventsDone(), p.GetEventsTotal(), " events"
	}
	return p.GetDocsDone(), p.GetDocsTotal(), ""
}

// rate is the phase's recent rate, in whichever unit it counts.
func rate(p *projectionv1.RebuildProgress) float64 {
	return max(p.GetRateDocsPerSecond(), p.GetRateEventsPerSecond())
}

// renderProgressLine is the plain form: one self-contained, greppable line.
func renderProgressLine(p *projectionv1.RebuildProgress, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rebuild %s phase=%s docs=%d/%d", now.UTC().Format(time.RFC3339),
		p.GetRebuild().GetId(), phaseLabel(p.GetPhase()), p.GetDocsDone(), p.GetDocsTotal())
	if p.GetEventsTotal() > 0 || p.GetEventsDone() > 0 {
		fmt.Fprintf(&b, " events=%d/%d", p.GetEventsDone(), p.GetEventsTotal())
	}
	if r := p.GetRateDocsPerSecond(); r > 0 {
		fmt.Fprintf(&b, " rate=%.0f/s", r)
	} else if r := p.GetRateEventsPerSecond(); r > 0 {
		fmt.Fprintf(&b, " rate=%.0f/s rate_unit=events", r)
	}
	if eta := p.GetEta(); eta != nil {
		fmt.Fprintf(&b, " eta=%s", formatETA(eta.AsDuration()))
	}
	if n := p.GetRebuild().GetResumes(); n > 0 {
		fmt.Fprintf(&b, " resumes=%d", n)
	}
	if e := p.GetRebuild().GetError(); e != "" {
		fmt.Fprintf(&b, " error=%q", e)
	}
	if p.GetRebuild().GetRunnerLost() {
		fmt.Fprintf(&b, " runner_lost=%s", orDash(p.GetRebuild().GetRunner()))
	}
	return b.String()
}

func printRebuild(w io.Writer, r *projectionv1.Rebuild) {
	fmt.Fprintf(w, "rebuild   %s\n", r.GetId())
	fmt.Fprintf(w, "source    %s\n", sourceLabel(r.GetSource()))
	fmt.Fprintf(w, "phase     %s\n", phaseLabel(r.GetPhase()))
	fmt.Fprintf(w, "indices   %s -> %s\n", orDash(r.GetFromIndex()), orDash(r.GetToIndex()))
	fmt.Fprintf(w, "documents %s/%s\n", groupDigits(r.GetDocsDone()), groupDigits(r.GetDocsTotal()))
	if r.GetEventsTotal() > 0 || r.GetEventsDone() > 0 {
		fmt.Fprintf(w, "events    %s/%s\n", groupDigits(r.GetEventsDone()), groupDigits(r.GetEventsTotal()))
	}
	if rate := r.GetRatePerSecond(); rate > 0 {
		fmt.Fprintf(w, "rate      %s %s/s (last 30 s)\n", groupDigits(int64(rate+0.5)), r.GetRateUnit())
	}
	if eta := r.GetEta(); eta != nil {
		fmt.Fprintf(w, "eta       %s (%s ends about %s)\n", formatETA(eta.AsDuration()), phaseLabel(r.GetPhase()),
			r.GetEstimatedCompletion().AsTime().UTC().Format(time.RFC3339))
	}
	if n := r.GetResumes(); n > 0 {
		fmt.Fprintf(w, "resumed   %d time(s) from its last completed chunk\n", n)
	}
	fmt.Fprintf(w, "started   %s\n", r.GetStartedAt().AsTime().UTC().Format(time.RFC3339))
	if line := runnerLine(r, time.Now()); line != "" {
		fmt.Fprintf(w, "runner    %s\n", line)
	}
	if r.GetFinishedAt() != nil {
		fmt.Fprintf(w, "finished  %s (%s)\n", r.GetFinishedAt().AsTime().UTC().Format(time.RFC3339), elapsed(r).Round(time.Second))
	}
	if r.GetError() != "" {
		fmt.Fprintf(w, "error     %s\n", oneLine(r.GetError()))
	}
	for _, t := range r.GetPhaseTimings() {
		d := "running"
		if t.GetDuration() != nil {
			d = t.GetDuration().AsDuration().Round(time.Millisecond).String()
		} else if terminal(t.GetPhase()) {
			d = ""
		}
		line := fmt.Sprintf("  %-16s %s  %s", phaseLabel(t.GetPhase()), t.GetStartedAt().AsTime().UTC().Format("15:04:05.000"), d)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// runnerLine says who runs an unfinished rebuild and whether it is alive; "" for a finished
// one or a record without a runner.
func runnerLine(r *projectionv1.Rebuild, now time.Time) string {
	if terminal(r.GetPhase()) {
		return ""
	}
	if r.GetRunner() == "" {
		if r.GetRunnerLost() {
			return "none: handed off (its process shut down or lost the rebuild lock); a serving replica resumes it from its last completed chunk within seconds"
		}
		return ""
	}
	age := "never"
	if hb := r.GetHeartbeatAt(); hb != nil {
		age = now.Sub(hb.AsTime()).Round(time.Second).String() + " ago"
	}
	if r.GetRunnerLost() {
		return fmt.Sprintf("%s NOT RESPONDING (last heartbeat %s): its process died or cannot reach the database; a serving replica's recovery resumes the rebuild from its last completed chunk within seconds", r.GetRunner(), age)
	}
	return fmt.Sprintf("%s (heartbeat %s)", r.GetRunner(), age)
}

// rebuildJSON is `rebuild status --json`, in the conventions of every --json of the CLI
// (`status --json`, `verify --json`): counts are numbers, durations seconds in a *_seconds
// field, phases and sources lower-case words, times RFC 3339 or null.
type rebuildJSON struct {
	ID          string `json:"id"`
	Source      string `json:"source"`
	Phase       string `json:"phase"`
	FromIndex   string `json:"from_index"`
	ToIndex     string `json:"to_index"`
	DocsDone    int64  `json:"docs_done"`
	DocsTotal   int64  `json:"docs_total"`
	EventsDone  int64  `json:"events_done"`
	EventsTotal int64  `json:"events_total"`
	// RatePerSecond is over a recent window, in RateUnit (documents, or events while a
	// catch-up or a Kafka fill runs).
	RatePerSecond float64 `json:"rate_per_second"`
	RateUnit      string  `json:"rate_unit"`
	// ETASeconds is the time the phase still needs; null when it cannot be estimated yet.
	ETASeconds          *float64          `json:"eta_seconds"`
	EstimatedCompletion *time.Time        `json:"estimated_completion"`
	Resumes             int32             `json:"resumes"`
	StartedAt           *time.Time        `json:"started_at"`
	UpdatedAt           *time.Time        `json:"updated_at"`
	FinishedAt          *time.Time        `json:"finished_at"`
	Error               string            `json:"error"`
	Runner              string            `json:"runner"`
	HeartbeatAt         *time.Time        `json:"heartbeat_at"`
	RunnerLost          bool              `json:"runner_lost"`
	PhaseTimings        []phaseTimingJSON `json:"phase_timings"`
}

type phaseTimingJSON struct {
	Phase           string     `json:"phase"`
	StartedAt       *time.Time `json:"started_at"`
	DurationSeconds float64    `json:"duration_seconds"`
}

func rebuildToJSON(r *projectionv1.Rebuild) rebuildJSON {
	at := func(ts *timestamppb.Timestamp) *time.Time {
		if ts == nil || !ts.IsValid() {
			return nil
		}
		t := ts.AsTime().UTC()
		return &t
	}
	out := rebuildJSON{ID: r.GetId(), Source: sourceLabel(r.GetSource()), Phase: phaseLabel(r.GetPhase()),
		FromIndex: r.GetFromIndex(), ToIndex: r.GetToIndex(), DocsDone: r.GetDocsDone(), DocsTotal: r.GetDocsTotal(),
		StartedAt: at(r.GetStartedAt()), UpdatedAt: at(r.GetUpdatedAt()), FinishedAt: at(r.GetFinishedAt()), HeartbeatAt: at(r.GetHeartbeatAt()),
		Error: r.GetError(), Runner: r.GetRunner(), RunnerLost: r.GetRunnerLost(), PhaseTimings: []phaseTimingJSON{},
		EventsDone: r.GetEventsDone(), EventsTotal: r.GetEventsTotal(), RatePerSecond: r.GetRatePerSecond(), RateUnit: r.GetRateUnit(),
		EstimatedCompletion: at(r.GetEstimatedCompletion()), Resumes: r.GetResumes()}
	if eta := r.GetEta(); eta != nil {
		sec := eta.AsDuration().Seconds()
		out.ETASeconds = &sec
	}
	for _, pt := range r.GetPhaseTimings() {
		out.PhaseTimings = append(out.PhaseTimings, phaseTimingJSON{Phase: phaseLabel(pt.GetPhase()),
			StartedAt: at(pt.GetStartedAt()), DurationSeconds: pt.GetDuration().AsDuration().Seconds()})
	}
	return out
}

func phaseLabel(p projectionv1.RebuildPhase) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "REBUILD_PHASE_"))
}

func sourceLabel(s projectionv1.RebuildSource) string {
	if s == projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA {
		return "kafka"
	}
	return "database"
}

func formatETA(d time.Duration) string {
	if d < time.Second {
		return "<1s"
	}
	return d.Round(time.Second).String()
}
