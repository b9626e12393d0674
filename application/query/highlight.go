package query

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Highlighting (SearchProducts.Highlight). Read models report where the search text matched a
// product's name and description as byte spans of the field's text; Fragments cuts the text
// into the fragments every read model returns, so that fragments differ between engines only
// where the spans do. The parts are plain text: ports escape them for their medium (the HTTP
// port writes HTML with <em> around the matches).
const (
	// HighlightFragmentRunes is the longest description fragment, in characters. A name or a
	// description up to this length is one fragment, the whole field.
	HighlightFragmentRunes = 160
	// HighlightContextRunes is how much text a fragment shows before its first match.
	HighlightContextRunes = 40
	// HighlightMaxFragments bounds the fragments of one field; matches after the last one are
	// not shown.
	HighlightMaxFragments = 3
)

// Highlight holds the fragments of a product's fields that the search text matched; a field
// without a match has none.
type Highlight struct {
	// Name is the whole name with its matches marked, or empty.
	Name []Fragment
	// Description is up to HighlightMaxFragments pieces of the description around matches,
	// in text order, or empty.
	Description []Fragment
}

// Empty reports whether nothing is highlighted.
func (h Highlight) Empty() bool { return len(h.Name) == 0 && len(h.Description) == 0 }

// Fragment is a piece of a field's text as consecutive parts; joined, the parts' Text is the
// piece of the original text.
type Fragment []HighlightPart

// Render writes f with open and close around its matches (adjacent matches inside one pair)
// and every run of text through escape (nil: as it is), so that a port renders the text for
// its medium and only its own markers are markup.
func (f Fragment) Render(open, close string, escape func(string) string) string {
	var b strings.Builder
	inMatch := false
	for _, p := range f {
		if p.Match != inMatch {
			if p.Match {
				b.WriteString(open)
			} else {
				b.WriteString(close)
			}
			inMatch = p.Match
		}
		if escape != nil {
			b.WriteString(escape(p.Text))
		} else {
			b.WriteString(p.Text)
		}
	}
	if inMatch {
		b.WriteString(close)
	}
	return b.String()
}

// HighlightPart is a run of text of a fragment; Match marks a word the search text matched.
type HighlightPart struct {
	Text  string
	Match bool
}

// Span is a match in a field's text: bytes [Start, End).
type Span struct {
	Start, End int
}

// Fragments cuts text into the highlight fragments of its matches. A text of at most
// maxRunes characters is one fragment; a longer one gives up to HighlightMaxFragments
// fragments of at most maxRunes characters, each starting up to HighlightContextRunes before
// its first match at a word boundary and ending at one. Spans are sorted, non-overlapping and
// inside text; any that are not are dropped rather than trusted. No span, no fragment.
func Fragments(text string, spans []Span, maxRunes int) []Fragment {
	spans = cleanSpans(text, spans)
	if len(spans) == 0 {
		return nil
	}
	if utf8.RuneCountInString(text) <= maxRunes {
		return []Fragment{mark(text, 0, len(text), spans)}
	}
	var out []Fragment
	next := 0 // the first span not yet shown
	covered := 0
	for next < len(spans) && len(out) < HighlightMaxFragments {
		first := spans[next]
		start := backRunes(text, first.Start, HighlightContextRunes)
		start = max(start, covered)
		start = wordStart(text, start, first.Start)
		end := forwardRunes(text, start, maxRunes)
		end = wordEnd(text, end, first.End, start)
		start, end = trimSpace(text, start, end, first)
		out = append(out, mark(text, start, end, spans))
		covered = end
		for next < len(spans) && spans[next].Start < end {
			next++
		}
	}
	return out
}

// cleanSpans drops spans that are empty, outside text, overlapping an earlier one or not on
// character boundaries, and sorts the rest.
func cleanSpans(text string, spans []Span) []Span {
	sorted := slices.Clone(spans)
	slices.SortFunc(sorted, func(a, b Span) int { return a.Start - b.Start })
	out := sorted[:0]
	last := 0
	for _, s := range sorted {
		if s.Start < last || s.End <= s.Start || s.End > len(text) ||
			!utf8.RuneStart(byteAt(text, s.Start)) || s.End < len(text) && !utf8.RuneStart(text[s.End]) {
			continue
		}
		out = append(out, s)
		last = s.End
	}
	return out
}

func byteAt(s string, i int) byte {
	if i >= len(s) {
		return 0
	}
	return s[i]
}

// mark is text[start:end] as parts, with the spans (clipped to the piece) marked.
func mark(text string, start, end int, spans []Span) Fragment {
	var f Fragment
	at := start
	for _, s := range spans {
		if s.End <= start || s.Start >= end {
			continue
		}
		from, to := max(s.Start, start), min(s.End, end)
		if from > at {
			f = append(f, HighlightPart{Text: text[at:from]})
		}
		f = append(f, HighlightPart{Text: text[from:to], Match: true})
		at = to
	}
	if at < end {
		f = append(f, HighlightPart{Text: text[at:end]})
	}
	return f
}

// backRunes is the byte offset n characters before i (or 0).
func backRunes(text string, i, n int) int {
	for ; n > 0 && i > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(text[:i])
		i -= size
	}
	return i
}

// forwardRunes is the byte offset n characters after i (or the end).
func forwardRunes(text string, i, n int) int {
	for ; n > 0 && i < len(text); n-- {
		_, size := utf8.DecodeRuneInString(text[i:])
		i += size
	}
	return i
}

// wordStart moves start forward past a partly cut word to the next word boundary, but never
// past limit (the first match of the fragment).
func wordStart(text string, start, limit int) int {
	if start == 0 {
		return 0
	}
	if r, _ := utf8.DecodeLastRuneInString(text[:start]); !isWordRune(r) {
		return start
	}
	for i := start; i < limit; {
		r, size := utf8.DecodeRuneInString(text[i:])
		if !isWordRune(r) {
			return i
		}
		i += size
	}
	return limit
}

// wordEnd moves end back before a partly cut word, but never before limit (the end of the
// fragment's first match) nor to start.
func wordEnd(text string, end, limit, start int) int {
	if end >= len(text) {
		return len(text)
	}
	if r, _ := utf8.DecodeRuneInString(text[end:]); !isWordRune(r) {
		return end
	}
	for i := end; i > limit && i > start; {
		r, size := utf8.DecodeLastRuneInString(text[:i])
		if !isWordRune(r) {
			return i
		}
		i -= size
	}
	return max(end, limit)
}

// trimSpace drops white space at both ends of text[start:end], never into the span keep.
func trimSpace(text string, start, end int, keep Span) (int, int) {
	for start < keep.Start {
		r, size := utf8.DecodeRuneInString(text[start:])
		if !unicode.IsSpace(r) {
			break
		}
		start += size
	}
	for end > keep.End {
		r, size := utf8.DecodeLastRuneInString(text[:end])
		if !unicode.IsSpace(r) {
			break
		}
		end -= size
	}
	return start, end
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// Token is a word of a field's text as the read model's analyzer made it: Term (lower-cased)
// from the text's bytes [Start, End).
type Token struct {
	Term       string
	Start, End int
}

// MatchSpans are the spans of the tokens that words (the analyzed search text) match: the
// same word, or, where fuzzy is set (name and brand), a word FuzzyMatch accepts. It is how
// read models without a highlighter of their own find what to mark, with the matching rules
// of the search itself.
func MatchSpans(tokens []Token, words []string, fuzzy bool) []Span {
	var out []Span
	for _, tok := range tokens {
		for _, w := range words {
			if tok.Term == w || fuzzy && FuzzyMatch(w, tok.Term) {
				out = append(out, Span{Start: tok.Start, End: tok.End})
				break
			}
		}
	}
	return out
}

// NewHighlight is the highlight of a product whose name and description matched at the given
// spans: the whole name as one fragment, the description cut by Fragments.
func NewHighlight(name string, nameSpans []Span, description string, descriptionSpans []Span) Highlight {
	return Highlight{
		Name:        Fragments(name, nameSpans, utf8.RuneCountInString(name)),
		Description: Fragments(description, descriptionSpans, HighlightFragmentRunes),
	}
}
