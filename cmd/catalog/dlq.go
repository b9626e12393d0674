package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// The DLQ commands talk to Kafka and PostgreSQL directly, not to a service process; wiring
// builds what they need (wiring.InitializeDLQ, wiring.InitializeDLQAuditLog).

const (
	dlqDefaultListLimit = 100
	dlqReasonWidth      = 80
	dlqReadTimeout      = 2 * time.Minute
	dlqReplayTimeout    = 30 * time.Minute
)

func newDLQCmd(cfg *service.Config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, deliberately replay or resolve the dead-letter queue (DLQ_TOPIC)",
		Long: `The projector sends an event it can never apply (undecodable, unsupported schema, invalid,
rejected by the index mapping, a panic) to DLQ_TOPIC with headers saying why, and moves on;
the message keeps its original key (the product id). A payload too large for the topic is
cut to fit, with headers saying so (dlq_payload_truncated, dlq_payload_bytes,
dlq_payload_cut_bytes, dlq_truncation_reason). Nothing in the DLQ is ever replayed
automatically:

  catalog dlq list     what is in the DLQ (filter by class, aggregate, time)
  catalog dlq show     one message with its headers and payload
  catalog dlq replay   put messages back on PRODUCT_EVENTS_TOPIC once their cause is fixed
  catalog dlq resolve  drop messages that will not be replayed, with a reason
  catalog dlq audit    who replayed or resolved what, when, why and with which result

A message replayed successfully or resolved is handled; 'catalog status' and the gauge
catalog_dlq_unhandled report the others. Messages stay in DLQ_TOPIC until its retention
removes them. Messages are named <partition>:<offset> of DLQ_TOPIC. The commands read Kafka
directly (KAFKA_BROKERS, or the embedded broker of a running 'catalog serve' on
EMBEDDED_KAFKA_ADDR); replay and resolve record an audit entry per message in DATABASE_URL
(table dlq_replays), which audit reads.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDLQListCmd(cfg), newDLQShowCmd(cfg), newDLQReplayCmd(cfg), newDLQResolveCmd(cfg), newDLQAuditCmd(cfg))
	return cmd
}

// dlqFilterFlags are the filters list and replay share.
type dlqFilterFlags struct {
	classes   []string
	aggregate string
	since     string
	until     string
}

func (f *dlqFilterFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.classes, "class", nil, "error class: undecodable, unsupported, validation, rejected, panic (repeatable, comma-separated)")
	cmd.Flags().StringVar(&f.aggregate, "aggregate", "", "aggregate (product) id")
	cmd.Flags().StringVar(&f.since, "since", "", "failed at or after: RFC 3339 time, or a duration ago (90m, 2h, 7d)")
	cmd.Flags().StringVar(&f.until, "until", "", "failed before: RFC 3339 time, or a duration ago")
}

// dlqKnownClasses are the classes this build's projector dead-letters with.
var dlqKnownClasses = ops.DeadLetterClasses()

// filter builds the filter; a class this build does not know is warned about on warn (a
// typo would silently select nothing) but allowed, since older or newer builds may differ.
func (f *dlqFilterFlags) filter(now time.Time, warn io.Writer) (ops.DLQFilter, error) {
	out := ops.DLQFilter{AggregateID: strings.TrimSpace(f.aggregate)}
	for _, c := range f.classes {
		if c = strings.TrimSpace(c); c != "" {
			out.Classes = append(out.Classes, c)
			if !slices.ContainsFunc(dlqKnownClasses, func(k ops.FailureClass) bool { return strings.EqualFold(string(k), c) }) {
				fmt.Fprintf(warn, "warning: --class %q is not a class this build dead-letters with (%v)\n", c, dlqKnownClasses)
			}
		}
	}
	var err error
	if out.Since, err = parseDLQTime(f.since, now); err != nil {
		return ops.DLQFilter{}, usageError{fmt.Errorf("--since: %w", err)}
	}
	if out.Until, err = parseDLQTime(f.until, now); err != nil {
		return ops.DLQFilter{}, usageError{fmt.Errorf("--until: %w", err)}
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Until.After(out.Since) {
		return ops.DLQFilter{}, usageError{fmt.Errorf("--until (%s) must be after --since (%s)", out.Until.Format(time.RFC3339), out.Since.Format(time.RFC3339))}
	}
	return out, nil
}

// parseDLQTime reads an RFC 3339 time, a date (UTC midnight), or a duration ago ("2h",
// "90m", "7d", "1d12h"); "" is the zero time.
func parseDLQTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	d, err := parseDLQDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2025-03-01T12:00:00Z) nor a duration (2h, 7d)", s)
	}
	return now.Add(-d).UTC(), nil
}

// parseDLQDuration is time.ParseDuration plus a leading whole number of days ("7d", "1d12h").
func parseDLQDuration(s string) (time.Duration, error) {
	var days int64
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil {
			return 0, err
		}
		days, s = n, s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	}
	d := time.Duration(days)*24*time.Hour + rest
	if d <= 0 || days < 0 || rest < 0 {
		return 0, errors.New("the duration must be positive")
	}
	return d, nil
}

// openDLQ connects what a DLQ command needs, through wiring, and returns the DLQ use cases
// over it and the function that releases it all.
func openDLQ(ctx context.Context, cfg *service.Config, cmd *cobra.Command, tool wiring.DLQTool) (*ops.DLQService, func(), error) {
	return wiring.InitializeDLQ(ctx, *cfg, service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel), tool)
}

// dlqRunFlags are the flags replay and resolve share: which messages (references as
// arguments, the filters, or --all), how many, a dry run, who, the output and the timeout.
type dlqRunFlags struct {
	filter   dlqFilterFlags
	all      bool
	limit    int
	dryRun   bool
	operator string
	asJSON   bool
	timeout  time.Duration
}

// bind defines the flags on cmd; verb ("replay") and its third person ("replays") word their
// help, dryRun says what a dry run does.
func (f *dlqRunFlags) bind(cmd *cobra.Command, verb, verbs, dryRun string) {
	f.filter.bind(cmd)
	cmd.Flags().BoolVar(&f.all, "all", false, verb+" every message of the DLQ (must be explicit)")
	cmd.Flags().IntVar(&f.limit, "limit", 0, verb+" at most N messages (0: no limit)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, dryRun)
	cmd.Flags().StringVar(&f.operator, "operator", dlqDefaultOperator(), "who "+verbs+", recorded in the audit log")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the outcomes and the summary as JSON")
	cmd.Flags().DurationVar(&f.timeout, "timeout", dlqReplayTimeout, "give up after this long")
}

// selection reads the message references in args and the filter flags; a malformed one is a
// usage error.
func (f *dlqRunFlags) selection(cmd *cobra.Command, args []string) ([]ops.DLQRef, ops.DLQFilter, error) {
	var refs []ops.DLQRef
	for _, a := range args {
		ref, err := ops.ParseDLQRef(a)
		if err != nil {
			return nil, ops.DLQFilter{}, usageError{err}
		}
		refs = append(refs, ref)
	}
	filter, err := f.filter.filter(time.Now(), cmd.ErrOrStderr())
	if err != nil {
		return nil, ops.DLQFilter{}, err
	}
	return refs, filter, nil
}

// finish ends a run whose use case returned err: it prints the --json document doc() on
// stdout, or the summary on stderr, and turns a request the use case refused (invalid, or a
// malformed reference) into a usage error.
func (f *dlqRunFlags) finish(cmd *cobra.Command, err, invalid error, doc func() any, summary func(io.Writer)) error {
	if f.asJSON {
		if jerr := writeJSON(cmd.OutOrStdout(), doc()); jerr != nil && err == nil {
			err = jerr
		}
	} else {
		summary(cmd.ErrOrStderr())
	}
	if errors.Is(err, invalid) || errors.Is(err, ops.ErrDLQInvalidRef) {
		return usageError{err}
	}
	return err
}

// dlqDefaultOperator is $USER, else $LOGNAME, else "unknown".
func dlqDefaultOperator() string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "unknown"
}
