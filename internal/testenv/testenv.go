// Package testenv gives integration tests the addresses of the real servers they need.
//
// Tests read the same environment variables as the service (DATABASE_URL, KAFKA_BROKERS,
// ELASTICSEARCH_URL), so the suite runs unchanged against any server a user points it at.
// A missing server skips the test on a developer laptop but fails it in CI (CI=true), so a
// green CI never hides a server that was not there.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// DefaultDatabaseURL is the server `make deps` starts; tests create their own databases on it.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// InCI reports whether a missing server must fail the test rather than skip it.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// Unavailable skips the test outside CI and fails it in CI.
func Unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is required in CI (CI=true) but unavailable: %v (run `make deps`)", what, err)
	}
	tb.Skipf("%s unavailable (%v); run `make deps` or set the environment, see README", what, err)
}

// DatabaseAdminURL returns the URL of a PostgreSQL server on which tests may create databases.
// TEST_DATABASE_URL wins over DATABASE_URL so that a developer's service database is never touched.
func DatabaseAdminURL(tb testing.TB) string {
	tb.Helper()
	u := firstNonEmpty(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"), DefaultDatabaseURL)
	parsed, err := url.Parse(u)
	if err != nil {
		tb.Fatalf("testenv: bad database url %q: %v", u, err)
	}
	requireTCP(tb, "PostgreSQL", parsed.Host)
	return u
}

// KafkaBrokers returns the brokers of a real Kafka cluster (KAFKA_BROKERS, default the
// `make deps` broker on 127.0.0.1:9094).
func KafkaBrokers(tb testing.TB) []string {
	tb.Helper()
	b := firstNonEmpty(os.Getenv("TEST_KAFKA_BROKERS"), os.Getenv("KAFKA_BROKERS"), "127.0.0.1:9094")
	brokers := strings.Split(b, ",")
	requireTCP(tb, "Kafka", brokers[0])
	return brokers
}

// ElasticsearchURL returns the URL of a real Elasticsearch-API server (ELASTICSEARCH_URL, default
// the `make deps` server on 127.0.0.1:9200) and whether the OpenSearch compatibility is wanted.
func ElasticsearchURL(tb testing.TB) (string, string) {
	tb.Helper()
	u := firstNonEmpty(os.Getenv("TEST_ELASTICSEARCH_URL"), os.Getenv("ELASTICSEARCH_URL"), "http://127.0.0.1:9200")
	parsed, err := url.Parse(u)
	if err != nil {
		tb.Fatalf("testenv: bad elasticsearch url %q: %v", u, err)
	}
	requireTCP(tb, "Elasticsearch-API server", parsed.Host)
	compat, ok := os.LookupEnv("ELASTICSEARCH_COMPAT")
	if !ok {
		compat = "opensearch" // `make deps` runs OpenSearch
	}
	return u, compat
}

// Name returns a name unique to this test run, for topics, aliases and databases.
func Name(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

func requireTCP(tb testing.TB, what, hostport string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		Unavailable(tb, what+" at "+hostport, err)
		return
	}
	_ = conn.Close()
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func getenv(k string) string { return os.Getenv(k) }
