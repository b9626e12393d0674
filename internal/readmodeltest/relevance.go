package readmodeltest

import (
	"errors"
	"slices"
	"testing"

	"github.com/marketplace/catalog/application/query"
)

// typoCase is a search text with typos and the products of the search fixture (newCatalogue)
// it must find.
type typoCase struct {
	name string
	text string
	want []string
}

// typoCases are the typo-tolerance contract: fuzzy words in name and brand within
// query.Fuzziness edits, the first character exact, description and category exact.
var typoCases = []typoCase{
	{"a typo in each word", "wireles speakr", []string{"Wireless speaker"}},
	{"a missing letter", "wirless", []string{"Wireless speaker", "Wireless headphones"}},
	{"two swapped letters are one edit", "wirelses", []string{"Wireless speaker", "Wireless headphones"}},
	{"a typo in the brand", "acmee", []string{"Wireless speaker", "Wired earbuds"}},
	{"upper case typo", "GARDN HOSE", []string{"Garden hose"}},
	{"the first letter must be right", "xireless", nil},
	{"too many edits for a short word", "wrls", nil},
	{"words of two letters are exact", "ho", nil},
	{"descriptions match exactly", "waterring", nil},
	{"categories match exactly", "kitchem", nil},
	{"exact words still match", "wireless", []string{"Wireless speaker", "Wireless headphones"}},
	{"every word must match in one field, typos too", "acmee speakr", nil},
	{"query syntax stays text", "wireles~ speakr*", []string{"Wireless speaker"}},
}

func runTypos(t *testing.T, e *env) {
	for _, tc := range typoCases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.search(query.SearchProducts{Text: tc.text})
			if !sameSet(names(res.Items), tc.want) || res.Total != int64(len(tc.want)) {
				t.Errorf("q=%q: %v (total %d), want %v", tc.text, names(res.Items), res.Total, tc.want)
			}
		})
	}
}

// rankCase is a search and two products of rankShop: better must rank above worse.
type rankCase struct {
	name          string
	text          string
	better, worse string
}

// rankShop is the relevance fixture: pairs of products that differ in one thing only.
var rankShop = []Product{
	{Name: "Harbor speaker", Category: "rank"},
	{Name: "Harbor speakers", Category: "rank"},
	{Name: "Brass desk lamp", Category: "rank"},
	{Name: "Desk brass lamp", Category: "rank"},
	{Name: "Velvet cushion", Category: "rank", Description: "Soft"},
	{Name: "Sofa throw", Category: "rank", Description: "Velvet cushion cover"},
}

// rankCases are the relevance contract: what ranks above what, never exact scores (those
// differ between engines).
var rankCases = []rankCase{
	{"exact words above typos", "harbor speaker", "Harbor speaker", "Harbor speakers"},
	{"a phrase above the same words apart", "desk lamp", "Brass desk lamp", "Desk brass lamp"},
	{"name above description", "velvet cushion", "Velvet cushion", "Sofa throw"},
}

func runRelevance(t *testing.T, newFixture func(t *testing.T) Fixture) {
	e := setup(t, newFixture, true)
	e.apply(snapsOf(t, rankShop)...)
	e.refresh()
	for _, tc := range rankCases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.search(query.SearchProducts{Text: tc.text, Category: "rank"})
			got := names(res.Items)
			b, w := slices.Index(got, tc.better), slices.Index(got, tc.worse)
			if b < 0 || w < 0 || b > w {
				t.Errorf("q=%q: %v, want %q above %q", tc.text, got, tc.better, tc.worse)
			}
		})
	}
}

func isInvalid(err error) bool { return errors.Is(err, query.ErrInvalidSearch) }
