package query_test

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/marketplace/catalog/application/query"
)

type pos struct {
	V  int64  `json:"v"`
	ID string `json:"id"`
}

func TestCursorEnvelope(t *testing.T) {
	c, err := query.EncodeCursor(query.SortNewest, "h1", pos{V: 7, ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var got pos
	if err := query.DecodeCursor(c, query.SortNewest, "h1", &got); err != nil || got != (pos{V: 7, ID: "x"}) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, tc := range map[string]struct {
		cursor string
		sort   query.SortOrder
		hash   string
	}{
		"other sort":       {c, query.SortPriceAsc, "h1"},
		"other search":     {c, query.SortNewest, "h2"},
		"not base64":       {"%%%", query.SortNewest, "h1"},
		"not json":         {enc("nope"), query.SortNewest, "h1"},
		"null":             {enc("null"), query.SortNewest, "h1"},
		"trailing":         {enc(`{"f":1,"s":"newest","h":"h1","p":{"v":1,"id":"x"}} {}`), query.SortNewest, "h1"},
		"other format":     {enc(`{"f":2,"s":"newest","h":"h1","p":{"v":1,"id":"x"}}`), query.SortNewest, "h1"},
		"unknown field":    {enc(`{"f":1,"s":"newest","h":"h1","p":{"v":1,"id":"x"},"z":1}`), query.SortNewest, "h1"},
		"no position":      {enc(`{"f":1,"s":"newest","h":"h1"}`), query.SortNewest, "h1"},
		"foreign position": {enc(`{"f":1,"s":"newest","h":"h1","p":{"v":1,"id":"x","w":2}}`), query.SortNewest, "h1"},
		"wrong types":      {enc(`{"f":1,"s":"newest","h":"h1","p":{"v":"1","id":"x"}}`), query.SortNewest, "h1"},
	} {
		var p pos
		if err := query.DecodeCursor(tc.cursor, tc.sort, tc.hash, &p); !errors.Is(err, query.ErrInvalidCursor) {
			t.Errorf("%s: %v, want ErrInvalidCursor", name, err)
		}
	}
}
