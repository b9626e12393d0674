package wiring_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// TestRebuildValidationFailureDoesNotSwitch: the new index damaged before validation (the
// BeforeValidate test hook) fails the rebuild before the switch: the record is failed and
// names the document, the alias is untouched, the new index is gone. A product removed from
// the new index, and a live document the database does not know.
func TestRebuildValidationFailureDoesNotSwitch(t *testing.T) {
	rp := startReadPath(t)
	ids := createProducts(t, rp.component, "VAL", "validation", 10)
	rp.waitSearch(t, "category=validation&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 10 })

	t.Run("missing document", func(t *testing.T) {
		missing := ids[3]
		failedValidation(t, rp, missing, "missing", func(t *testing.T, index string) {
			code, raw := esRequest(t, "DELETE", rp.esURL+"/"+index+"/_doc/"+missing+"?refresh=true", "")
			if code != http.StatusOK {
				t.Errorf("hook: delete %s from %s: %d %s", missing, index, code, raw)
			}
		})
	})
	t.Run("unknown document", func(t *testing.T) {
		phantom := "01900000-0000-7000-8000-00000000beef"
		failedValidation(t, rp, phantom, "does not know", func(t *testing.T, index string) {
			code, raw := esRequest(t, "GET", rp.esURL+"/"+index+"/_doc/"+ids[0], "")
			var doc struct {
				Source map[string]any `json:"_source"`
			}
			if code != http.StatusOK || json.Unmarshal(raw, &doc) != nil {
				t.Errorf("hook: get %s from %s: %d %s", ids[0], index, code, raw)
				return
			}
			doc.Source["id"], doc.Source["sku"] = phantom, "PHANTOM"
			body, _ := json.Marshal(doc.Source)
			code, raw = esRequest(t, "PUT", rp.esURL+"/"+index+"/_doc/"+phantom+"?version=1&version_type=external&refresh=true", string(body))
			if code != http.StatusCreated {
				t.Errorf("hook: put %s into %s: %d %s", phantom, index, code, raw)
			}
		})
	})
}

// failedValidation runs a database rebuild through a rebuild.Service built here on the real
// adapters, with damage as its BeforeValidate hook, and checks that it failed in validation
// naming id (and saying what), without switching the alias.
func failedValidation(t *testing.T, rp *readPath, id, what string, damage func(*testing.T, string)) {
	ctx := context.Background()
	from := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	var hookIndex atomic.Value
	svc := newRebuildService(t, rp, rp.esURL, func(_ context.Context, index string) {
		hookIndex.Store(index)
		damage(t, index)
	})
	started, err := svc.Start(ctx, readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	final := awaitServiceRebuild(t, svc, started.ID)

	if final.Phase != readmodel.PhaseFailed {
		t.Fatalf("rebuild ended %s (%q), want failed", final.Phase, final.Error)
	}
	if !strings.Contains(final.Error, id) || !strings.Contains(final.Error, what) {
		t.Errorf("the failure does not name the document %s (%q): %q", id, what, final.Error)
	}
	t.Logf("recorded failure: %s", final.Error)
	idx, _ := hookIndex.Load().(string)
	if idx == "" || idx != final.ToIndex {
		t.Fatalf("the hook ran on %q, the record names %q", idx, final.ToIndex)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != from {
		t.Fatalf("alias moved to %s, want it on %s", got, from)
	}
	if indexExists(t, rp.esURL, idx) {
		t.Errorf("the failed rebuild's index %s was not deleted", idx)
	}
	// Any replica reports the failure.
	rec, err := adminClient(t, rp.cfg.GRPCAddr).GetRebuild(ctx, &projectionv1.GetRebuildRequest{Id: started.ID})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetPhase() != phaseFailed || !strings.Contains(rec.GetError(), id) {
		t.Errorf("through gRPC the record says %s %q", rec.GetPhase(), rec.GetError())
	}
	rp.waitSearch(t, "category=validation&size=1", 5*time.Second, "search unchanged", func(p searchPage) bool { return p.Total == 10 })
}

// newRebuildService builds the rebuild use case on the real adapters of rp's deployment (the
// database, the topic, the alias), talking to the search cluster at esURL, with hook as its
// BeforeValidate test hook.
func newRebuildService(t *testing.T, rp *readPath, esURL string, hook func(context.Context, string)) *rebuild.Service {
	t.Helper()
	return newRebuildServiceWith(t, rp, esURL, rebuild.Config{BeforeValidate: hook}, nil)
}

// newRebuildServiceWith is newRebuildService with cfg (its settle time and projector group are
// the deployment's) and, when wrap is not nil, the product source wrap returns around the
// real one.
func newRebuildServiceWith(t *testing.T, rp *readPath, esURL string, cfg rebuild.Config, wrap func(rebuild.ProductSource) rebuild.ProductSource) *rebuild.Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := postgres.NewRebuildStore(rp.db)
	if err != nil {
		t.Fatal(err)
	}
	var source rebuild.ProductSource
	if source, err = postgres.NewProductSource(rp.db); err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		source = wrap(source)
	}
	events, err := kafka.NewEventLog(kafka.Config{Brokers: rp.kafka.Brokers}, rp.cfg.ProductEventsTopic, log)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := elasticsearch.Config{URL: esURL, Compat: rp.compat, Alias: rp.cfg.SearchAlias}
	_, target := searchTarget(t, ecfg)
	cfg.Settle, cfg.ProjectorGroup = rp.cfg.SearchRefreshInterval, rp.cfg.ProjectorGroup
	svc, err := rebuild.NewService(cfg, store, source, events, target, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.HandOffAll()
		svc.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = target.Close(ctx)
		events.Close()
	})
	return svc
}

func awaitServiceRebuild(t *testing.T, svc *rebuild.Service, id string) readmodel.Snapshot {
	t.Helper()
	var final readmodel.Snapshot
	eventuallyT(t, 40*time.Second, "the rebuild to end", func() bool {
		s, err := svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		final = s
		return s.Phase.Terminal()
	})
	svc.Wait()
	return final
}
