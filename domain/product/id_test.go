package product_test

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

func TestNewIDIsUUIDv7(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	seen := make(map[product.ID]bool, 10000)
	for range 10000 {
		id := product.NewID(now)
		s := id.String()
		if len(s) != 36 || s != strings.ToLower(s) {
			t.Fatalf("%q is not canonical", s)
		}
		parsed, err := product.ParseID(s)
		if err != nil || parsed != id {
			t.Fatalf("ParseID(%q) = %q, %v", s, parsed, err)
		}
		if s[14] != '7' {
			t.Fatalf("%q: version nibble %c, want 7", s, s[14])
		}
		if !strings.ContainsRune("89ab", rune(s[19])) {
			t.Fatalf("%q: variant nibble %c, want RFC 4122 (8, 9, a or b)", s, s[19])
		}
		ms, err := strconv.ParseUint(strings.ReplaceAll(s[:13], "-", ""), 16, 64)
		if err != nil || int64(ms) != now.UnixMilli() {
			t.Fatalf("%q: timestamp %d, want %d", s, ms, now.UnixMilli())
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestNewIDIsTimeOrdered(t *testing.T) {
	t.Parallel()
	prev := product.NewID(t0)
	for i := 1; i < 100; i++ {
		next := product.NewID(t0.Add(time.Duration(i) * time.Millisecond))
		if next <= prev {
			t.Fatalf("id %q of a later millisecond sorts before %q", next, prev)
		}
		prev = next
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	const canonical = "0194f1a2-7b3c-7d4e-8f50-123456789abc"
	valid := map[string]product.ID{
		canonical:                              canonical,
		strings.ToUpper(canonical):             canonical,
		"0194F1A2-7b3c-7D4E-8f50-123456789ABC": canonical,
		"00000000-0000-0000-0000-000000000000": "00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff": "ffffffff-ffff-ffff-ffff-ffffffffffff",
	}
	for in, want := range valid {
		got, err := product.ParseID(in)
		if err != nil || got != want {
			t.Errorf("ParseID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	invalid := []string{
		"",
		"not-a-uuid",
		"0194f1a27b3c7d4e8f50123456789abc",       // no dashes
		"{0194f1a2-7b3c-7d4e-8f50-123456789abc}", // braces
		"urn:uuid:0194f1a2-7b3c-7d4e-8f50-123456789abc",
		"0194f1a2-7b3c-7d4e-8f50-123456789ab",     // 35 characters
		"0194f1a2-7b3c-7d4e-8f50-123456789abcd",   // 37 characters
		"0194f1a2-7b3c-7d4e-8f50-123456789abg",    // not hex
		"0194f1a2_7b3c_7d4e_8f50_123456789abc",    // wrong separators
		"0194f1a-27b3c-7d4e-8f50-123456789abc",    // dash moved
		" 0194f1a2-7b3c-7d4e-8f50-123456789ab",    // leading space
		"0194f1a2-7b3c-7d4e-8f50-123456789ab ",    // trailing space
		"0194f1a2-7b3c-7d4e-8f50-12345678-abc",    // extra dash inside a group
		"0194f1a2-7b3c-7d4e-8f50-1234567--abc",    // two extra dashes
		"0194f1a2-7b3c-7d4e-8f50-+23456789abc",    // sign
		"0194f1a2-7b3c-7d4e-8f50-123456789a\x00c", // NUL
		"0194f1a2-7b3c-7d4e-8f50-123456789aéc"[:36],
		"g194f1a2-7b3c-7d4e-8f50-123456789abc",
	}
	for _, in := range invalid {
		got, err := product.ParseID(in)
		if !errors.Is(err, product.ErrInvalidID) || got != "" {
			t.Errorf("ParseID(%q) = %q, %v; want ErrInvalidID", in, got, err)
		}
	}
}

// FuzzParseID checks that ParseID never panics and that an accepted id is the canonical form of
// its input: 36 characters, lower case, the same text but for case, and a fixed point.
func FuzzParseID(f *testing.F) {
	f.Add("0194f1a2-7b3c-7d4e-8f50-123456789abc")
	f.Add("0194F1A2-7B3C-7D4E-8F50-123456789ABC")
	f.Add("0194f1a2-7b3c-7d4e-8f50-12345678-abc")
	f.Add("")
	f.Add("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz")
	f.Add(string(product.NewID(time.Now())))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := product.ParseID(s)
		if err != nil {
			if !errors.Is(err, product.ErrInvalidID) || id != "" {
				t.Fatalf("ParseID(%q) = %q, %v", s, id, err)
			}
			return
		}
		c := id.String()
		if len(c) != 36 || c != strings.ToLower(c) || !strings.EqualFold(c, s) {
			t.Fatalf("ParseID(%q) = %q is not its canonical form", s, c)
		}
		if _, err := hex.DecodeString(strings.ReplaceAll(c, "-", "")); err != nil || strings.Count(c, "-") != 4 {
			t.Fatalf("ParseID(%q) = %q is not a UUID", s, c)
		}
		again, err := product.ParseID(c)
		if err != nil || again != id {
			t.Fatalf("ParseID is not idempotent on %q: %q, %v", c, again, err)
		}
	})
}
