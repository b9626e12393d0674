package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

func newDLQListCmd(cfg *service.Config) *cobra.Command {
	var (
		filter    dlqFilterFlags
		limit     int
		asJSON    bool
		unhandled bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "list [--class C] [--aggregate ID] [--since T] [--until T] [--unhandled] [--limit N] [--json]",
		Short: "List DLQ messages, oldest failure first; --limit keeps the newest N",
		Long: `Lists the messages of DLQ_TOPIC that match the filters, one line each: reference
(<partition>:<offset>), failure time (UTC), error class, aggregate id and reason. Messages are
ordered by failure time; --limit N (default 100, 0 for all) keeps the newest N, like tail.
A replayed message that failed again is in the DLQ twice: both copies are listed.
--unhandled leaves out the messages replayed successfully or resolved (it reads the audit
log in DATABASE_URL): what 'catalog status' counts as unhandled. Exits 0 also when nothing
matches.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageError{fmt.Errorf("--limit must not be negative, got %d", limit)}
			}
			f, err := filter.filter(time.Now(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, wiring.DLQTool{Op: "dlq list", Audit: unhandled})
			if err != nil {
				return err
			}
			defer closeAll()
			res, err := svc.List(ctx, f, limit, unhandled)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]dlqMessageJSON, len(res.Messages))
				for i, m := range res.Messages {
					out[i] = newDLQMessageJSON(cfg.DLQTopic, m, false)
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if len(res.Messages) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no messages in %s match\n", cfg.DLQTopic)
				return nil
			}
			if err := writeDLQTable(cmd.OutOrStdout(), res.Messages); err != nil {
				return err
			}
			if res.Matched > len(res.Messages) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d matching messages in %s shown (the newest); --limit 0 shows all\n", len(res.Messages), res.Matched, cfg.DLQTopic)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d messages in %s\n", res.Matched, cfg.DLQTopic)
			}
			return nil
		},
	}
	filter.bind(cmd)
	cmd.Flags().IntVar(&limit, "limit", dlqDefaultListLimit, "show the newest N matching messages; 0 shows all")
	cmd.Flags().BoolVar(&unhandled, "unhandled", false, "leave out messages replayed successfully or resolved (reads the audit log in DATABASE_URL)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (headers included, payloads not: see 'dlq show')")
	cmd.Flags().DurationVar(&timeout, "timeout", dlqReadTimeout, "give up after this long")
	return cmd
}

func writeDLQTable(w io.Writer, ms []ops.DLQMessage) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "REF\tFAILED AT (UTC)\tCLASS\tAGGREGATE\tREASON")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Ref, m.FailedAt.UTC().Format(timeLayout),
			orDash(m.Class), orDash(m.AggregateID), orDash(shorten(m.Reason, dlqReasonWidth)))
	}
	return tw.Flush()
}

// dlqMessageJSON is the --json shape of a DLQ message: a stable, snake_case contract.
type dlqMessageJSON struct {
	Ref               string    `json:"ref"`
	Topic             string    `json:"topic"`
	Partition         int32     `json:"partition"`
	Offset            int64     `json:"offset"`
	Timestamp         time.Time `json:"timestamp"`
	FailedAt          time.Time `json:"failed_at"`
	Class             string    `json:"class"`
	Reason            string    `json:"reason"`
	Handler           string    `json:"handler"`
	OriginalTopic     string    `json:"original_topic"`
	OriginalPartition *int32    `json:"original_partition"`
	OriginalOffset    *int64    `json:"original_offset"`
	Attempts          int       `json:"attempts"`
	AggregateID       string    `json:"aggregate_id"`
	AggregateVersion  int64     `json:"aggregate_version"`
	EventID           string    `json:"event_id"`
	EventType         string    `json:"event_type"`
	Key               string    `json:"key"`
	ReplayedFrom      string    `json:"replayed_from,omitempty"`
	// PayloadTruncated is true when the payload was cut to fit the DLQ; PayloadBytes is the
	// original payload's size either way.
	PayloadTruncated bool              `json:"payload_truncated"`
	PayloadBytes     int               `json:"payload_bytes"`
	Headers          map[string]string `json:"headers"`
	// Payload is the value as JSON when it is JSON, as a string otherwise (base64 when it is
	// not UTF-8); PayloadEncoding says which.
	Payload         json.RawMessage `json:"payload,omitempty"`
	PayloadEncoding string          `json:"payload_encoding,omitempty"`
}

func newDLQMessageJSON(topic string, m ops.DLQMessage, withPayload bool) dlqMessageJSON {
	out := dlqMessageJSON{Ref: m.Ref.String(), Topic: topic, Partition: m.Ref.Partition, Offset: m.Ref.Offset,
		Timestamp: m.Timestamp.UTC(), FailedAt: m.FailedAt.UTC(), Class: m.Class, Reason: m.Reason, Handler: m.Handler,
		OriginalTopic: m.OriginalTopic, Attempts: m.Attempts, AggregateID: m.AggregateID, AggregateVersion: m.AggregateVersion,
		EventID: m.EventID, EventType: m.EventType, Key: m.Key, ReplayedFrom: m.ReplayedFrom, PayloadTruncated: m.Truncated,
		PayloadBytes: m.PayloadBytes, Headers: map[string]string{}}
	if m.OriginalPartition >= 0 {
		out.OriginalPartition = &m.OriginalPartition
	}
	if m.OriginalOffset >= 0 {
		out.OriginalOffset = &m.OriginalOffset
	}
	for _, h := range m.Headers {
		out.Headers[h.Key] = h.Value
	}
	if withPayload {
		switch {
		case json.Valid(m.Payload) && len(bytes.TrimSpace(m.Payload)) > 0:
			out.Payload, out.PayloadEncoding = json.RawMessage(m.Payload), "json"
		case utf8.Valid(m.Payload):
			out.Payload, _ = json.Marshal(string(m.Payload))
			out.PayloadEncoding = "text"
		default:
			out.Payload, _ = json.Marshal(m.Payload) // []byte marshals as base64
			out.PayloadEncoding = "base64"
		}
	}
	return out
}

func newDLQShowCmd(cfg *service.Config) *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "show <partition>:<offset> [--json]",
		Short: "Show one DLQ message: why it failed, its headers and its payload",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := ops.ParseDLQRef(args[0])
			if err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, wiring.DLQTool{Op: "dlq show"})
			if err != nil {
				return err
			}
			defer closeAll()
			m, err := svc.Show(ctx, ref)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), newDLQMessageJSON(cfg.DLQTopic, m, true))
			}
			return writeDLQMessage(cmd.OutOrStdout(), cfg.DLQTopic, m)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the payload embedded as JSON when it is JSON)")
	cmd.Flags().DurationVar(&timeout, "timeout", dlqReadTimeout, "give up after this long")
	return cmd
}

func writeDLQMessage(w io.Writer, topic string, m ops.DLQMessage) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Message %s of %s\n", m.Ref, topic)
	tw := newTable(&b)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, escapeBreaks(v)) }
	row("failed at:", m.FailedAt.UTC().Format(time.RFC3339Nano))
	row("class:", orDash(m.Class))
	row("reason:", orDash(m.Reason))
	row("handler:", orDash(m.Handler))
	orig := orDash(m.OriginalTopic)
	if m.OriginalPartition >= 0 && m.OriginalOffset >= 0 {
		orig += fmt.Sprintf(" %d:%d", m.OriginalPartition, m.OriginalOffset)
	}
	row("consumed from:", orig)
	if m.Attempts > 0 {
		row("attempts:", strconv.Itoa(m.Attempts))
	}
	agg := orDash(m.AggregateID)
	if m.AggregateVersion > 0 {
		agg += fmt.Sprintf(" (version %d)", m.AggregateVersion)
	}
	row("aggregate:", agg)
	ev := orDash(m.EventID)
	if m.EventType != "" {
		ev += " (" + m.EventType + ")"
	}
	row("event:", ev)
	row("key:", orDash(m.Key))
	row("written at:", m.Timestamp.UTC().Format(time.RFC3339Nano))
	if m.ReplayedFrom != "" {
		row("replay of:", m.ReplayedFrom+" (a replay that failed again)")
	}
	if m.Truncated {
		row("payload cut:", fmt.Sprintf("%d of %d bytes kept (%s); it cannot be replayed", len(m.Payload), m.PayloadBytes, orDash(m.TruncationReason)))
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "Headers (%d, by name):\n", len(m.Headers))
	tw = newTable(&b)
	headers := slices.Clone(m.Headers)
	slices.SortStableFunc(headers, func(a, b ops.DLQHeader) int { return strings.Compare(a.Key, b.Key) })
	for _, h := range headers {
		fmt.Fprintf(tw, "  %s:\t%s\n", escapeBreaks(h.Key), escapeBreaks(h.Value))
	}
	_ = tw.Flush()
	var pretty bytes.Buffer
	switch {
	case m.Truncated:
		fmt.Fprintf(&b, "Payload (CUT: the first %d of %d bytes):\n%q\n", len(m.Payload), m.PayloadBytes, shorten(string(m.Payload), 2000))
	case len(m.Payload) == 0:
		b.WriteString("Payload: empty\n")
	case json.Indent(&pretty, m.Payload, "", "  ") == nil:
		fmt.Fprintf(&b, "Payload (JSON, %d bytes):\n%s\n", len(m.Payload), pretty.String())
	case utf8.Valid(m.Payload):
		fmt.Fprintf(&b, "Payload (not JSON, %d bytes):\n%s\n", len(m.Payload), m.Payload)
	default:
		fmt.Fprintf(&b, "Payload (binary, %d bytes):\n%q\n", len(m.Payload), m.Payload)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
