package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// The DLQ commands talk to Kafka and PostgreSQL directly, not to a service process: the DLQ
// is an ordinary topic any client can read, and the audit log is a table. With KAFKA_BROKERS
// empty they use EMBEDDED_KAFKA_ADDR, where a running `catalog serve` exposes its embedded
// broker.

const (
	dlqDefaultListLimit  = 100
	dlqReasonWidth       = 80
	dlqReadTimeout       = 2 * time.Minute
	dlqReplayTimeout     = 30 * time.Minute
	dlqConnectTimeout    = 10 * time.Second
	dlqDatabaseMaxConns  = 2
	dlqTimeLayoutDisplay = "2006-01-02 15:04:05"
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

// dlqKafka is the Kafka the DLQ commands talk to: KAFKA_BROKERS with its TLS and SASL
// settings, or the embedded broker of a running `catalog serve` on EMBEDDED_KAFKA_ADDR.
func dlqKafka(cfg *service.Config) (kafka.Config, error) {
	brokers := cfg.KafkaBrokers
	if len(brokers) == 0 {
		brokers = []string{cfg.EmbeddedKafkaAddr}
	}
	kc, err := wiring.KafkaClientConfig(*cfg, brokers)
	if err != nil {
		return kafka.Config{}, fmt.Errorf("dlq: %w", err)
	}
	return kc, nil
}

// dlqReader connects to Kafka and returns the DLQ reader, failing fast with a hint when the
// brokers cannot be reached or refuse the credentials.
func dlqReader(ctx context.Context, cfg *service.Config, log *slog.Logger) (*kafka.DLQReader, error) {
	kc, err := dlqKafka(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, dlqConnectTimeout)
	defer cancel()
	if err := kafka.Ping(pctx, kc); err != nil {
		if len(cfg.KafkaBrokers) == 0 {
			return nil, fmt.Errorf("dlq: cannot reach Kafka at %s (KAFKA_BROKERS is empty, so this is EMBEDDED_KAFKA_ADDR: is 'catalog serve' running?): %w",
				strings.Join(kc.Brokers, ","), err)
		}
		return nil, fmt.Errorf("dlq: Kafka at %s (KAFKA_BROKERS): %w", strings.Join(kc.Brokers, ","), err)
	}
	r, err := kafka.NewDLQReader(kc, cfg.DLQTopic, log)
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	return r, nil
}

func dlqLogger(cfg *service.Config, cmd *cobra.Command) *slog.Logger {
	return service.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
}

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
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, "dlq list", dlqNeeds{audit: unhandled})
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
				return writeDLQJSON(cmd.OutOrStdout(), out)
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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tFAILED AT (UTC)\tCLASS\tAGGREGATE\tREASON")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Ref, m.FailedAt.UTC().Format(dlqTimeLayoutDisplay),
			dlqOrDash(m.Class), dlqOrDash(m.AggregateID), dlqOrDash(dlqTruncate(m.Reason, dlqReasonWidth)))
	}
	return tw.Flush()
}

// dlqTruncate makes s one line of at most n runes.
func dlqTruncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// dlqOneLine escapes line breaks and tabs, so a value cannot break the aligned columns.
func dlqOneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(s)
}

func dlqOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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

func writeDLQJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
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
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, "dlq show", dlqNeeds{})
			if err != nil {
				return err
			}
			defer closeAll()
			m, err := svc.Show(ctx, ref)
			if err != nil {
				return err
			}
			if asJSON {
				return writeDLQJSON(cmd.OutOrStdout(), newDLQMessageJSON(cfg.DLQTopic, m, true))
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
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, dlqOneLine(v)) }
	row("failed at:", m.FailedAt.UTC().Format(time.RFC3339Nano))
	row("class:", dlqOrDash(m.Class))
	row("reason:", dlqOrDash(m.Reason))
	row("handler:", dlqOrDash(m.Handler))
	orig := dlqOrDash(m.OriginalTopic)
	if m.OriginalPartition >= 0 && m.OriginalOffset >= 0 {
		orig += fmt.Sprintf(" %d:%d", m.OriginalPartition, m.OriginalOffset)
	}
	row("consumed from:", orig)
	if m.Attempts > 0 {
		row("attempts:", strconv.Itoa(m.Attempts))
	}
	agg := dlqOrDash(m.AggregateID)
	if m.AggregateVersion > 0 {
		agg += fmt.Sprintf(" (version %d)", m.AggregateVersion)
	}
	row("aggregate:", agg)
	ev := dlqOrDash(m.EventID)
	if m.EventType != "" {
		ev += " (" + m.EventType + ")"
	}
	row("event:", ev)
	row("key:", dlqOrDash(m.Key))
	row("written at:", m.Timestamp.UTC().Format(time.RFC3339Nano))
	if m.ReplayedFrom != "" {
		row("replay of:", m.ReplayedFrom+" (a replay that failed again)")
	}
	if m.Truncated {
		row("payload cut:", fmt.Sprintf("%d of %d bytes kept (%s); it cannot be replayed", len(m.Payload), m.PayloadBytes, dlqOrDash(m.TruncationReason)))
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "Headers (%d, by name):\n", len(m.Headers))
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	headers := slices.Clone(m.Headers)
	slices.SortStableFunc(headers, func(a, b ops.DLQHeader) int { return strings.Compare(a.Key, b.Key) })
	for _, h := range headers {
		fmt.Fprintf(tw, "  %s:\t%s\n", dlqOneLine(h.Key), dlqOneLine(h.Value))
	}
	_ = tw.Flush()
	var pretty bytes.Buffer
	switch {
	case m.Truncated:
		fmt.Fprintf(&b, "Payload (CUT: the first %d of %d bytes):\n%q\n", len(m.Payload), m.PayloadBytes, dlqTruncate(string(m.Payload), 2000))
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

func newDLQReplayCmd(cfg *service.Config) *cobra.Command {
	var (
		filter   dlqFilterFlags
		all      bool
		limit    int
		dryRun   bool
		force    bool
		operator string
		asJSON   bool
		timeout  time.Duration
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
			req := ops.ReplayRequest{All: all, Limit: limit, DryRun: dryRun, Force: force, Operator: strings.TrimSpace(operator)}
			for _, a := range args {
				ref, err := ops.ParseDLQRef(a)
				if err != nil {
					return usageError{err}
				}
				req.Refs = append(req.Refs, ref)
			}
			f, err := filter.filter(time.Now(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			req.Filter = f
			if limit < 0 {
				return usageError{fmt.Errorf("--limit must not be negative, got %d", limit)}
			}
			// Validate before connecting anywhere: a request without a selector must fail the
			// same way whether or not Kafka is up.
			if err := req.Validate(); err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			svc, closeAll, err := openDLQ(ctx, cfg, cmd, "dlq replay", dlqNeeds{audit: true, publisher: true})
			if err != nil {
				return err
			}
			defer closeAll()
			outcomes := []dlqOutcomeJSON{}
			sum, err := svc.Replay(ctx, req, func(o ops.ReplayOutcome) {
				if asJSON {
					outcomes = append(outcomes, newDLQOutcomeJSON(o))
					return
				}
				writeDLQOutcome(cmd.OutOrStdout(), o)
			})
			if asJSON {
				if jerr := writeDLQJSON(cmd.OutOrStdout(), dlqReplayJSON{Summary: newDLQSummaryJSON(sum, req, cfg), Outcomes: outcomes}); jerr != nil && err == nil {
					err = jerr
				}
			} else {
				writeDLQSummary(cmd.ErrOrStderr(), sum, req, cfg)
			}
			if errors.Is(err, ops.ErrReplayInvalidRequest) || errors.Is(err, ops.ErrDLQInvalidRef) {
				return usageError{err}
			}
			return err
		},
	}
	filter.bind(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "replay every message of the DLQ (must be explicit)")
	cmd.Flags().IntVar(&limit, "limit", 0, "replay at most N messages (0: no limit)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be replayed; publish nothing, record nothing")
	cmd.Flags().BoolVar(&force, "force", false, "also replay messages an earlier replay already published or an operator resolved")
	cmd.Flags().StringVar(&operator, "operator", dlqDefaultOperator(), "who replays, recorded in the audit log")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the outcomes and the summary as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", dlqReplayTimeout, "give up after this long")
	return cmd
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

// dlqNeeds says what a DLQ command needs beside the reader of DLQ_TOPIC.
type dlqNeeds struct {
	// audit opens the audit log in DATABASE_URL.
	audit bool
	// publisher connects the replay publisher to PRODUCT_EVENTS_TOPIC.
	publisher bool
}

// openDLQ connects what a DLQ command needs and returns the DLQ use cases over it, and the
// function that releases it all; op ("dlq replay") prefixes the errors.
func openDLQ(ctx context.Context, cfg *service.Config, cmd *cobra.Command, op string, needs dlqNeeds) (*ops.DLQService, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	reader, err := dlqReader(ctx, cfg, dlqLogger(cfg, cmd))
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, reader.Close)
	var pub ops.ReplayPublisher
	if needs.publisher {
		kc, err := dlqKafka(cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		p, err := kafka.NewReplayPublisher(kc, cfg.ProductEventsTopic)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
		closers = append(closers, p.Close)
		pub = p
	}
	var audit ops.ReplayAudit
	if needs.audit {
		a, closeDB, err := dlqAudit(ctx, cfg, op)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, closeDB)
		audit = a
	}
	svc, err := ops.NewDLQService(reader, pub, audit, decorator.Deps{})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return svc, closeAll, nil
}

// dlqAudit opens DATABASE_URL and checks that the audit table exists with its resolution
// columns; op ("dlq replay") prefixes the errors.
func dlqAudit(ctx context.Context, cfg *service.Config, op string) (*postgres.DLQAudit, func(), error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: dlqDatabaseMaxConns, ConnectTimeout: dlqConnectTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: audit log: %w", op, err)
	}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
  WHERE table_schema = current_schema() AND table_name = 'dlq_replays' AND column_name = 'action')`).Scan(&exists); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%s: audit log: %w", op, err)
	}
	if !exists {
		db.Close()
		return nil, nil, fmt.Errorf("%s: audit log: the database has no table dlq_replays with resolutions; run 'catalog migrate'", op)
	}
	audit, err := postgres.NewDLQAudit(db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return audit, db.Close, nil
}

func writeDLQOutcome(w io.Writer, o ops.ReplayOutcome) {
	m := o.Message
	what := fmt.Sprintf("%-8s %-12s %s", m.Ref, dlqOrDash(m.Class), dlqOrDash(m.AggregateID))
	switch o.Action {
	case ops.ReplayActionReplayed:
		fmt.Fprintf(w, "replayed      %s -> partition %d offset %d (audit #%d)\n", what, o.Target.Partition, o.Target.Offset, o.AuditID)
	case ops.ReplayActionWouldReplay:
		fmt.Fprintf(w, "would replay  %s\n", what)
	case ops.ReplayActionFailed:
		fmt.Fprintf(w, "FAILED        %s: %v (audit #%d)\n", what, o.Err, o.AuditID)
	case ops.ReplayActionSkippedReplayed:
		fmt.Fprintf(w, "skipped       %s: replayed at %s by %s (audit #%d); --force replays it again\n",
			what, o.Previous.ReplayedAt.UTC().Format(dlqTimeLayoutDisplay), o.Previous.Operator, o.Previous.ID)
	case ops.ReplayActionSkippedResolved:
		fmt.Fprintf(w, "skipped       %s: resolved at %s by %s (audit #%d: %s); --force replays it\n",
			what, o.Previous.ReplayedAt.UTC().Format(dlqTimeLayoutDisplay), o.Previous.Operator, o.Previous.ID, dlqTruncate(o.Previous.Note, 60))
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
