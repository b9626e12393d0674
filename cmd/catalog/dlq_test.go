package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

func TestParseDLQTime(t *testing.T) {
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"2h":                        now.Add(-2 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
		"2025-03-01T10:00:00Z":      time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC),
		"2025-03-01T10:00:00+02:00": time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC),
		"2025-03-01":                time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseDLQTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseDLQTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-2h", "0s", "d", "xd", "2d-3h", "2025-13-01", "1.5d"} {
		if _, err := parseDLQTime(in, now); err == nil {
			t.Errorf("parseDLQTime(%q) accepted", in)
		}
	}
}

func TestDLQTruncate(t *testing.T) {
	if got := shorten("a\nb\t c", 10); got != "a b c" {
		t.Errorf("one line: %q", got)
	}
	if got := shorten(strings.Repeat("é", 100), 10); got != strings.Repeat("é", 9)+"…" {
		t.Errorf("truncated: %q", got)
	}
}

// dlqEnv is a DLQ topic and an events topic on a broker, and a migrated database.
type dlqEnv struct {
	cluster     testkafka.Cluster
	dlqTopic    string
	eventsTopic string
	dbURL       string
	db          *postgres.DB
}

func newDLQEnv(t *testing.T, cluster testkafka.Cluster) *dlqEnv {
	t.Helper()
	e := &dlqEnv{cluster: cluster, dbURL: testenv.NewDatabase(t)}
	e.dlqTopic = testkafka.CreateTopic(t, cluster, "cli_dlq", 3)
	e.eventsTopic = testkafka.CreateTopic(t, cluster, "cli_events", 3)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: e.dbURL, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	e.db = db
	return e
}

// run runs `catalog <config flags> args...` and returns its output and exit code. Until the
// root command has `dlq`, it runs under a root built the same way.
func (e *dlqEnv) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	full := append([]string{"--kafka-brokers", strings.Join(e.cluster.Brokers, ","), "--database-url", e.dbURL,
		"--dlq-topic", e.dlqTopic, "--product-events-topic", e.eventsTopic, "--log-level", "error"}, args...)
	return runCLI(t, full...)
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code = exitOK
	if err != nil {
		errb.WriteString("catalog: " + err.Error() + "\n")
		var ue usageError
		code = exitFailure
		if errors.As(err, &ue) || isFlagError(err) {
			code = exitUsage
		}
	}
	return out.String(), errb.String(), code
}

// deadLetter writes an event to the DLQ as the projector does (Watermill publisher, event
// metadata plus DLQ headers) and returns its event.
func (e *dlqEnv) deadLetter(t *testing.T, sku, class string, failedAt time.Time) product.Event {
	t.Helper()
	now := time.Now()
	d, err := product.NewDetails(sku, "Thing "+sku, "", "cat", "Acme", 5_000_000_000, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	ev := p.PopEvents()[0]
	msg, err := envelope.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		ops.DLQHeaderErrorClass: class, ops.DLQHeaderReason: "projection rejected: mapper_parsing_exception: failed to parse field [price.amount] of type [integer]\nwith a second line",
		ops.DLQHeaderHandler: "product_search_projector", ops.DLQHeaderOriginalTopic: e.eventsTopic, ops.DLQHeaderOriginalPartition: "1",
		ops.DLQHeaderOriginalOffset: "42", ops.DLQHeaderAttempts: "1", ops.DLQHeaderFailedAt: failedAt.UTC().Format(time.RFC3339Nano),
		ops.DLQHeaderReasonPoisoned: "x", ops.DLQHeaderTopicPoisoned: e.eventsTopic,
	} {
		msg.Metadata.Set(k, v)
	}
	pub, err := kafka.NewPublisher(e.cluster.Config(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(e.dlqTopic, msg); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (e *dlqEnv) auditRows(t *testing.T) []string {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT operator || ' ' || aggregate_id || ' ' || result FROM dlq_replays ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestDLQCommands(t *testing.T) {
	e := newDLQEnv(t, testkafka.Embedded(t))
	now := time.Now().UTC()
	a := e.deadLetter(t, "DLQ-A", "rejected", now.Add(-3*time.Hour))
	b := e.deadLetter(t, "DLQ-B", "rejected", now.Add(-time.Hour))
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cluster.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: e.dlqTopic, Partition: 0, Key: []byte("junk"), Value: []byte("not json at all")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// list: a header, one line per message, oldest failure first.
	out, errOut, code := e.run(t, "dlq", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "REF") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(lines[1], a.AggregateID.String()) || !strings.Contains(lines[1], "rejected") ||
		!strings.Contains(lines[1], "projection rejected: mapper_parsing_exception") || strings.Contains(lines[1], "second line") || !strings.Contains(lines[1], "…") {
		t.Errorf("first line %q: want A's message, its reason on one line, truncated", lines[1])
	}
	if !strings.Contains(lines[2], b.AggregateID.String()) || !strings.Contains(lines[3], " -  ") {
		t.Errorf("lines %q / %q: want B's message, then the junk without class or aggregate", lines[2], lines[3])
	}

	// Filters and JSON.
	out, _, code = e.run(t, "dlq", "list", "--class", "rejected", "--since", "2h", "--json")
	var listed []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 {
		t.Fatalf("list --class --since --json: exit %d\n%s", code, out)
	}
	if listed[0]["aggregate_id"] != b.AggregateID.String() || listed[0]["class"] != "rejected" || listed[0]["event_id"] != b.ID.String() ||
		listed[0]["headers"].(map[string]any)["dlq_original_offset"] != "42" || listed[0]["original_offset"] != float64(42) {
		t.Errorf("listed %v", listed[0])
	}
	out, _, code = e.run(t, "dlq", "list", "--aggregate", a.AggregateID.String())
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, a.AggregateID.String()) {
		t.Errorf("list --aggregate: exit %d\n%s", code, out)
	}
	out, errOut, code = e.run(t, "dlq", "list", "--class", "panic")
	if code != 0 || out != "" || !strings.Contains(errOut, "no messages") {
		t.Errorf("empty list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := e.run(t, "dlq", "list", "--class", "rejeted"); code != 0 || !strings.Contains(errOut, `warning: --class "rejeted"`) {
		t.Errorf("a misspelt class: exit %d, stderr %q", code, errOut)
	}
	out, _, code = e.run(t, "dlq", "list", "--limit", "1", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0]["key"] != "junk" {
		t.Errorf("list --limit 1 keeps the newest: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--since", "yesterday"}, {"--limit", "-1"}, {"--since", "1h", "--until", "2h"}} {
		if _, _, code := e.run(t, append([]string{"dlq", "list"}, args...)...); code != exitUsage {
			t.Errorf("list %v: exit %d, want %d", args, code, exitUsage)
		}
	}

	// show: headers, pretty JSON payload; raw text for the junk.
	var refA, refJunk string
	out, _, _ = e.run(t, "dlq", "list", "--json")
	_ = json.Unmarshal([]byte(out), &listed)
	for _, m := range listed {
		switch m["key"] {
		case a.AggregateID.String():
			refA = m["ref"].(string)
		case "junk":
			refJunk = m["ref"].(string)
		}
	}
	out, _, code = e.run(t, "dlq", "show", refA)
	if code != 0 || !strings.Contains(out, "Message "+refA) || !strings.Contains(out, "class:") || !strings.Contains(out, "dlq_error_class:") ||
		!strings.Contains(out, "Payload (JSON") || !strings.Contains(out, "\n  \"aggregate_id\": \""+a.AggregateID.String()+"\"") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	out, _, code = e.run(t, "dlq", "show", refA, "--json")
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["payload_encoding"] != "json" ||
		shown["payload"].(map[string]any)["event_id"] != a.ID.String() {
		t.Errorf("show --json: exit %d\n%s", code, out)
	}
	out, _, code = e.run(t, "dlq", "show", refJunk)
	if code != 0 || !strings.Contains(out, "Payload (not JSON") || !strings.Contains(out, "not json at all") {
		t.Errorf("show junk: exit %d\n%s", code, out)
	}
	if _, errOut, code := e.run(t, "dlq", "show", "0:999999"); code != exitFailure || !strings.Contains(errOut, "no such message") {
		t.Errorf("show of a missing message: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{{"dlq", "show", "nope"}, {"dlq", "show"}, {"dlq", "show", "1:2", "3:4"}} {
		if _, _, code := e.run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}

	// replay: a selector is required, and is never implied.
	for _, args := range [][]string{{}, {"--dry-run"}, {"--limit", "3"}, {"--all", "--class", "rejected"}, {refA, "--aggregate", a.AggregateID.String()}, {"x:y"}} {
		if _, errOut, code := e.run(t, append([]string{"dlq", "replay"}, args...)...); code != exitUsage {
			t.Errorf("replay %v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
	// --dry-run changes nothing.
	out, errOut, code = e.run(t, "dlq", "replay", "--aggregate", a.AggregateID.String(), "--dry-run")
	if code != 0 || !strings.Contains(out, "would replay") || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if rows := e.auditRows(t); len(rows) != 0 {
		t.Fatalf("dry run wrote the audit log: %v", rows)
	}
	if recs := testkafka.ReadUntil(t, e.cluster, e.eventsTopic, time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 }); len(recs) != 0 {
		t.Fatalf("dry run published %d records", len(recs))
	}

	out, errOut, code = e.run(t, "dlq", "replay", "--aggregate", a.AggregateID.String(), "--operator", "alice")
	if code != 0 || !strings.Contains(out, "replayed ") || !strings.Contains(errOut, "replayed 1 of 1") {
		t.Fatalf("replay: exit %d\n%s\n%s", code, out, errOut)
	}
	if rows := e.auditRows(t); len(rows) != 1 || rows[0] != "alice "+a.AggregateID.String()+" ok" {
		t.Fatalf("audit log %v", rows)
	}
	recs := testkafka.ReadUntil(t, e.cluster, e.eventsTopic, 10*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 })
	if len(recs) != 1 || recs[0].Key != a.AggregateID.String() || recs[0].Headers["dlq_error_class"] != "" || recs[0].Headers["event_id"] != a.ID.String() {
		t.Fatalf("events topic %+v", recs)
	}
	// Repeating the command replays nothing; --json reports it.
	out, _, code = e.run(t, "dlq", "replay", "--aggregate", a.AggregateID.String(), "--operator", "bob", "--json")
	var rep struct {
		Summary struct {
			Selected        int    `json:"selected"`
			Replayed        int    `json:"replayed"`
			SkippedReplayed int    `json:"skipped_already_replayed"`
			Operator        string `json:"operator"`
		} `json:"summary"`
		Outcomes []struct {
			Action string `json:"action"`
		} `json:"outcomes"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Summary.SkippedReplayed != 1 || rep.Summary.Replayed != 0 ||
		rep.Summary.Operator != "bob" || len(rep.Outcomes) != 1 || rep.Outcomes[0].Action != "skipped-already-replayed" {
		t.Fatalf("repeated replay: exit %d\n%s", code, out)
	}
	// A reference replays one message; a filter that matches nothing is not an error.
	if out, errOut, code := e.run(t, "dlq", "replay", refJunk); code != 0 || !strings.Contains(out, "replayed ") {
		t.Fatalf("replay %s: exit %d\n%s\n%s", refJunk, code, out, errOut)
	}
	if _, errOut, code := e.run(t, "dlq", "replay", "--class", "panic"); code != 0 || !strings.Contains(errOut, "nothing replayed") {
		t.Fatalf("replay of nothing: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := e.run(t, "dlq", "replay", "0:999999"); code != exitFailure || !strings.Contains(errOut, "no such message") {
		t.Fatalf("replay of a missing message: exit %d\n%s", code, errOut)
	}
	if rows := e.auditRows(t); len(rows) != 2 {
		t.Fatalf("audit log %v, want 2 entries", rows)
	}
}

// TestDLQCommandsUseTheEmbeddedBroker: with KAFKA_BROKERS empty the commands talk to
// EMBEDDED_KAFKA_ADDR, where a running `catalog serve` exposes its broker.
func TestDLQCommandsUseTheEmbeddedBroker(t *testing.T) {
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "cli_embedded_dlq", 1)
	out, errOut, code := runCLI(t, "--kafka-brokers=", "--embedded-kafka-addr", c.Brokers[0], "--dlq-topic", topic, "dlq", "list")
	if code != 0 || out != "" || !strings.Contains(errOut, "no messages in "+topic) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// A misspelt topic is an error, not an empty DLQ.
	_, errOut, code = runCLI(t, "--kafka-brokers=", "--embedded-kafka-addr", c.Brokers[0], "--dlq-topic", "no.such.dlq", "dlq", "list")
	if code != exitFailure || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("missing topic: exit %d\n%s", code, errOut)
	}
}

// TestDLQReplayNeedsTheAuditTable: replay refuses to run against a database without the
// audit table, before publishing anything.
func TestDLQReplayNeedsTheAuditTable(t *testing.T) {
	c := testkafka.Embedded(t)
	e := &dlqEnv{cluster: c, dbURL: testenv.NewDatabase(t)} // not migrated
	e.dlqTopic = testkafka.CreateTopic(t, c, "cli_noaudit_dlq", 1)
	e.eventsTopic = testkafka.CreateTopic(t, c, "cli_noaudit_events", 1)
	e.deadLetter(t, "NOAUDIT-1", "rejected", time.Now())
	_, errOut, code := e.run(t, "dlq", "replay", "--all")
	if code != exitFailure || !strings.Contains(errOut, "catalog migrate") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if recs := testkafka.ReadUntil(t, c, e.eventsTopic, time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 }); len(recs) != 0 {
		t.Fatalf("published %d records without an audit log", len(recs))
	}
}

// TestDLQResolveAndAuditCommands: resolve needs a selector and a reason, changes nothing in a
// dry run, records one entry per message with the reason; audit lists replays and
// resolutions newest first, filtered, as a table or JSON; a replay skips what was resolved.
func TestDLQResolveAndAuditCommands(t *testing.T) {
	e := newDLQEnv(t, testkafka.Embedded(t))
	now := time.Now().UTC()
	a := e.deadLetter(t, "RES-A", "rejected", now.Add(-time.Hour))
	b := e.deadLetter(t, "RES-B", "validation", now)
	refOf := func(agg string) string {
		out, _, _ := e.run(t, "dlq", "list", "--aggregate", agg, "--json")
		var listed []map[string]any
		if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 1 {
			t.Fatalf("list --aggregate %s: %v\n%s", agg, err, out)
		}
		return listed[0]["ref"].(string)
	}
	refA, refB := refOf(a.AggregateID.String()), refOf(b.AggregateID.String())

	for _, args := range [][]string{{refA}, {refA, "--reason", " "}, {"--reason", "r"}, {"--all", refA, "--reason", "r"}, {"x:y", "--reason", "r"}} {
		if _, errOut, code := e.run(t, append([]string{"dlq", "resolve"}, args...)...); code != exitUsage {
			t.Errorf("resolve %v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
	out, errOut, code := e.run(t, "dlq", "resolve", refA, "--reason", "superseded by version 2", "--dry-run")
	if code != 0 || !strings.Contains(out, "would resolve "+refA) || !strings.Contains(errOut, "nothing was changed") || len(e.auditRows(t)) != 0 {
		t.Fatalf("dry run: exit %d\n%s\n%s\naudit %v", code, out, errOut, e.auditRows(t))
	}
	out, errOut, code = e.run(t, "dlq", "resolve", refA, "--reason", "superseded by version 2", "--operator", "carol")
	if code != 0 || !strings.Contains(out, "resolved      "+refA) || !strings.Contains(errOut, "resolved 1 of 1") {
		t.Fatalf("resolve: exit %d\n%s\n%s", code, out, errOut)
	}
	if rows := e.auditRows(t); len(rows) != 1 || rows[0] != "carol "+a.AggregateID.String()+" ok" {
		t.Fatalf("audit rows %v", rows)
	}
	// The unhandled messages are B alone.
	out, _, code = e.run(t, "dlq", "list", "--unhandled", "--json")
	var unhandled []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &unhandled) != nil || len(unhandled) != 1 || unhandled[0]["ref"] != refB {
		t.Fatalf("list --unhandled: exit %d\n%s", code, out)
	}
	// Resolving it again skips it; replaying everything skips it and replays the other.
	out, _, code = e.run(t, "dlq", "resolve", "--aggregate", a.AggregateID.String(), "--reason", "again", "--json")
	var res struct {
		Summary struct {
			Resolved       int    `json:"resolved"`
			SkippedHandled int    `json:"skipped_handled"`
			Reason         string `json:"reason"`
		} `json:"summary"`
		Outcomes []struct {
			Action string `json:"action"`
		} `json:"outcomes"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Summary.Resolved != 0 || res.Summary.SkippedHandled != 1 ||
		res.Summary.Reason != "again" || len(res.Outcomes) != 1 || res.Outcomes[0].Action != "skipped-already-resolved" {
		t.Fatalf("second resolve: exit %d\n%s", code, out)
	}
	out, errOut, code = e.run(t, "dlq", "replay", "--all", "--operator", "dave")
	if code != 0 || !strings.Contains(out, "skipped       "+refA) || !strings.Contains(out, "resolved at") || !strings.Contains(errOut, "replayed 1 of 2") ||
		!strings.Contains(errOut, "1 resolved") {
		t.Fatalf("replay --all: exit %d\n%s\n%s", code, out, errOut)
	}

	if _, errOut, code := e.run(t, "dlq", "list", "--unhandled"); code != 0 || !strings.Contains(errOut, "no messages") {
		t.Fatalf("list --unhandled once everything is handled: exit %d\n%s", code, errOut)
	}

	// audit: newest first, one line per entry, with the reason or the target.
	out, _, code = e.run(t, "dlq", "audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "replay") || !strings.Contains(lines[1], refB) ||
		!strings.Contains(lines[1], "dave") || !strings.Contains(lines[1], "-> "+e.eventsTopic) || !strings.Contains(lines[2], "resolve") ||
		!strings.Contains(lines[2], "superseded by version 2") || !strings.Contains(lines[2], "carol") {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
	out, _, code = e.run(t, "dlq", "audit", "--action", "resolve", "--json")
	var entries []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 1 || entries[0]["reason"] != "superseded by version 2" ||
		entries[0]["ref"] != refA || entries[0]["action"] != "resolve" || entries[0]["result"] != "ok" || entries[0]["operator"] != "carol" {
		t.Fatalf("audit --action resolve --json: exit %d\n%s", code, out)
	}
	out, _, code = e.run(t, "dlq", "audit", "--ref", refB, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 1 || entries[0]["target_topic"] != e.eventsTopic {
		t.Fatalf("audit --ref: exit %d\n%s", code, out)
	}
	if _, errOut, code := e.run(t, "dlq", "audit", "--aggregate", "nobody"); code != 0 || !strings.Contains(errOut, "no audit entries") {
		t.Fatalf("audit of nothing: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{{"--action", "delete"}, {"--limit", "-1"}, {"--ref", "nope"}, {"extra"}} {
		if _, _, code := e.run(t, append([]string{"dlq", "audit"}, args...)...); code != exitUsage {
			t.Errorf("audit %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	// The audit log needs the migrated table.
	unmigrated := &dlqEnv{cluster: e.cluster, dlqTopic: e.dlqTopic, eventsTopic: e.eventsTopic, dbURL: testenv.NewDatabase(t)}
	if _, errOut, code := unmigrated.run(t, "dlq", "audit"); code != exitFailure || !strings.Contains(errOut, "catalog migrate") {
		t.Fatalf("audit without the table: exit %d\n%s", code, errOut)
	}
}
