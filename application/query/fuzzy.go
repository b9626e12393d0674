package query

import "unicode/utf8"

// Typo tolerance. Every read model matches the words of the search text against product
// names and brands with the same bounds, so that "wireles speakr" finds the wireless speaker
// on every engine. Description and category match exactly: long free text would turn a
// fuzzy word into noise, and categories are a closed vocabulary clients pick from facets.
const (
	// FuzzyPrefixLength is how many leading characters of a word must be typed correctly
	// for a fuzzy match. Typos rarely hit the first letter, and the prefix keeps the engines
	// from scanning the whole term dictionary for every word.
	FuzzyPrefixLength = 1
	// FuzzyMaxExpansions bounds how many indexed words one fuzzy word may expand to on
	// Elasticsearch (its max_expansions), which keeps a short word from turning into
	// thousands of clauses on a large catalogue. Bleve and the in-memory read model do not
	// cap expansions; on a small catalogue the two agree.
	FuzzyMaxExpansions = 50
)

// Fuzziness is the number of edits a word of the search text (lower-cased, as the analyzer
// made it) may be away from a product's word and still match: none for words of one or two
// characters, one for three to five, two from six on (Elasticsearch's fuzziness AUTO:3,6).
// Characters are Unicode code points, as the engines count them.
func Fuzziness(word string) int {
	switch n := utf8.RuneCountInString(word); {
	case n < 3:
		return 0
	case n < 6:
		return 1
	default:
		return 2
	}
}

// FuzzyMatch reports whether token, a lower-cased word of a product's name or brand,
// matches word, a lower-cased word of the search text, under the typo-tolerance rules: equal,
// or with the same first FuzzyPrefixLength characters and at most Fuzziness(word) edits,
// where an edit inserts, deletes or substitutes one character or swaps two adjacent ones (the
// optimal string alignment distance, which Lucene's and Bleve's automata with transpositions
// compute). It is what the in-memory read model matches with and what every adapter marks
// when it highlights a name.
func FuzzyMatch(word, token string) bool {
	if word == token {
		return true
	}
	maxEdits := Fuzziness(word)
	if maxEdits == 0 {
		return false
	}
	a, b := []rune(word), []rune(token)
	if len(a) < FuzzyPrefixLength || len(b) < FuzzyPrefixLength {
		return false
	}
	for i := range FuzzyPrefixLength {
		if a[i] != b[i] {
			return false
		}
	}
	return editDistanceAtMost(a[FuzzyPrefixLength:], b[FuzzyPrefixLength:], maxEdits)
}

// editDistanceAtMost reports whether the optimal string alignment distance of a and b is at
// most limit. Words are short, so the full table is cheap; the length check skips it for
// most non-matches.
func editDistanceAtMost(a, b []rune, limit int) bool {
	if d := len(a) - len(b); d > limit || -d > limit {
		return false
	}
	// rows[i][j] is the distance between a[:i] and b[:j].
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)] <= limit
}
