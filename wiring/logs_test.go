package wiring_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeLogsWhatOnCallNeeds runs `catalog serve` as a process at the default log level,
// sends it ordinary traffic (client mistakes included), terminates its database sessions as
// an operator or a failover would, then stops it with SIGTERM. Ordinary requests write no
// line at all, and neither the terminated sessions nor the clean stop is logged as an
// ERROR.
func TestServeLogsWhatOnCallNeeds(t *testing.T) {
	cfg, db := freshDeployment(t)
	p := startServeProc(t, cfg)
	for i := range 40 {
		body := strings.Replace(validBody, `"C-1"`, fmt.Sprintf(`"LOG-%d"`, i), 1)
		if code, res, err := tryDo(p.base, "POST", "/v1/products", body); err != nil || code != 201 {
			t.Fatalf("create %d: %d %v %v", i, code, res, err)
		}
		if code, _, err := tryDo(p.base, "GET", "/v1/products/not-a-uuid", ""); err != nil || code != 400 {
			t.Fatalf("bad get: %d %v", code, err)
		}
	}
	if _, err := db.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
		t.Fatal(err)
	}
	eventuallyT(t, 30*time.Second, "the relay to notice its sessions ended", func() bool {
		return strings.Contains(p.output.String(), "LISTEN connection lost")
	})
	time.Sleep(2 * time.Second) // every lane past its retry interval, polling on new sessions
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("catalog serve did not stop within 30 s of SIGTERM")
	}
	if p.err != nil {
		t.Errorf("catalog serve exited with %v after SIGTERM", p.err)
	}
	out := p.output.String()
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("ERROR logged: %s", line)
		}
		if strings.Contains(line, `msg="http request"`) {
			t.Errorf("an ordinary request logged at the default level: %s", line)
		}
	}
	if !strings.Contains(out, `msg="role stopped" role=api`) {
		t.Errorf("no clean stop in the log:\n%s", tail(out, 30))
	}
}
