package elasticsearch_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// rmFakeBulk is a bulk endpoint whose answers the test chooses: either the whole request fails
// with wholeStatus, or each item gets itemStatus/itemType.
type rmFakeBulk struct {
	wholeStatus int
	itemStatus  int
	itemType    string
	hang        time.Duration
}

func (f rmFakeBulk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if f.wholeStatus != 0 {
		w.WriteHeader(f.wholeStatus)
		_, _ = fmt.Fprintf(w, `{"error":{"type":"whole_failure","reason":"status %d"},"status":%d}`, f.wholeStatus, f.wholeStatus)
		return
	}
	body, _ := io.ReadAll(r.Body) // read first, so a client that gives up cancels r.Context()
	if f.hang > 0 {
		select {
		case <-time.After(f.hang):
		case <-r.Context().Done():
			return
		}
	}
	var items []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var meta map[string]map[string]any
		if err := json.Unmarshal(sc.Bytes(), &meta); err != nil || meta["index"] == nil {
			continue // a document line
		}
		item := map[string]any{"_index": "x", "_id": meta["index"]["_id"], "status": f.itemStatus}
		if f.itemStatus >= 300 {
			item["error"] = map[string]any{"type": f.itemType, "reason": "test says " + f.itemType}
		} else {
			item["result"] = "created"
			item["_version"] = meta["index"]["version"]
		}
		items = append(items, map[string]any{"index": item})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": f.itemStatus >= 300, "items": items})
}

func rmFakeProjection(t *testing.T, url string, timeout time.Duration) *elasticsearch.Projection {
	t.Helper()
	cfg := elasticsearch.Config{URL: url, Alias: "fake_alias", MaxRetries: -1, RequestTimeout: timeout}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := elasticsearch.NewProjection(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// TestApplyClassifiesFailures checks every failure class without a real cluster: which answers
// are success, which are permanent (dead-letter) and which are transient (retry).
func TestApplyClassifiesFailures(t *testing.T) {
	const (
		ok = iota
		transient
		rejected
	)
	for _, tc := range []struct {
		name string
		fake rmFakeBulk
		want int
	}{
		{"created", rmFakeBulk{itemStatus: 201}, ok},
		{"older version", rmFakeBulk{itemStatus: 409, itemType: "version_conflict_engine_exception"}, ok},
		{"mapping", rmFakeBulk{itemStatus: 400, itemType: "mapper_parsing_exception"}, rejected},
		{"strict mapping: the index is behind the code", rmFakeBulk{itemStatus: 400, itemType: "strict_dynamic_mapping_exception"}, transient},
		{"document parsing", rmFakeBulk{itemStatus: 400, itemType: "document_parsing_exception"}, rejected},
		{"illegal argument", rmFakeBulk{itemStatus: 400, itemType: "illegal_argument_exception"}, rejected},
		{"alias missing", rmFakeBulk{itemStatus: 404, itemType: "index_not_found_exception"}, transient},
		{"overloaded", rmFakeBulk{itemStatus: 429, itemType: "es_rejected_execution_exception"}, transient},
		{"shard failure", rmFakeBulk{itemStatus: 503, itemType: "unavailable_shards_exception"}, transient},
		{"disk full block", rmFakeBulk{itemStatus: 403, itemType: "cluster_block_exception"}, transient},
		{"closed index", rmFakeBulk{itemStatus: 400, itemType: "index_closed_exception"}, transient},
		{"whole 503", rmFakeBulk{wholeStatus: 503}, transient},
		{"whole 429", rmFakeBulk{wholeStatus: 429}, transient},
		{"whole 400", rmFakeBulk{wholeStatus: 400}, transient},
		{"whole 401", rmFakeBulk{wholeStatus: 401}, transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.fake)
			defer srv.Close()
			p := rmFakeProjection(t, srv.URL, 5*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := p.Apply(ctx, readmodeltest.Product{ID: readmodeltest.NewID(), Version: 4}.Snapshot(t))
			switch {
			case tc.want == ok && err != nil:
				t.Fatalf("Apply = %v, want success", err)
			case tc.want == rejected && !errors.Is(err, command.ErrProjectionRejected):
				t.Fatalf("Apply = %v, want ErrProjectionRejected", err)
			case tc.want == transient && (err == nil || errors.Is(err, command.ErrProjectionRejected)):
				t.Fatalf("Apply = %v, want a transient error", err)
			case tc.want != ok && errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("Apply = %v: it waited for the caller's deadline", err)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprint(max(tc.fake.itemStatus, tc.fake.wholeStatus))) {
				t.Errorf("error %q does not say the status", err)
			}
		})
	}
}

// TestApplyNeverHangs: a cluster that is down or does not answer turns into a transient error
// within the request timeout, even for a caller without a deadline.
func TestApplyNeverHangs(t *testing.T) {
	srv := httptest.NewServer(rmFakeBulk{itemStatus: 201, hang: time.Minute})
	defer srv.Close()
	for name, url := range map[string]string{"refused": "http://127.0.0.1:1", "silent": srv.URL} {
		t.Run(name, func(t *testing.T) {
			p := rmFakeProjection(t, url, 300*time.Millisecond)
			start := time.Now()
			err := p.Apply(context.Background(), readmodeltest.Product{ID: readmodeltest.NewID()}.Snapshot(t))
			if err == nil || errors.Is(err, command.ErrProjectionRejected) {
				t.Fatalf("Apply = %v, want a transient error", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Apply took %s", d)
			}
			t.Logf("%s after %s", err, time.Since(start).Round(time.Millisecond))
		})
	}
}
