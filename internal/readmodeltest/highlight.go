package readmodeltest

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/marketplace/catalog/application/query"
)

// longDescription has the word needle near its start, in its middle and at its end, far
// enough apart for three fragments.
var longDescription = "Needle work for beginners: " + strings.Repeat("a calm and patient hobby, ", 8) +
	"with one sharp needle in the middle of it all, " + strings.Repeat("thread after thread after thread, ", 6) +
	"until the last needle"

// highlightShop is the highlight fixture; names and descriptions carry markup and quotes,
// which highlights must keep as text.
var highlightShop = []Product{
	{Name: "Wireless speaker", Description: "Loud and portable speaker for parties", Category: "hl", Brand: "Acme"},
	{Name: `Script <em>tag</em> lamp & "quotes"`, Description: "A lamp <b>bold</b> & more", Category: "hl"},
	{Name: "Tea cup", Description: "Porcelain 日本の茶碗 ünïcödé", Category: "hl"},
	{Name: "Sewing kit", Description: longDescription, Category: "hl"},
}

// highlightCase is a search of highlightShop and the highlights of one product, each
// fragment written with [[ ]] around its matches; nil expects no fragment.
type highlightCase struct {
	name        string
	text        string
	product     string
	nameFrags   []string
	description []string
}

var highlightCases = []highlightCase{
	{"words in name and description", "wireless speaker", "Wireless speaker",
		[]string{"[[Wireless]] [[speaker]]"}, []string{"Loud and portable [[speaker]] for parties"}},
	{"typos are marked in the name, not in the description", "wireles speakr", "Wireless speaker",
		[]string{"[[Wireless]] [[speaker]]"}, nil},
	{"markup and quotes stay text", "lamp", `Script <em>tag</em> lamp & "quotes"`,
		[]string{`Script <em>tag</em> [[lamp]] & "quotes"`}, []string{"A [[lamp]] <b>bold</b> & more"}},
	{"ideographs", "茶碗", "Tea cup", nil, []string{"Porcelain 日本の[[茶碗]] ünïcödé"}},
	{"accents", "ÜNÏCÖDÉ", "Tea cup", nil, []string{"Porcelain 日本の茶碗 [[ünïcödé]]"}},
	{"a brand match has nothing to highlight", "acme", "Wireless speaker", nil, nil},
}

// render writes a fragment with [[ ]] around its matches, adjacent matches as one.
func render(f query.Fragment) string { return f.Render("[[", "]]", nil) }

func renderAll(fs []query.Fragment) []string {
	var out []string
	for _, f := range fs {
		out = append(out, render(f))
	}
	return out
}

func runHighlight(t *testing.T, newFixture func(t *testing.T) Fixture) {
	e := setup(t, newFixture, true)
	e.apply(snapsOf(t, highlightShop)...)
	e.refresh()
	find := func(t *testing.T, q query.SearchProducts, name string) query.ProductView {
		t.Helper()
		for _, it := range e.search(q).Items {
			if it.Name == name {
				return it
			}
		}
		t.Fatalf("q=%q does not find %q", q.Text, name)
		return query.ProductView{}
	}

	for _, tc := range highlightCases {
		t.Run(tc.name, func(t *testing.T) {
			it := find(t, query.SearchProducts{Text: tc.text, Category: "hl", Highlight: true}, tc.product)
			if got := renderAll(it.Highlight.Name); !slices.Equal(got, tc.nameFrags) {
				t.Errorf("name fragments %q, want %q", got, tc.nameFrags)
			}
			if got := renderAll(it.Highlight.Description); !slices.Equal(got, tc.description) {
				t.Errorf("description fragments %q, want %q", got, tc.description)
			}
		})
	}

	t.Run("a long description gives bounded fragments around its matches", func(t *testing.T) {
		it := find(t, query.SearchProducts{Text: "needle", Category: "hl", Highlight: true}, "Sewing kit")
		checkLongDescriptionFragments(t, it.Highlight.Description)
	})

	t.Run("only when asked for, and only for text", func(t *testing.T) {
		for _, q := range []query.SearchProducts{
			{Text: "wireless", Category: "hl"},
			{Category: "hl", Highlight: true},
		} {
			for _, it := range e.search(q).Items {
				if !it.Highlight.Empty() {
					t.Errorf("q=%q highlight=%v: %s highlighted %+v", q.Text, q.Highlight, it.Name, it.Highlight)
				}
			}
		}
	})
}

// checkLongDescriptionFragments: a long description gives three bounded fragments, in the
// description's order, each around a match, from the first match to the description's end.
func checkLongDescriptionFragments(t *testing.T, frags []query.Fragment) {
	t.Helper()
	if len(frags) != 3 {
		t.Fatalf("%d fragments %q, want 3", len(frags), renderAll(frags))
	}
	last := -1
	for _, f := range frags {
		text := ""
		for _, p := range f {
			text += p.Text
			if p.Match && !strings.EqualFold(p.Text, "needle") {
				t.Errorf("marked %q", p.Text)
			}
		}
		at := strings.Index(longDescription, text)
		if at <= last || !strings.Contains(render(f), "[[") || utf8.RuneCountInString(text) > query.HighlightFragmentRunes {
			t.Errorf("fragment %q: at %d (previous at %d), %d characters, want a piece of the description after the previous one, at most %d long, with a match",
				render(f), at, last, utf8.RuneCountInString(text), query.HighlightFragmentRunes)
		}
		last = at
	}
	if got := render(frags[0]); !strings.HasPrefix(got, "[[Needle]] work") {
		t.Errorf("first fragment %q, want it to start at the first match", got)
	}
	if got := render(frags[2]); !strings.HasSuffix(got, "the last [[needle]]") {
		t.Errorf("last fragment %q, want it to end with the description", got)
	}
}
