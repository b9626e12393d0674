package main

import (
	"context"
	"fmt"
	"io"
	"strings"

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
