package elasticsearch_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// TestReadModelContract runs the read-model contract (internal/readmodeltest) against the real
// cluster, each case with an alias of its own.
func TestReadModelContract(t *testing.T) {
	readmodeltest.RunReadModelContract(t, func(t *testing.T) readmodeltest.Fixture {
		e := rmSetup(t, nil)
		p, err := elasticsearch.NewProjection(e.client, e.cfg)
		if err != nil {
			t.Fatalf("NewProjection: %v", err)
		}
		s, err := elasticsearch.NewSearch(e.client, e.cfg)
		if err != nil {
			t.Fatalf("NewSearch: %v", err)
		}
		target, err := elasticsearch.NewTarget(e.client, e.ix, e.cfg)
		if err != nil {
			t.Fatalf("NewTarget: %v", err)
		}
		// Registered after rmSetup's cleanup, so it runs before the indices are deleted.
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = p.Close(ctx)
			_ = target.Close(ctx)
		})
		return readmodeltest.Fixture{
			Alias:      e.cfg.Alias,
			Projection: p,
			Search:     s,
			Target:     target,
			Versions:   s,
			EnsureAlias: func(ctx context.Context) (string, error) {
				index, _, err := e.ix.EnsureAlias(ctx)
				return index, err
			},
			Refresh: func(ctx context.Context) error { return e.ix.Refresh(ctx, "") },
		}
	})
}
