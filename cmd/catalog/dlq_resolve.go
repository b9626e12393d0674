package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

func newDLQResolveCmd(cfg *service.Config) *cobra.Command {
	var (
		run    dlqRunFlags
		reason string
	)
	cmd := &cobra.Command{
		Use:   "resolve [<partition>:<offset>...] [--aggregate ID] [--class C] [--since T] [--until T] [--all] --reason TEXT [--dry-run]",
		Short: "Drop DLQ messages that will not be replayed, audited with a reason",
		Long: `Records DLQ messages as resolved: an operator decided they will not be replayed (test data,
an event superseded by a later one, a payload cut to fit the DLQ whose product was repaired by
an update). Nothing is published and the messages stay in DLQ_TOPIC until its retention removes
them, but they count as handled from now on: 'catalog status' and catalog_dlq_unhandled stop
reporting them, and replays skip them (unless --force).

Select the messages as for replay (references, filters, or --all, never implied). --reason is
required and goes to the audit log with --operator; 'catalog dlq audit' shows the entries.
Messages replayed or resolved before are skipped. --dry-run prints what would be resolved and
changes nothing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			refs, f, err := run.selection(cmd, args)
			if err != nil {
				return err
			}
			req := ops.ResolveRequest{Refs: refs, Filter: f, All: run.all, Limit: run.limit, DryRun: run.dryRun, Operator: strings.TrimSpace(run.operator),
				Reason: strings.TrimSpace(reason)}
			if err := req.Validate(); err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), run.timeout)
			defer cancel()
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, wiring.DLQTool{Op: "dlq resolve", Audit: true})
			if err != nil {
				return err
			}
			defer closeAll()
			outcomes := []dlqResolveOutcomeJSON{}
			sum, err := svc.Resolve(ctx, req, func(o ops.ResolveOutcome) {
				if run.asJSON {
					outcomes = append(outcomes, newDLQResolveOutcomeJSON(o))
					return
				}
				writeDLQResolveOutcome(cmd.OutOrStdout(), o)
			})
			return run.finish(cmd, err, ops.ErrResolveInvalidRequest,
				func() any {
					return dlqResolveJSON{Summary: dlqResolveSummaryJSON{RunID: sum.RunID, DryRun: sum.DryRun, Operator: req.Operator, Reason: req.Reason,
						DLQTopic: cfg.DLQTopic, Selected: sum.Selected, Resolved: sum.Resolved, SkippedHandled: sum.SkippedHandled, LimitReached: sum.LimitReached},
						Outcomes: outcomes}
				},
				func(w io.Writer) { writeDLQResolveSummary(w, sum, req, cfg) })
		},
	}
	run.bind(cmd, "resolve", "resolves", "print what would be resolved; record nothing")
	cmd.Flags().StringVar(&reason, "reason", "", "why the messages may be dropped, recorded in the audit log (required)")
	return cmd
}

func writeDLQResolveOutcome(w io.Writer, o ops.ResolveOutcome) {
	m := o.Message
	what := fmt.Sprintf("%-8s %-12s %s", m.Ref, orDash(m.Class), orDash(m.AggregateID))
	switch o.Action {
	case ops.ResolveActionResolved:
		fmt.Fprintf(w, "resolved      %s (audit #%d)\n", what, o.AuditID)
	case ops.ResolveActionWouldResolve:
		fmt.Fprintf(w, "would resolve %s\n", what)
	case ops.ResolveActionSkippedReplayed:
		fmt.Fprintf(w, "skipped       %s: replayed at %s by %s (audit #%d)\n",
			what, o.Previous.ReplayedAt.UTC().Format(timeLayout), o.Previous.Operator, o.Previous.ID)
	case ops.ResolveActionSkippedResolved:
		fmt.Fprintf(w, "skipped       %s: resolved at %s by %s (audit #%d)\n",
			what, o.Previous.ReplayedAt.UTC().Format(timeLayout), o.Previous.Operator, o.Previous.ID)
	}
}

func writeDLQResolveSummary(w io.Writer, s ops.ResolveSummary, req ops.ResolveRequest, cfg *service.Config) {
	if s.Selected == 0 {
		fmt.Fprintf(w, "no messages in %s match; nothing resolved\n", cfg.DLQTopic)
		return
	}
	extra := ""
	if s.SkippedHandled > 0 {
		extra = fmt.Sprintf("; skipped %d handled before", s.SkippedHandled)
	}
	if s.LimitReached {
		extra += fmt.Sprintf("; stopped at --limit %d", req.Limit)
	}
	if s.DryRun {
		fmt.Fprintf(w, "dry run: %d of %d selected messages would be resolved%s; nothing was changed\n", s.Resolved, s.Selected, extra)
		return
	}
	fmt.Fprintf(w, "resolved %d of %d selected messages in %s%s (run %s, operator %s)\n", s.Resolved, s.Selected, cfg.DLQTopic, extra, s.RunID, req.Operator)
}

type dlqResolveOutcomeJSON struct {
	Ref             string `json:"ref"`
	Action          string `json:"action"`
	Class           string `json:"class"`
	AggregateID     string `json:"aggregate_id"`
	EventID         string `json:"event_id"`
	AuditID         int64  `json:"audit_id,omitempty"`
	PreviousAuditID int64  `json:"previous_audit_id,omitempty"`
}

func newDLQResolveOutcomeJSON(o ops.ResolveOutcome) dlqResolveOutcomeJSON {
	out := dlqResolveOutcomeJSON{Ref: o.Message.Ref.String(), Action: string(o.Action), Class: o.Message.Class,
		AggregateID: o.Message.AggregateID, EventID: o.Message.EventID, AuditID: o.AuditID}
	if o.Previous != nil {
		out.PreviousAuditID = o.Previous.ID
	}
	return out
}

type dlqResolveSummaryJSON struct {
	RunID          string `json:"run_id"`
	DryRun         bool   `json:"dry_run"`
	Operator       string `json:"operator"`
	Reason         string `json:"reason"`
	DLQTopic       string `json:"dlq_topic"`
	Selected       int    `json:"selected"`
	Resolved       int    `json:"resolved"`
	SkippedHandled int    `json:"skipped_handled"`
	LimitReached   bool   `json:"limit_reached"`
}

type dlqResolveJSON struct {
	Summary  dlqResolveSummaryJSON   `json:"summary"`
	Outcomes []dlqResolveOutcomeJSON `json:"outcomes"`
}

func newDLQAuditCmd(cfg *service.Config) *cobra.Command {
	var (
		run, aggregate, ref, action string
		limit                       int
		asJSON                      bool
		timeout                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "audit [--ref P:O] [--aggregate ID] [--run ID] [--action replay|resolve] [--limit N] [--json]",
		Short: "Show the DLQ audit log: replays and resolutions, newest first",
		Long: `Reads the audit log of DLQ_TOPIC from DATABASE_URL (table dlq_replays), newest entry first:
every replay ('catalog dlq replay': when, --operator, the message, where it was republished,
the result: ok, error, or pending when the process died before Kafka answered) and every
resolution ('catalog dlq resolve': when, --operator, the message, the reason). It needs no
Kafka.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := ops.AuditFilter{DLQTopic: cfg.DLQTopic, RunID: strings.TrimSpace(run), AggregateID: strings.TrimSpace(aggregate),
				Action: strings.TrimSpace(action), Limit: limit}
			if ref != "" {
				r, err := ops.ParseDLQRef(ref)
				if err != nil {
					return usageError{err}
				}
				f.Ref = &r
			}
			switch {
			case f.Action != "" && f.Action != ops.AuditActionReplay && f.Action != ops.AuditActionResolve:
				return usageError{fmt.Errorf("--action %q: want %s or %s", f.Action, ops.AuditActionReplay, ops.AuditActionResolve)}
			case limit < 0:
				return usageError{fmt.Errorf("--limit must not be negative, got %d", limit)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			audit, closeDB, err := wiring.InitializeDLQAuditLog(ctx, *cfg, wiring.DLQTool{Op: "dlq audit", Audit: true})
			if err != nil {
				return err
			}
			defer closeDB()
			entries, err := ops.ReadAudit(ctx, audit, f)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]dlqAuditJSON, len(entries))
				for i, e := range entries {
					out[i] = newDLQAuditJSON(e)
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if len(entries) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no audit entries of %s match\n", cfg.DLQTopic)
				return nil
			}
			return writeDLQAuditTable(cmd.OutOrStdout(), entries)
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "entries of one message, <partition>:<offset>")
	cmd.Flags().StringVar(&aggregate, "aggregate", "", "entries of one aggregate (product) id")
	cmd.Flags().StringVar(&run, "run", "", "entries of one replay or resolve command (its run id)")
	cmd.Flags().StringVar(&action, "action", "", "replay or resolve")
	cmd.Flags().IntVar(&limit, "limit", ops.DefaultAuditLimit, "show the newest N entries")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", dlqReadTimeout, "give up after this long")
	return cmd
}

func writeDLQAuditTable(w io.Writer, entries []ops.ReplayAuditEntry) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tAT (UTC)\tACTION\tREF\tCLASS\tAGGREGATE\tOPERATOR\tRESULT\tDETAIL")
	for _, e := range entries {
		detail := e.Note
		switch {
		case e.Action == ops.AuditActionResolve:
		case e.Result == ops.ReplayResultOK && e.Target != nil:
			detail = fmt.Sprintf("-> %s partition %d offset %d", e.TargetTopic, e.Target.Partition, e.Target.Offset)
		case e.Result == ops.ReplayResultError:
			detail = e.Error
		case e.Result == ops.ReplayResultPending:
			detail = "not confirmed: the replaying process stopped before Kafka answered"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.ReplayedAt.UTC().Format(timeLayout), e.Action, e.Ref,
			orDash(e.ErrorClass), orDash(e.AggregateID), escapeBreaks(e.Operator), e.Result, orDash(shorten(detail, dlqReasonWidth)))
	}
	return tw.Flush()
}

// dlqAuditJSON is the --json shape of an audit entry: a stable, snake_case contract.
type dlqAuditJSON struct {
	ID              int64      `json:"id"`
	Action          string     `json:"action"`
	RunID           string     `json:"run_id"`
	At              time.Time  `json:"at"`
	FinishedAt      *time.Time `json:"finished_at"`
	Operator        string     `json:"operator"`
	DLQTopic        string     `json:"dlq_topic"`
	Ref             string     `json:"ref"`
	Class           string     `json:"class"`
	AggregateID     string     `json:"aggregate_id"`
	EventID         string     `json:"event_id"`
	Result          string     `json:"result"`
	Reason          string     `json:"reason,omitempty"`
	Error           string     `json:"error,omitempty"`
	TargetTopic     string     `json:"target_topic,omitempty"`
	TargetPartition *int32     `json:"target_partition,omitempty"`
	TargetOffset    *int64     `json:"target_offset,omitempty"`
}

func newDLQAuditJSON(e ops.ReplayAuditEntry) dlqAuditJSON {
	out := dlqAuditJSON{ID: e.ID, Action: e.Action, RunID: e.RunID, At: e.ReplayedAt.UTC(), Operator: e.Operator, DLQTopic: e.DLQTopic,
		Ref: e.Ref.String(), Class: e.ErrorClass, AggregateID: e.AggregateID, EventID: e.EventID, Result: e.Result, Reason: e.Note,
		Error: e.Error, TargetTopic: e.TargetTopic}
	if !e.FinishedAt.IsZero() {
		t := e.FinishedAt.UTC()
		out.FinishedAt = &t
	}
	if e.Target != nil {
		out.TargetPartition, out.TargetOffset = &e.Target.Partition, &e.Target.Offset
	}
	return out
}
