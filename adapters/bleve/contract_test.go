package bleve_test

import (
	"context"
	"testing"

	"github.com/marketplace/catalog/adapters/bleve"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// openStore opens a store on a fresh temporary directory, closed at the end of the test.
func openStore(t *testing.T, cfg bleve.Config) *bleve.Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := bleve.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestReadModelContract(t *testing.T) {
	readmodeltest.RunReadModelContract(t, func(t *testing.T) readmodeltest.Fixture {
		s := openStore(t, bleve.Config{Alias: "contract"})
		return readmodeltest.Fixture{
			Alias:      "contract",
			Projection: s,
			Search:     s,
			Target:     s,
			Versions:   s,
			EnsureAlias: func(ctx context.Context) (string, error) {
				index, _, err := s.EnsureAlias(ctx)
				return index, err
			},
			Refresh: func(ctx context.Context) error { return s.Refresh(ctx, "") },
		}
	})
}
