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
