package bleve

import (
	"context"
	"testing"
)

// openWithIndex opens a store with cfg (a temporary directory when cfg.Dir is empty), closed
// when the test ends, and creates an index in it.
func openWithIndex(t *testing.T, cfg Config) (*Store, string) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	name, err := s.CreateIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, name
}
