package httpport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// defaultReadyTimeout bounds each readiness check. Probes have their own timeout (Kubernetes:
// 1 s by default, usually raised); a hung dependency must make the check fail, not hang the
// probe.
const defaultReadyTimeout = 2 * time.Second

// Readiness statuses. They are words, not booleans, so that a "degraded" state can be added
// without breaking clients that compare strings.
const (
	statusOK          = "ok"
	statusFail        = "fail"
	statusUnavailable = "unavailable"
)

type healthJSON struct {
	Status string `json:"status"`
}

// apiRole is the role GET /readyz answers for without ?role= when the server runs the API:
// the API's own readiness.
const apiRole = "api"

type readinessJSON struct {
	Role   string                        `json:"role"`
	Status string                        `json:"status"`
	Checks map[string]readinessCheckJSON `json:"checks"`
}

type readinessCheckJSON struct {
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	// Error is a category ("timeout", "failed"), never the dependency's message: readiness
	// is often reachable without authentication, and the log has the cause.
	Error string `json:"error,omitempty"`
}

// healthz is liveness: it answers whenever the process serves HTTP and checks nothing
// else, so a dependency outage never makes the orchestrator restart healthy processes.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, healthJSON{Status: statusOK})
}

// readyz is readiness: it runs every named check of one role concurrently (so the slowest,
// not the sum, bounds the answer) and reports 503 when any fails. Without ?role= it answers
// for the API, which is what a load balancer must probe: only the API's own dependencies can
// take it out of rotation. ?role=relay or ?role=projector report those roles' dependencies.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	role := r.URL.Query().Get("role")
	if role == "" {
		role = s.defaultRole
	}
	checks, ok := s.ready[role]
	if !ok {
		known := make([]string, 0, len(s.ready))
		for name := range s.ready {
			known = append(known, name)
		}
		sort.Strings(known)
		return invalidParameter("role", "must be one of "+strings.Join(known, ", "))
	}
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	sort.Strings(names)

	results := make([]readinessCheckJSON, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { results[i] = s.runCheck(r.Context(), role, name, checks[name]) })
	}
	wg.Wait()

	body := readinessJSON{Role: role, Status: statusOK, Checks: make(map[string]readinessCheckJSON, len(names))}
	status := http.StatusOK
	for i, name := range names {
		body.Checks[name] = results[i]
		if results[i].Status != statusOK {
			body.Status, status = statusUnavailable, http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, status, body)
}

func (s *Server) runCheck(ctx context.Context, role, name string, check func(context.Context) error) readinessCheckJSON {
	ctx, cancel := context.WithTimeout(ctx, s.readyTimeout)
	defer cancel()
	start := time.Now()
	err := runWithContext(ctx, check)
	res := readinessCheckJSON{Status: statusOK, DurationMS: time.Since(start).Milliseconds()}
	if err == nil {
		return res
	}
	s.log.WarnContext(ctx, "readiness check failed", "role", role, "check", name, "err", err, "request_id", RequestID(ctx))
	res.Status, res.Error = statusFail, "failed"
	if errors.Is(err, context.DeadlineExceeded) {
		res.Error = "timeout"
	}
	return res
}

// runWithContext returns when check returns or ctx ends, whichever is first, so a check
// that ignores its context cannot hold the probe past the timeout. The goroutine of such a
// check lingers until it returns; that is the check's bug to fix, and the log says which.
// A panicking check counts as failed: it is a bug in the check, not a reason to crash.
func runWithContext(ctx context.Context, check func(context.Context) error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("check panicked: %v", v)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("readiness check: %w", ctx.Err())
	}
}
