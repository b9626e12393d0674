package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testkafka"
)

// logCapture collects JSON log records from every goroutine of a test.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records whose level is one of levels, as "LEVEL msg err" lines.
func (c *logCapture) records(t *testing.T, levels ...string) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(c.buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		for _, l := range levels {
			if r["level"] == l {
				out = append(out, fmt.Sprintf("%s %s %v", r["level"], r["msg"], r["err"]))
			}
		}
	}
	return out
}

// TestSessionEndLoggerDowngradesOnlyEndedSessions: the rollback failures watermill-sql logs
// after a cancelled poll or a terminated session go to DEBUG; any other error stays ERROR.
func TestSessionEndLoggerDowngradesOnlyEndedSessions(t *testing.T) {
	var logs logCapture
	wl := postgres.SessionEndLogger(watermill.NewSlogLogger(logs.logger())).With(watermill.LogFields{"topic": "lane_1"})
	terminated := &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}
	wl.Error("could not rollback tx for querying message", fmt.Errorf("timeout: context already done: %w", context.Canceled),
		watermill.LogFields{"query_err": fmt.Errorf("could not query message: %w", context.Canceled)})
	wl.Error("could not rollback tx for querying message", fmt.Errorf("failed to deallocate cached statement(s): %w", pgconn.ErrConnClosed),
		watermill.LogFields{"query_err": fmt.Errorf("could not query message: %w", terminated)})
	wl.Error("could not commit tx for querying message", errors.New("disk full"), nil)
	got := logs.records(t, "DEBUG", "ERROR")
	if len(got) != 3 || !strings.HasPrefix(got[0], "DEBUG could not rollback") || !strings.HasPrefix(got[1], "DEBUG could not rollback") ||
		!strings.HasPrefix(got[2], "ERROR could not commit") {
		t.Errorf("records:\n%s", strings.Join(got, "\n"))
	}
}

// TestRelayLogsNoErrorOnShutdownOrTerminatedSessions: while the relay forwards a backlog,
// its database sessions are terminated (pg_terminate_backend, as a failover or an operator
// does) and then it is stopped (as by SIGTERM), several times. Neither is a fault: nothing
// is logged at ERROR, a terminated session is a WARN, and every event still arrives.
func TestRelayLogsNoErrorOnShutdownOrTerminatedSessions(t *testing.T) {
	db, _ := migratedDB(t)
	c := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, c, "quiet", 4)
	pub := relayPublisher(t, c)
	const lanes = 16
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	committed := map[string]bool{}
	n := 0
	load := func(products int) {
		for range products {
			n++
			now := time.Now()
			p, err := product.New(product.NewID(now), details(t, fmt.Sprintf("Q-%d", n), 100), now)
			if err != nil {
				t.Fatal(err)
			}
			stored, _, err := repo.Add(context.Background(), p, nil)
			if err != nil {
				t.Fatal(err)
			}
			committed[fmt.Sprintf("%s@1", stored.ID())] = true
		}
	}
	var logs logCapture
	for round := range 3 {
		load(50)
		relay, err := postgres.NewRelay(db, pub, postgres.RelayConfig{Lanes: lanes, BatchSize: 20}, logs.logger())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()
		// Every lane subscribed and drained: from here on the relay only polls.
		deadline := time.Now().Add(30 * time.Second)
		for lanePositions(t, db) < lanes || unacked(t, db) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the relay did not drain the backlog", round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		load(150) // the relay forwards these as they commit
		if _, err := db.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(1200+100*round) * time.Millisecond) // past the retry interval: the lanes poll again
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: relay stopped with %v", round, err)
		}
	}
	if errs := logs.records(t, "ERROR"); len(errs) > 0 {
		t.Errorf("%d ERROR records for a clean stop and terminated sessions, e.g.:\n%s", len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
	}
	warned := 0
	for _, r := range logs.records(t, "WARN") {
		if strings.Contains(r, "database session ended") {
			warned++
		}
	}
	if warned == 0 {
		t.Errorf("no terminated session was seen, so the test proved nothing; WARN records: %v", logs.records(t, "WARN"))
	}
	relay, err := postgres.NewRelay(db, pub, postgres.RelayConfig{Lanes: lanes}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	awaitEvents(t, c, topic, committed, 60*time.Second)
	cancel()
	<-done
}

// lanePositions counts the lanes that have a relay position (their subscriber has started).
func lanePositions(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_offsets WHERE consumer_group = 'catalog-relay'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
