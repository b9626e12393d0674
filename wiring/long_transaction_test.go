package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
)

// TestStatusFlagsATransactionHoldingTheRelayBackWithinTheOutboxLimit: a transaction that has
// written, open in the catalog's database (another client of it: a migration, a script),
// holds the relay back. `status` names it (pid, database, user, start, last statement; never
// its SQL) as soon as it is older than the outbox age limit, not after the long-transaction
// limit, /metrics exports its age, and the event it held back is relayed once it ends. The
// time from the transaction's start to the first status that flags it is measured. (A
// transaction in another database of the server does not hold the relay back:
// adapters/postgres tests that.)
func TestStatusFlagsATransactionHoldingTheRelayBackWithinTheOutboxLimit(t *testing.T) {
	const limit = 3 * time.Second
	c := startServe(t)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	var (
		pid    int32
		heldDB string
		begun  time.Time
	)
	if _, err := other.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if err := other.QueryRow(ctx, `SELECT pg_backend_pid(), current_database(), now()`).Scan(&pid, &heldDB, &begun); err != nil {
		t.Fatal(err)
	}
	// The statement carries a secret: status must never print it.
	if _, err := other.Exec(ctx, `CREATE TABLE held (note text); INSERT INTO held VALUES ('s3cret-token-8e1f')`); err != nil {
		t.Fatal(err)
	}
	created := c.do(t, "POST", "/v1/products", validBody)
	if created.status != 201 {
		t.Fatalf("create: %d %v", created.status, created.body)
	}

	client := opsClient(t, c.cfg.GRPCAddr)
	req := &operationsv1.GetStatusRequest{MaxOutboxAge: durationpb.New(limit)}
	var flagged *operationsv1.GetStatusResponse
	var flaggedAt time.Time
	deadline := time.Now().Add(limit + 30*time.Second)
	for flagged == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := client.GetStatus(rctx, req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.GetProblems() {
			if p.GetCheck() == "relay_held_back" && strings.Contains(p.GetMessage(), fmt.Sprintf("pid %d ", pid)) {
				flagged, flaggedAt = st, time.Now()
			}
		}
		if time.Now().After(deadline) {
			raw, _ := json.MarshalIndent(st, "", "  ")
			t.Fatalf("not flagged within %s of its start:\n%s", time.Since(begun), raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	toFlag := flaggedAt.Sub(begun)
	t.Logf("transaction in database %s (pid %d) flagged %s after it began (outbox age limit %s)", heldDB, pid, toFlag.Round(time.Millisecond), limit)
	if toFlag < limit || toFlag > limit+3*time.Second {
		t.Errorf("flagged %s after it began, want within [%s, %s]", toFlag, limit, limit+3*time.Second)
	}
	var msg string
	for _, p := range flagged.GetProblems() {
		if p.GetCheck() == "relay_held_back" {
			msg = p.GetMessage()
		}
	}
	for _, want := range []string{"postgres@" + heldDB, "idle in transaction", "started " + begun.UTC().Format(time.RFC3339), "last statement",
		fmt.Sprintf("pg_terminate_backend(%d)", pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("relay_held_back message lacks %q: %s", want, msg)
		}
	}
	var listed bool
	for _, tx := range flagged.GetTransactions().GetLong() {
		if tx.GetPid() == pid {
			listed = tx.GetHoldsBackOutbox() && tx.GetDatabase() == heldDB && tx.GetUser() == "postgres" &&
				tx.GetAge().AsDuration() >= limit && tx.GetQueryStartedAt() != nil && tx.GetBackendType() == "client backend"
		}
	}
	if !listed {
		t.Errorf("transaction of pid %d not listed as holding the relay back: %v", pid, flagged.GetTransactions())
	}
	if raw, _ := json.Marshal(flagged); strings.Contains(string(raw), "s3cret") {
		t.Errorf("status shows the transaction's SQL: %s", raw)
	}

	// The gauge on /metrics (sampled every few seconds) follows the transaction's age.
	gauge := regexp.MustCompile(`(?m)^catalog_outbox_blocking_transaction_age_seconds (\S+)$`)
	eventuallyT(t, 20*time.Second, "the blocking-transaction gauge to pass the limit", func() bool {
		res, err := http.Get(c.base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		m := gauge.FindSubmatch(raw)
		if m == nil {
			return false
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		return err == nil && v >= limit.Seconds()
	})

	// While it is open, the event of the product created after it began cannot be relayed.
	st, err := client.GetStatus(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetOutbox().GetBacklog() == 0 {
		t.Errorf("no backlog while a transaction holds the relay back: %v", st.GetOutbox())
	}
	if _, err := other.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, client, req, 30*time.Second, "the relay to catch up once the transaction ended", func(st *operationsv1.GetStatusResponse) bool {
		for _, p := range st.GetProblems() {
			if p.GetCheck() == "relay_held_back" {
				return false
			}
		}
		return st.GetOutbox().GetBacklog() == 0
	})
}
