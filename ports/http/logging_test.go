package httpport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	httpport "github.com/marketplace/catalog/ports/http"
)

// logRecord is one JSON log line.
type logRecord struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Status int    `json:"status"`
	Route  string `json:"route"`
	Slow   bool   `json:"slow"`
}

func logRecords(t *testing.T, raw string) []logRecord {
	t.Helper()
	var out []logRecord
	for l := range strings.SplitSeq(strings.TrimSpace(raw), "\n") {
		if l == "" {
			continue
		}
		var r logRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// refusedSearch fails like a search cluster that refuses connections.
type refusedSearch struct{}

func (refusedSearch) Handle(context.Context, query.SearchProducts) (query.SearchResult, error) {
	return query.SearchResult{}, fmt.Errorf("search products: %w: dial tcp 127.0.0.1:9200: connect: connection refused", query.ErrReadModelUnavailable)
}

// TestAccessLogLevels: ordinary requests, client mistakes included, are DEBUG; a 5xx and a
// slow request are WARN; at the default level a burst of ordinary requests writes nothing.
func TestAccessLogLevels(t *testing.T) {
	s := seeded()
	srv, logs := newServer(t, s)
	h := srv.Handler()
	do(h, "GET", "/v1/products/"+liveID, "", nil)                   // 200
	do(h, "GET", "/v1/products/"+missingID, "", nil)                // 404
	do(h, "POST", "/v1/products", `{"sku":`, nil)                   // 400
	do(h, "DELETE", "/v1/products/"+liveID, "", nil)                // 428
	do(h, "GET", "/readyz", "", nil)                                // 200
	s.fail = errors.New("dial tcp 10.0.0.7:5432: connection reset") // the next one is a 500
	do(h, "GET", "/v1/products/"+liveID, "", nil)

	levels := map[int]string{}
	for _, r := range logRecords(t, logs.String()) {
		if r.Msg == "http request" {
			levels[r.Status] = r.Level
		}
	}
	want := map[int]string{200: "DEBUG", 404: "DEBUG", 400: "DEBUG", 428: "DEBUG", 500: "WARN"}
	for status, level := range want {
		if levels[status] != level {
			t.Errorf("access log of a %d at %q, want %s (all: %v)", status, levels[status], level, levels)
		}
	}

	// A slow request is WARN whatever its status.
	slowLogs := &syncBuffer{}
	slowSrv, err := httpport.NewServer(httpport.Config{SlowRequest: time.Nanosecond}, seeded().app(),
		httpport.Deps{Log: slog.New(slog.NewJSONHandler(slowLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	do(slowSrv.Handler(), "GET", "/v1/products/"+liveID, "", nil)
	if recs := logRecords(t, slowLogs.String()); len(recs) != 1 || recs[0].Level != "WARN" || !recs[0].Slow {
		t.Errorf("slow request logged as %+v, want one WARN with slow=true", recs)
	}

	// At INFO, the default, a thousand ordinary requests write not one byte.
	quiet := &syncBuffer{}
	quietSrv, err := httpport.NewServer(httpport.Config{}, seeded().app(),
		httpport.Deps{Log: slog.New(slog.NewJSONHandler(quiet, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		do(quietSrv.Handler(), "GET", "/v1/products/"+liveID, "", nil)
	}
	if quiet.String() != "" {
		t.Errorf("ordinary requests logged at INFO:\n%.500s", quiet.String())
	}
}

// TestRefusedConnectionIsNotATimeout: a search cluster that refuses connections is logged
// as unavailable, and only a deadline as a timeout.
func TestRefusedConnectionIsNotATimeout(t *testing.T) {
	s := seeded()
	logs := &syncBuffer{}
	app := s.app()
	app.Queries.SearchProducts = refusedSearch{}
	srv, err := httpport.NewServer(httpport.Config{}, app, httpport.Deps{Log: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(srv.Handler(), "GET", "/v1/products/search?q=lamp", "", nil); rec.Code != 503 {
		t.Fatalf("search with the cluster refusing: %d %s", rec.Code, rec.Body)
	}
	s.fail = fmt.Errorf("get product: %w", context.DeadlineExceeded)
	if rec := do(srv.Handler(), "GET", "/v1/products/"+liveID, "", nil); rec.Code != 503 {
		t.Fatalf("get past its deadline: %d %s", rec.Code, rec.Body)
	}
	var msgs []string
	for _, r := range logRecords(t, logs.String()) {
		if r.Msg != "http request" {
			msgs = append(msgs, r.Level+" "+r.Msg)
		}
	}
	want := []string{"WARN search read model unavailable", "WARN request timed out"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("fault logs %q, want %q", msgs, want)
	}
}
