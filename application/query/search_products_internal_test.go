package query

import (
	"strings"
	"testing"
)

func TestCountTermsIsConservative(t *testing.T) {
	for text, want := range map[string]int{
		"":                        0,
		"wireless speaker":        2,
		"Wireless wireless":       1,
		"a.b c,d 1=1-- x_y":       7,
		"中文 日本語":                  5,
		"中中中":                     1,
		strings.Repeat("a ", 250): 1,
		"' OR 1=1--":              2,
		"café ünïcödé":            2,
	} {
		if got := CountTerms(text); got != want {
			t.Errorf("CountTerms(%q) = %d, want %d", text, got, want)
		}
	}
}
