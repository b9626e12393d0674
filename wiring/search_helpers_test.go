package wiring_test

import (
	"testing"

	"github.com/marketplace/catalog/adapters/elasticsearch"
)

// searchIndices is the index management of ecfg's alias, built from its parts the way the
// read-model provider set builds it, for tests that arrange or inspect indices outside catalog.
func searchIndices(t *testing.T, ecfg elasticsearch.Config) *elasticsearch.Indices {
	t.Helper()
	ix, _ := newSearchParts(t, ecfg, false)
	return ix
}

// searchTarget is searchIndices and the rebuild target over the same client; the caller
// closes the target.
func searchTarget(t *testing.T, ecfg elasticsearch.Config) (*elasticsearch.Indices, *elasticsearch.Target) {
	t.Helper()
	return newSearchParts(t, ecfg, true)
}

func newSearchParts(t *testing.T, ecfg elasticsearch.Config, withTarget bool) (*elasticsearch.Indices, *elasticsearch.Target) {
	t.Helper()
	cl, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := elasticsearch.NewIndices(cl, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if !withTarget {
		return ix, nil
	}
	target, err := elasticsearch.NewTarget(cl, ix, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix, target
}
