package ops

import (
	"testing"

	"github.com/marketplace/catalog/application/rebuild"
)

func TestClassify(t *testing.T) {
	dv := func(v int64, del bool) *rebuild.DocVersion {
		return &rebuild.DocVersion{ID: "x", Version: v, Deleted: del}
	}
	cases := []struct {
		row, doc *rebuild.DocVersion
		want     Category
		differs  bool
	}{
		{dv(1, false), dv(1, false), "", false},
		{dv(2, true), dv(2, true), "", false},
		{nil, dv(1, true), CategoryPhantom, false},
		{nil, dv(1, false), CategoryPhantom, true},
		{dv(1, false), nil, CategoryMissing, true},
		{dv(1, true), nil, CategoryMissing, true},
		{dv(2, false), dv(1, false), CategoryStale, true},
		{dv(3, true), dv(2, false), CategoryResurrected, true},
		{dv(3, true), dv(4, false), CategoryResurrected, true},
		{dv(2, false), dv(3, true), CategoryAhead, true},
		{dv(2, false), dv(2, true), CategoryStale, true},
	}
	for _, tc := range cases {
		got, differs := classify(tc.row, tc.doc)
		if differs != tc.differs || (differs && got != tc.want) {
			t.Errorf("classify(%+v, %+v) = %q %v, want %q %v", tc.row, tc.doc, got, differs, tc.want, tc.differs)
		}
	}
}
