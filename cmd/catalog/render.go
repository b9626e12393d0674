package main

import (
	"encoding/json"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// The CLI's rendering helpers, one of each: every command prints its tables, cells and --json
// documents through these, so the same value reads the same in every command.

// timeLayout is how a table shows a moment (always in UTC, said in the column's header).
const timeLayout = "2006-01-02 15:04:05"

// writeJSON prints v as the --json document of a command: indented by two spaces, one value,
// a trailing newline. <, > and & stay as they are: the output is read by people and jq, never
// embedded in HTML, and an operator grepping for "a<b" should find it.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// newTable returns the writer of an aligned table: columns two spaces apart.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// truncate cuts s to at most width bytes; a width of 0 or less keeps it whole. It is for
// lines the CLI builds itself (ASCII), where the exact width matters more than a marker.
func truncate(s string, width int) string {
	if width > 0 && len(s) > width {
		return s[:width]
	}
	return s
}

// shorten makes s one line (oneLine) of at most n runes, ending in "…" when it was cut: for
// free text from elsewhere (a failure reason, a note) in a table cell.
func shorten(s string, n int) string {
	s = oneLine(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// orDash shows an empty cell as "-", so columns stay aligned and "nothing" is visible.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine folds every run of white space (line breaks included) into one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// escapeBreaks shows line breaks and tabs as \r, \n and \t: for a value that must be shown
// exactly (a header) without breaking the aligned columns.
func escapeBreaks(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(s)
}
