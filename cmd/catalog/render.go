package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
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

// writeTable writes rows aligned in columns, indented; columns whose bit is set in
// rightAligned (bit 0 is the first column) are aligned right, so digits line up.
func writeTable(b *strings.Builder, indent string, rows [][]string, rightAligned uint) {
	if len(rows) == 0 {
		return
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		line.WriteString(indent)
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			if rightAligned&(1<<i) != 0 {
				fmt.Fprintf(&line, "%*s", widths[i], c)
			} else {
				fmt.Fprintf(&line, "%-*s", widths[i], c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// shortDuration shows whole seconds from a second on and milliseconds below.
func shortDuration(d time.Duration) string {
	if d >= time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

// plural picks the word that goes with n: one for exactly 1, many otherwise (0 included).
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// groupDigits writes 1234567 as 1,234,567: document counts are read at a glance.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
