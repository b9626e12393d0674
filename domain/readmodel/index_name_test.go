package readmodel_test

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/readmodel"
)

func TestIndexNameRoundTrips(t *testing.T) {
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("x", 3600))
	name := readmodel.IndexName("product_search", 3, at)
	if name != "product_search_v3_20260203_030506" {
		t.Fatalf("IndexName = %s, want UTC to the second", name)
	}
	v, created, ok := readmodel.ParseIndexName("product_search", name)
	if !ok || v != 3 || !created.Equal(at.Truncate(time.Second)) {
		t.Fatalf("ParseIndexName(%s) = %d %v %v", name, v, created, ok)
	}
	for name, alias := range map[string]string{
		"product_search_v3_20260203_030506x": "product_search",
		"other_v3_20260203_030506":           "product_search",
		"a-b_c_v12_20260203_030506":          "a-b",
		"product_search":                     "product_search",
		"product_search_v_20260203_030506":   "product_search",
		"product_search_v3_20261303_030506":  "product_search",
	} {
		if _, _, ok := readmodel.ParseIndexName(alias, name); ok {
			t.Errorf("ParseIndexName(%q, %q) accepted a name it did not make", alias, name)
		}
	}
}
