package elasticsearch

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/readmodel"
)

func TestIndexNameRoundTrip(t *testing.T) {
	at := time.Date(2031, 12, 31, 23, 59, 58, 0, time.UTC)
	name := readmodel.IndexName("a-b_c", 12, at)
	v, created, ok := readmodel.ParseIndexName("a-b_c", name)
	if !ok || v != 12 || !created.Equal(at) {
		t.Fatalf("readmodel.ParseIndexName(%q) = %d, %s, %v", name, v, created, ok)
	}
	for _, other := range []string{"a-b_c", "a-b_cx_v1_20240101_000000", "a-b_c_v1_20240101_0000", "x_a-b_c_v1_20240101_000000", "a-b_c_v1_20241301_000000"} {
		if _, _, ok := readmodel.ParseIndexName("a-b_c", other); ok {
			t.Errorf("parseIndexName accepted %q", other)
		}
	}
}

func TestCursorRoundTripAndRejections(t *testing.T) {
	q, err := query.SearchProducts{Text: "x", Sort: query.SortNewest}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	h := q.Hash()
	c, err := encodeCursor(q.Sort, h, []json.RawMessage{json.RawMessage(`1714564800000`), json.RawMessage(`"id-1"`)})
	if err != nil {
		t.Fatal(err)
	}
	after, err := decodeCursor(c, q.Sort, h)
	if err != nil || string(after[0]) != "1714564800000" || string(after[1]) != `"id-1"` {
		t.Fatalf("decodeCursor = %s, %v", after, err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, bad := range map[string]string{
		"other sort":   c,
		"not base64":   "%%%",
		"not json":     enc("nope"),
		"trailing":     enc(`{"f":1,"s":"newest","h":"` + h + `","p":[1,"x"]} {}`),
		"format":       enc(`{"f":2,"s":"newest","h":"` + h + `","p":[1,"x"]}`),
		"hash":         enc(`{"f":1,"s":"newest","h":"zzz","p":[1,"x"]}`),
		"huge number":  enc(`{"f":1,"s":"newest","h":"` + h + `","p":[1e400,"x"]}`),
		"empty id":     enc(`{"f":1,"s":"newest","h":"` + h + `","p":[1,""]}`),
		"null":         enc(`null`),
		"no values":    enc(`{"f":1,"s":"newest","h":"` + h + `"}`),
		"bool value":   enc(`{"f":1,"s":"newest","h":"` + h + `","p":[true,"x"]}`),
		"number as id": enc(`{"f":1,"s":"newest","h":"` + h + `","p":[1,2]}`),
	} {
		sort := q.Sort
		if name == "other sort" {
			sort = query.SortPriceAsc
		}
		if _, err := decodeCursor(bad, sort, h); !errors.Is(err, query.ErrInvalidCursor) {
			t.Errorf("%s: decodeCursor = %v, want ErrInvalidCursor", name, err)
		}
	}
	// A relevance cursor carries a float score.
	rq, _ := query.SearchProducts{Text: "x"}.Normalize()
	rh := rq.Hash()
	rc, _ := encodeCursor(rq.Sort, rh, []json.RawMessage{json.RawMessage(`1.2345678`), json.RawMessage(`"id"`)})
	if _, err := decodeCursor(rc, rq.Sort, rh); err != nil {
		t.Fatalf("relevance cursor: %v", err)
	}
}

func TestIndexSettings(t *testing.T) {
	cfg := Config{ExtraIndexSettings: map[string]any{"gc_deletes": "1s"}}
	cfg.setDefaults()
	s := cfg.indexSettings(false)
	if s["index.auto_expand_replicas"] != DefaultAutoExpandReplicas || s["index.refresh_interval"] != "1s" ||
		s["index.number_of_shards"] != 1 || s["index.gc_deletes"] != "1s" {
		t.Errorf("default settings = %v", s)
	}
	s = cfg.indexSettings(true)
	if s["index.refresh_interval"] != "-1" || s["index.number_of_replicas"] != 0 || s["index.auto_expand_replicas"] != "false" {
		t.Errorf("bulk-load settings = %v", s)
	}
	two := 2
	cfg.Replicas, cfg.RefreshInterval = &two, 250*time.Millisecond
	if s := cfg.liveSettings(); s["index.number_of_replicas"] != 2 || s["index.refresh_interval"] != "250ms" {
		t.Errorf("live settings = %v", s)
	}
}
