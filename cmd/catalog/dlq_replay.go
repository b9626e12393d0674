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

func newDLQReplayCmd(cfg *service.Config) *cobra.Command {
	var (
		run   dlqRunFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "replay [<partition>:<offset>...] [--aggregate ID] [--class C] [--since T] [--until T] [--all] [--dry-run]",
		Short: "Republish DLQ messages to PRODUCT_EVENTS_TOPIC, deliberately and audited",
		Long: `Republishes DLQ messages to PRODUCT_EVENTS_TOPIC: the original event, byte for byte, with
its original headers (minus the DLQ ones) and the aggregate id as key. Aggregate versions make
this safe: a replayed event older than the read model's document changes nothing.

Select the messages in exactly one way:
  catalog dlq replay 3:1742 5:88          these messages
  catalog dlq replay --aggregate <id>     every message of one product
  catalog dlq replay --class rejected --since 2h
                                          a filtered set (--class, --aggregate, --since, --until)
  catalog dlq replay --all                everything; never implied by missing filters

Fix the cause first (a mapping, a deploy): a message whose cause is not fixed fails again and
goes back to the DLQ as a new message (see 'catalog dlq list'). --dry-run prints what would be
replayed and changes nothing. Every replayed message gets an audit entry in DATABASE_URL
(table dlq_replays: when, --operator, the message, the result), written before the publish,
so even a failed publish is on record. Messages an earlier replay already published, and
messages resolved with 'catalog dlq resolve', are skipped, so repeating a command is harmless;
--force replays them again. A message whose payload was cut to fit the DLQ is never replayed
(it is not the event any more): resolve it. The first failed publish stops the replay (exit 1).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			refs, f, err := run.selection(cmd, args)
			if err != nil {
				return err
			}
			req := ops.ReplayRequest{Refs: refs, Filter: f, All: run.all, Limit: run.limit, DryRun: run.dryRun, Force: force, Operator: strings.TrimSpace(run.operator)}
			if run.limit < 0 {
				return usageError{fmt.Errorf("--limit must not be negative, got %d", run.limit)}
			}
			// Validate before connecting anywhere: a request without a selector must fail the
			// same way whether or not Kafka is up.
			if err := req.Validate(); err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), run.timeout)
			defer cancel()
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, wiring.DLQTool{Op: "dlq replay", Audit: true, Publisher: true})
			if err != nil {
				return err
			}
			defer closeAll()
			outcomes := []dlqOutcomeJSON{}
			sum, err := svc.Replay(ctx, req, func(o ops.ReplayOutcome) {
				if run.asJSON {
					outcomes = append(outcomes, newDLQOutcomeJSON(o))
					return
				}
				writeDLQOutcome(cmd.OutOrStdout(), o)
			})
			return run.finish(cmd, err, ops.ErrReplayInvalidRequest,
				func() any { return dlqReplayJSON{Summary: newDLQSummaryJSON(sum, req, cfg), Outcomes: outcomes} },
				func(w io.Writer) { writeDLQSummary(w, sum, req, cfg) })
		},
	}
	run.bind(cmd, "replay", "replays", "print what would be replayed; publish nothing, record nothing")
	cmd.Flags().BoolVar(&force, "force", false, "also replay messages an earlier replay already published or an operator resolved")
	return cmd
}

func writeDLQOutcome(w io.Writer, o ops.ReplayOutcome) {
	m := o.Message
	what := fmt.Sprintf("%-8s %-12s %s", m.Ref, orDash(m.Class), orDash(m.AggregateID))
	switch o.Action {
	case ops.ReplayActionReplayed:
		fmt.Fprintf(w, "replayed      %s -> partition %d offset %d (audit #%d)\n", what, o.Target.Partition, o.Target.Offset, o.AuditID)
	case ops.ReplayActionWouldReplay:
		fmt.Fprintf(w, "would replay  %s\n", what)
	case ops.ReplayActionFailed:
		fmt.Fprintf(w, "FAILED        %s: %v (audit #%d)\n", what, o.Err, o.AuditID)
	case ops.ReplayActionSkippedReplayed:
		fmt.Fprintf(w, "skipped       %s: replayed at %s by %s (audit #%d); --force replays it again\n",
			what, o.Previous.ReplayedAt.UTC().Format(timeLayout), o.Previous.Operator, o.Previous.ID)
	case ops.ReplayActionSkippedResolved:
		fmt.Fprintf(w, "skipped       %s: resolved at %s by %s (audit #%d: %s); --force replays it\n",
			what, o.Previous.ReplayedAt.UTC().Format(timeLayout), o.Previous.Operator, o.Previous.ID, shorten(o.Previous.Note, 60))
	case ops.ReplayActionSkippedDuplicate:
		fmt.Fprintf(w, "skipped       %s: same event as %s, replayed in this run\n", what, o.DuplicateOf)
	case ops.ReplayActionSkippedTruncated:
		fmt.Fprintf(w, "skipped       %s: its payload was cut to fit the DLQ (%d of %d bytes kept), so it is not the event; resolve it\n",
			what, len(m.Payload), m.PayloadBytes)
	}
}

func writeDLQSummary(w io.Writer, s ops.ReplaySummary, req ops.ReplayRequest, cfg *service.Config) {
	if s.Selected == 0 {
		fmt.Fprintf(w, "no messages in %s match; nothing replayed\n", cfg.DLQTopic)
		return
	}
	var skipped []string
	if s.SkippedReplayed > 0 {
		skipped = append(skipped, fmt.Sprintf("%d already replayed", s.SkippedReplayed))
	}
	if s.SkippedResolved > 0 {
		skipped = append(skipped, fmt.Sprintf("%d resolved", s.SkippedResolved))
	}
	if s.SkippedDuplicate > 0 {
		skipped = append(skipped, fmt.Sprintf("%d duplicate copies", s.SkippedDuplicate))
	}
	if s.SkippedTruncated > 0 {
		skipped = append(skipped, fmt.Sprintf("%d with a cut payload", s.SkippedTruncated))
	}
	extra := ""
	if len(skipped) > 0 {
		extra = "; skipped " + strings.Join(skipped, ", ")
	}
	if s.LimitReached {
		extra += fmt.Sprintf("; stopped at --limit %d", req.Limit)
	}
	if s.DryRun {
		fmt.Fprintf(w, "dry run: %d of %d selected messages would be replayed to %s%s; nothing was changed\n",
			s.Replayed, s.Selected, cfg.ProductEventsTopic, extra)
		return
	}
	fmt.Fprintf(w, "replayed %d of %d selected messages to %s%s", s.Replayed, s.Selected, cfg.ProductEventsTopic, extra)
	if s.Failed > 0 {
		fmt.Fprintf(w, "; %d FAILED", s.Failed)
	}
	fmt.Fprintf(w, " (run %s, operator %s)\n", s.RunID, req.Operator)
	if s.Replayed > 0 {
		fmt.Fprintln(w, "a message whose cause is not fixed fails again and returns to the DLQ: check 'catalog dlq list'")
	}
}

// dlqOutcomeJSON is the --json shape of one replay outcome.
type dlqOutcomeJSON struct {
	Ref             string `json:"ref"`
	Action          string `json:"action"`
	Class           string `json:"class"`
	AggregateID     string `json:"aggregate_id"`
	EventID         string `json:"event_id"`
	AuditID         int64  `json:"audit_id,omitempty"`
	TargetPartition *int32 `json:"target_partition,omitempty"`
	TargetOffset    *int64 `json:"target_offset,omitempty"`
	Error           string `json:"error,omitempty"`
	PreviousAuditID int64  `json:"previous_audit_id,omitempty"`
	DuplicateOf     string `json:"duplicate_of,omitempty"`
}

func newDLQOutcomeJSON(o ops.ReplayOutcome) dlqOutcomeJSON {
	out := dlqOutcomeJSON{Ref: o.Message.Ref.String(), Action: string(o.Action), Class: o.Message.Class,
		AggregateID: o.Message.AggregateID, EventID: o.Message.EventID, AuditID: o.AuditID}
	switch o.Action {
	case ops.ReplayActionReplayed:
		out.TargetPartition, out.TargetOffset = &o.Target.Partition, &o.Target.Offset
	case ops.ReplayActionFailed:
		out.Error = o.Err.Error()
	case ops.ReplayActionSkippedReplayed, ops.ReplayActionSkippedResolved:
		out.PreviousAuditID = o.Previous.ID
	case ops.ReplayActionSkippedDuplicate:
		out.DuplicateOf = o.DuplicateOf.String()
	}
	return out
}

type dlqSummaryJSON struct {
	RunID            string `json:"run_id"`
	DryRun           bool   `json:"dry_run"`
	Operator         string `json:"operator"`
	DLQTopic         string `json:"dlq_topic"`
	TargetTopic      string `json:"target_topic"`
	Selected         int    `json:"selected"`
	Replayed         int    `json:"replayed"`
	Failed           int    `json:"failed"`
	SkippedReplayed  int    `json:"skipped_already_replayed"`
	SkippedResolved  int    `json:"skipped_resolved"`
	SkippedDuplicate int    `json:"skipped_duplicate"`
	SkippedTruncated int    `json:"skipped_truncated"`
	LimitReached     bool   `json:"limit_reached"`
}

func newDLQSummaryJSON(s ops.ReplaySummary, req ops.ReplayRequest, cfg *service.Config) dlqSummaryJSON {
	return dlqSummaryJSON{RunID: s.RunID, DryRun: s.DryRun, Operator: req.Operator, DLQTopic: cfg.DLQTopic, TargetTopic: cfg.ProductEventsTopic,
		Selected: s.Selected, Replayed: s.Replayed, Failed: s.Failed, SkippedReplayed: s.SkippedReplayed, SkippedResolved: s.SkippedResolved,
		SkippedDuplicate: s.SkippedDuplicate, SkippedTruncated: s.SkippedTruncated, LimitReached: s.LimitReached}
}

type dlqReplayJSON struct {
	Summary  dlqSummaryJSON   `json:"summary"`
	Outcomes []dlqOutcomeJSON `json:"outcomes"`
}
