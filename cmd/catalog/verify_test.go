package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
)

func report(cats map[ops.Category][]ops.Difference) ops.VerifyReport {
	rep := ops.VerifyReport{Alias: "product_search", Index: "product_search_v1_20260301_110000",
		StartedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Duration: 40 * time.Second, Settle: 3 * time.Second,
		Products: 1_000_000, Documents: 1_000_002}
	for _, c := range ops.Categories {
		cr := ops.CategoryReport{Category: c, Samples: cats[c], Count: int64(len(cats[c]))}
		rep.Candidates += cr.Count
		rep.Categories = append(rep.Categories, cr)
	}
	return rep
}

func plantedReport() ops.VerifyReport {
	return report(map[ops.Category][]ops.Difference{
		ops.CategoryMissing:     {{ID: "0190a0b0-0000-7000-8000-000000000001", Category: ops.CategoryMissing, InDatabase: true, DatabaseVersion: 2}},
		ops.CategoryStale:       {{ID: "0190a0b0-0000-7000-8000-000000000002", Category: ops.CategoryStale, InDatabase: true, DatabaseVersion: 3, InIndex: true, IndexVersion: 2}},
		ops.CategoryPhantom:     {{ID: "0190a0b0-0000-7000-8000-000000000003", Category: ops.CategoryPhantom, InIndex: true, IndexVersion: 1}},
		ops.CategoryResurrected: {{ID: "0190a0b0-0000-7000-8000-000000000004", Category: ops.CategoryResurrected, InDatabase: true, DatabaseVersion: 2, DatabaseDeleted: true, InIndex: true, IndexVersion: 2}},
	})
}

func TestVerifyConsistent(t *testing.T) {
	f := &opsFake{report: report(nil), progress: []ops.VerifyProgress{{Phase: ops.PhaseScan, Products: 500_000, Documents: 500_001,
		ProductsTotal: 1_000_000, Elapsed: 20 * time.Second}}}
	cfg := serveOps(t, f)
	out, errOut, err := runCmd(t, newVerifyCmd, cfg)
	if err != nil {
		t.Fatalf("consistent verify failed: %v", err)
	}
	for _, want := range []string{"verify product_search -> product_search_v1_20260301_110000: CONSISTENT",
		"1,000,000 products and 1,000,002 documents compared in 40s (25,000 products/s)", "0 differed in the scan; 0 still differed after 3s",
		"missing", "resurrected"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Not a terminal: a plain progress line on stderr, no carriage returns.
	if !strings.Contains(errOut, "verify: scan    500,000/1,000,000 products, 500,001 documents, 0 candidates, 25,000/s, 20s") || strings.Contains(errOut, "\r") {
		t.Errorf("progress: %q", errOut)
	}
	if got := f.gotReq[0]; got != ops.DefaultVerifyRequest() {
		t.Errorf("request %+v, want the defaults", got)
	}
}

func TestVerifyDifferencesExitOne(t *testing.T) {
	cfg := serveOps(t, &opsFake{report: plantedReport()})
	out, _, err := runCmd(t, newVerifyCmd, cfg, "--settle=10s", "--samples=5")
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("err = %v, want a failure (exit 1)", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "4 differences") || !strings.Contains(msg, "1 missing, 1 stale, 1 phantom, 1 resurrected") {
		t.Errorf("error: %s", msg)
	}
	for _, want := range []string{"DIFFERENCES FOUND", "missing (1 of 1):", "0190a0b0-0000-7000-8000-000000000001  v2        -",
		"resurrected (1 of 1):", "v2 deleted  v2", "phantom (1 of 1):"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestVerifyJSON(t *testing.T) {
	f := &opsFake{report: plantedReport()}
	cfg := serveOps(t, f)
	out, _, err := runCmd(t, newVerifyCmd, cfg, "--json", "--settle=0s", "--samples=0")
	if err == nil {
		t.Fatal("differences with --json exited 0")
	}
	if got := f.gotReq[0]; got != (ops.VerifyRequest{}) {
		t.Errorf("--settle=0s --samples=0 sent %+v", got)
	}
	var doc struct {
		Consistent      bool    `json:"consistent"`
		Alias           string  `json:"alias"`
		Index           string  `json:"index"`
		StartedAt       string  `json:"started_at"`
		DurationSeconds float64 `json:"duration_seconds"`
		SettleSeconds   float64 `json:"settle_seconds"`
		Products        int64   `json:"products"`
		Documents       int64   `json:"documents"`
		Candidates      int64   `json:"candidates"`
		Differences     int64   `json:"differences"`
		RatePerSecond   float64 `json:"rate_per_second"`
		Categories      map[string]struct {
			Count   int64 `json:"count"`
			Samples []struct {
				ID       string          `json:"id"`
				Database json.RawMessage `json:"database"`
				Index    json.RawMessage `json:"index"`
			} `json:"samples"`
		} `json:"categories"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JSON does not have the documented fields: %v\n%s", err, out)
	}
	if doc.Consistent || doc.Differences != 4 || doc.Products != 1_000_000 || doc.RatePerSecond != 25_000 || doc.DurationSeconds != 40 ||
		doc.SettleSeconds != 3 || doc.StartedAt != "2026-03-01T12:00:00Z" || len(doc.Categories) != 5 {
		t.Errorf("report: %+v", doc)
	}
	compact := func(raw json.RawMessage) string {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	miss, ph, res := doc.Categories["missing"], doc.Categories["phantom"], doc.Categories["resurrected"]
	if miss.Count != 1 || compact(miss.Samples[0].Database) != `{"version":2,"deleted":false}` || compact(miss.Samples[0].Index) != "null" {
		t.Errorf("missing: %+v", miss)
	}
	if compact(ph.Samples[0].Database) != "null" || compact(res.Samples[0].Database) != `{"version":2,"deleted":true}` {
		t.Errorf("phantom %+v resurrected %+v", ph, res)
	}
	if ahead := doc.Categories["ahead"]; ahead.Count != 0 || ahead.Samples == nil {
		t.Errorf("an empty category must be present with an empty list: %+v", ahead)
	}
}

func TestVerifyErrors(t *testing.T) {
	var ue usageError
	cfg := serveOps(t, &opsFake{verifyErr: fmt.Errorf("verify: rebuild target: %w", rebuild.ErrNoAlias)})
	_, _, err := runCmd(t, newVerifyCmd, cfg)
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "alias does not exist") {
		t.Errorf("no alias: err = %v", err)
	}
	cfg = serveOps(t, &opsFake{verifyErr: fmt.Errorf("verify: %w", ops.ErrVerifyRunning)})
	if _, _, err := runCmd(t, newVerifyCmd, cfg); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("running: err = %v", err)
	}
	for _, args := range [][]string{{"--settle=-1s"}, {"--settle=6m"}, {"--samples=-1"}, {"--samples=1001"}, {"--timeout=-1s"}} {
		if _, _, err := runCmd(t, newVerifyCmd, cfg, args...); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	if _, _, err := runCmd(t, newVerifyCmd, cfg, "--samples=x"); !isFlagError(err) {
		t.Errorf("--samples=x: err = %v, want a flag error", err)
	}
	_, _, err = runCmd(t, newVerifyCmd, serveOps(t, &opsFake{report: report(nil)}), "--timeout=1ns")
	if err == nil || !strings.Contains(err.Error(), "gave up after --timeout=1ns") {
		t.Errorf("timeout: err = %v", err)
	}
}

func TestRenderVerifyProgress(t *testing.T) {
	p := &operationsv1.VerifyProgress{Phase: operationsv1.VerifyPhase_VERIFY_PHASE_SETTLE, Products: 1000, Documents: 990, Candidates: 12,
		Elapsed: durationpb.New(2 * time.Second)}
	if got := renderVerifyProgress(p); got != "settle  1,000 products, 990 documents, 12 candidates, 500/s, 2s" {
		t.Errorf("progress %q", got)
	}
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	v := &verifyProgressView{w: &buf, now: func() time.Time { return now }}
	v.update(p)
	now = now.Add(time.Second)
	v.update(p) // too soon: no line
	now = now.Add(verifyPlainProgressEvery)
	v.update(p)
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, buf.String())
	}
}

// TestVerifyProgressLineIsGoneBeforeTheReport: on a terminal the redrawn progress line is
// erased when the verify ends, so nothing of it stays on the screen with the report.
func TestVerifyProgressLineIsGoneBeforeTheReport(t *testing.T) {
	var buf bytes.Buffer
	v := &verifyProgressView{w: &buf, tty: true, now: time.Now}
	v.update(&operationsv1.VerifyProgress{Phase: operationsv1.VerifyPhase_VERIFY_PHASE_RECHECK, Products: 3})
	v.done()
	screen := buf.String()
	last := screen[strings.LastIndex(screen, "\r"):]
	if last != "\r\x1b[K" {
		t.Fatalf("after done the terminal line holds %q, want it erased", last)
	}
	v.done()
	if buf.String() != screen {
		t.Fatal("a second done wrote again")
	}
}
