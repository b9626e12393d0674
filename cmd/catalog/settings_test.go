package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/marketplace/catalog/service"
)

// runConfig runs `catalog migrate` with env on top of a clean environment (every setting
// unset) against an unreachable database and a cancelled context: a configuration that
// passes fails at once with exit 1 (cannot connect), one that does not with exit 2 before
// anything is touched.
func runConfig(t *testing.T, env map[string]string, args ...string) (code int, stderr string) {
	t.Helper()
	for _, st := range settingsOf(&service.Config{}) {
		t.Setenv(st.env, "")
		if err := os.Unsetenv(st.env); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errb bytes.Buffer
	code = run(ctx, append([]string{"migrate"}, args...), &errb)
	return code, errb.String()
}

func typedSettings(types ...string) []string {
	var out []string
	for _, st := range settingsOf(&service.Config{}) {
		if slices.Contains(types, st.value.Type()) {
			out = append(out, st.env)
		}
	}
	return out
}

// wantConfigError checks exit 2 and a line that names the variable and its raw value.
func wantConfigError(t *testing.T, code int, stderr, name, raw string) {
	t.Helper()
	if code != exitUsage {
		t.Fatalf("%s=%q: exit %d, want %d (stderr %q)", name, raw, code, exitUsage, stderr)
	}
	line := regexp.MustCompile(`(?m)^catalog: configuration: ` + regexp.QuoteMeta(name) + `=` + regexp.QuoteMeta(`"`+raw+`"`) + `: .+$`)
	if !line.MatchString(stderr) {
		t.Fatalf("%s=%q: stderr does not name the variable and its raw value on one line:\n%s", name, raw, stderr)
	}
}

// TestEveryNumberIsParsedStrictly: garbage in any numeric or duration variable stops the
// command with exit 2 and names the variable and the value as written. The list comes from
// the settings table, so a variable added later is covered without touching this test.
func TestEveryNumberIsParsedStrictly(t *testing.T) {
	names := typedSettings("int", "duration", "bool")
	if len(names) < 7 {
		t.Fatalf("only %d numeric settings found: %v", len(names), names)
	}
	for _, name := range names {
		for _, raw := range []string{"abc", "1.5.3", "12 ", "0x10"} {
			t.Run(name+"="+raw, func(t *testing.T) {
				code, stderr := runConfig(t, map[string]string{name: raw})
				wantConfigError(t, code, stderr, name, raw)
			})
		}
	}
}

// outOfRange lists values that parse but are invalid, among them an explicit 0 where 0 is
// not a sensible value: it must be an error, never silently the default.
var outOfRange = map[string][]string{
	"TOPIC_PARTITIONS":             {"0", "-1", "1001"},
	"OUTBOX_LANES":                 {"0", "-3", "65"},
	"RELAY_BATCH_SIZE":             {"0", "100001"},
	"RELAY_POLL_INTERVAL":          {"0", "0s", "-1s", "2m"},
	"OUTBOX_RETENTION":             {"0", "59s", "-1h"},
	"SEARCH_REFRESH_INTERVAL":      {"0", "-1s", "2h"},
	"SHUTDOWN_TIMEOUT":             {"0", "-5s", "500ms", "2h"},
	"PROJECTOR_SESSION_TIMEOUT":    {"0", "-1s", "999ms", "31m"},
	"LOG_LEVEL":                    {"verbose"},
	"LOG_FORMAT":                   {"xml"},
	"ELASTICSEARCH_COMPAT":         {"elastic"},
	"CLOUDEVENTS_SOURCE":           {"not a uri"},
	"HTTP_ADDR":                    {"8080"},
	"GRPC_ADDR":                    {"localhost"},
	"EMBEDDED_KAFKA_ADDR":          {"nowhere"},
	"KAFKA_BROKERS":                {"k1:9092,k2"},
	"SEARCH_ALIAS":                 {"a b"},
	"PRODUCT_EVENTS_TOPIC":         {"a/b"},
	"DLQ_TOPIC":                    {"x*"},
	"PROJECTOR_GROUP":              {"#g"},
	"KAFKA_TLS":                    {"yes", "1", "TRUE"},
	"GRPC_CLIENT_TLS":              {"1", "on"},
	"KAFKA_SASL_MECHANISM":         {"scram-sha-512", "GSSAPI"},
	"ELASTICSEARCH_CA_FINGERPRINT": {"abc", "zz:zz"},
	"METRICS_ADDR":                 {"9100"},
	"CONSOLE_ADDR":                 {"8081"},
	"CONSOLE_SAMPLE_INTERVAL":      {"0", "999ms", "11m"},
	"TOPIC_REPLICATION_FACTOR":     {"-1", "33"},
	"TOPIC_MIN_INSYNC_REPLICAS":    {"-1", "33"},
	"SEARCH_SHARDS":                {"0", "-1", "1025"},
	"SEARCH_REPLICAS":              {"-1", "33", "abc", "Auto", "0x1", " 1"},
	"CATALOG_ROLES":                {"web", "api,api", "api,projector,indexer", ","},
}

func TestOutOfRangeValuesAreRejected(t *testing.T) {
	for _, name := range typedSettings("int", "duration", "bool") {
		if len(outOfRange[name]) == 0 {
			t.Errorf("%s has no out-of-range case in this test", name)
		}
	}
	for name, values := range outOfRange {
		for _, raw := range values {
			t.Run(name+"="+raw, func(t *testing.T) {
				code, stderr := runConfig(t, map[string]string{name: raw})
				wantConfigError(t, code, stderr, name, raw)
			})
		}
	}
}

// TestValidValuesAreAccepted: the edges of every range pass (exit 1 only because the
// database is unreachable), and an empty variable counts as unset.
func TestValidValuesAreAccepted(t *testing.T) {
	code, stderr := runConfig(t, map[string]string{
		"TOPIC_PARTITIONS": "1000", "OUTBOX_LANES": "1", "RELAY_BATCH_SIZE": "100000", "RELAY_POLL_INTERVAL": "1m",
		"OUTBOX_RETENTION": "1m", "SEARCH_REFRESH_INTERVAL": "1ms", "SHUTDOWN_TIMEOUT": "1s", "LOG_LEVEL": "debug", "CONSOLE_SAMPLE_INTERVAL": "1s",
		"LOG_FORMAT": "json", "KAFKA_BROKERS": "k1:9092, k2:9092", "ELASTICSEARCH_COMPAT": "opensearch", "SEARCH_ALIAS": "",
	})
	if code != exitFailure || strings.Contains(stderr, "configuration") {
		t.Fatalf("valid configuration: exit %d, stderr %q; want exit 1 from the unreachable database", code, stderr)
	}
}

// TestEveryBadVariableIsReportedOnItsOwnLine: three mistakes, three lines, one run.
func TestEveryBadVariableIsReportedOnItsOwnLine(t *testing.T) {
	code, stderr := runConfig(t, map[string]string{"OUTBOX_LANES": "abc", "SHUTDOWN_TIMEOUT": "abc", "TOPIC_PARTITIONS": "0"})
	wantConfigError(t, code, stderr, "OUTBOX_LANES", "abc")
	wantConfigError(t, code, stderr, "SHUTDOWN_TIMEOUT", "abc")
	wantConfigError(t, code, stderr, "TOPIC_PARTITIONS", "0")
	if n := strings.Count(stderr, "\n"); n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, stderr)
	}
}

// TestFlagsWinAndAreParsedAsStrictly: a flag overrides a bad variable, and a bad flag is
// a usage error that names the flag and its value.
func TestFlagsWinAndAreParsedAsStrictly(t *testing.T) {
	if code, stderr := runConfig(t, map[string]string{"OUTBOX_LANES": "abc"}, "--outbox-lanes=8"); code != exitFailure {
		t.Errorf("--outbox-lanes=8 over OUTBOX_LANES=abc: exit %d (%s), want 1", code, stderr)
	}
	code, stderr := runConfig(t, nil, "--outbox-lanes=0x10")
	if code != exitUsage || !strings.Contains(stderr, "0x10") || !strings.Contains(stderr, "outbox-lanes") {
		t.Errorf("--outbox-lanes=0x10: exit %d, stderr %q", code, stderr)
	}
	code, stderr = runConfig(t, nil, "--outbox-lanes=0")
	if code != exitUsage || !strings.Contains(stderr, `--outbox-lanes="0"`) {
		t.Errorf("--outbox-lanes=0: exit %d, stderr %q", code, stderr)
	}
}

// TestCredentialsNeverReachTheError: a bad URL is named, its password is not printed.
func TestCredentialsNeverReachTheError(t *testing.T) {
	for name, raw := range map[string]string{
		"DATABASE_URL":      "mysql://app:s3cret@db:3306/catalog",
		"ELASTICSEARCH_URL": "ftp://elastic:s3cret@es:9200",
	} {
		code, stderr := runConfig(t, map[string]string{name: raw})
		if code != exitUsage || !strings.Contains(stderr, name) {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr)
		}
		if strings.Contains(stderr, "s3cret") {
			t.Errorf("%s: the password reached the error: %q", name, stderr)
		}
	}
}

// TestREADMEDocumentsEverySetting keeps the README's configuration table and the settings
// table in step: adding a variable without its doc fails here.
func TestREADMEDocumentsEverySetting(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range settingsOf(&service.Config{}) {
		if !regexp.MustCompile("(?m)^\\| `" + st.env + "`").Match(raw) {
			t.Errorf("README's configuration table has no row for %s", st.env)
		}
	}
}

// TestConsoleAddrDefaultsOnAndEmptyTurnsItOff: unlike every other variable, an empty
// CONSOLE_ADDR is not "unset": it turns the console off, as the README says.
func TestConsoleAddrDefaultsOnAndEmptyTurnsItOff(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"unset":    {map[string]string{}, service.DefaultConsoleAddr},
		"empty":    {map[string]string{"CONSOLE_ADDR": ""}, ""},
		"explicit": {map[string]string{"CONSOLE_ADDR": "127.0.0.1:18555"}, "127.0.0.1:18555"},
	} {
		var cfg service.Config
		s := bindSettings(pflag.NewFlagSet("t", pflag.ContinueOnError), &cfg)
		if err := s.apply(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.ConsoleAddr != tc.want {
			t.Errorf("%s: ConsoleAddr %q, want %q", name, cfg.ConsoleAddr, tc.want)
		}
	}
	code, stderr := runConfig(t, map[string]string{"CONSOLE_ADDR": "8081"})
	wantConfigError(t, code, stderr, "CONSOLE_ADDR", "8081")
	code, stderr = runConfig(t, map[string]string{"CONSOLE_ADDR": "127.0.0.1:18556", "HTTP_ADDR": "127.0.0.1:18556"})
	wantConfigError(t, code, stderr, "CONSOLE_ADDR", "127.0.0.1:18556")
}

// TestReplicationAndRoleSettings: the settings of a scaled-out deployment are checked
// against each other (min.insync.replicas above the replication factor can never be
// acknowledged; the embedded broker and search engine run every role in one process), and
// the valid forms are accepted.
func TestReplicationAndRoleSettings(t *testing.T) {
	cluster := map[string]string{"KAFKA_BROKERS": "k1:9092,k2:9092,k3:9092", "ELASTICSEARCH_URL": "http://es1:9200,http://es2:9200"}
	with := func(extra map[string]string) map[string]string {
		out := maps.Clone(cluster)
		maps.Copy(out, extra)
		return out
	}
	for name, tc := range map[string]struct {
		env      map[string]string
		bad, raw string
	}{
		"min ISR above RF":               {with(map[string]string{"TOPIC_REPLICATION_FACTOR": "2", "TOPIC_MIN_INSYNC_REPLICAS": "3"}), "TOPIC_MIN_INSYNC_REPLICAS", "3"},
		"RF 3 on the embedded broker":    {map[string]string{"TOPIC_REPLICATION_FACTOR": "3"}, "TOPIC_REPLICATION_FACTOR", "3"},
		"roles with the embedded broker": {map[string]string{"CATALOG_ROLES": "api"}, "CATALOG_ROLES", "api"},
		"roles with embedded search":     {map[string]string{"KAFKA_BROKERS": "k1:9092", "CATALOG_ROLES": "relay,projector"}, "CATALOG_ROLES", "relay,projector"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr := runConfig(t, tc.env)
			wantConfigError(t, code, stderr, tc.bad, tc.raw)
		})
	}
	for name, env := range map[string]map[string]string{
		"production replication": with(map[string]string{"TOPIC_REPLICATION_FACTOR": "3", "TOPIC_MIN_INSYNC_REPLICAS": "2", "SEARCH_SHARDS": "1024", "SEARCH_REPLICAS": "32"}),
		"brokers' defaults":      with(map[string]string{"TOPIC_REPLICATION_FACTOR": "0", "TOPIC_MIN_INSYNC_REPLICAS": "0", "SEARCH_REPLICAS": "auto"}),
		"one role":               with(map[string]string{"CATALOG_ROLES": "api"}),
		"roles in any order":     with(map[string]string{"CATALOG_ROLES": "admin, api"}),
		"all roles embedded":     {"CATALOG_ROLES": "projector,api,admin,relay"},
		"no replicas":            {"SEARCH_REPLICAS": "0"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr := runConfig(t, env)
			if code != exitFailure || strings.Contains(stderr, "configuration") {
				t.Fatalf("%v: exit %d, stderr %q; want exit 1 from the unreachable database", env, code, stderr)
			}
		})
	}
	if code, stderr := runConfig(t, cluster, "--roles=relay"); code != exitFailure {
		t.Errorf("--roles=relay: exit %d (%s), want 1", code, stderr)
	}
}
