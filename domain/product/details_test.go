package product_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/marketplace/catalog/domain/product"
)

// input is the raw material of NewDetails, so that table cases can change one field.
type input struct {
	sku, name, description, category, brand string
	amount                                  int64
	currency                                string
	stock                                   int64
	attributes                              map[string]string
}

func validInput() input {
	return input{
		sku: "SKU-1", name: "Espresso machine", description: "Makes coffee.", category: "kitchen", brand: "Acme",
		amount: 19999, currency: "EUR", stock: 5, attributes: map[string]string{"color": "red", "voltage": "230V"},
	}
}

func (in input) details() (product.Details, error) {
	return product.NewDetails(in.sku, in.name, in.description, in.category, in.brand, in.amount, in.currency, in.stock, in.attributes)
}

func attrs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = "v"
	}
	return m
}

func fieldNames(t *testing.T, err error) []string {
	t.Helper()
	var ve *product.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *product.ValidationError", err, err)
	}
	names := make([]string, 0, len(ve.Fields))
	for _, f := range ve.Fields {
		if f.Reason == "" {
			t.Errorf("field %q has an empty reason", f.Field)
		}
		names = append(names, f.Field)
	}
	slices.Sort(names)
	return names
}

func TestNewDetailsValidation(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("é", n) } // multi-byte: limits count runes, not bytes
	tests := []struct {
		name   string
		mutate func(*input)
		want   []string // sorted field names; nil means valid
	}{
		{"valid", func(*input) {}, nil},
		{"valid without optional fields", func(in *input) {
			in.description, in.category, in.brand, in.attributes = "", "", "", nil
		}, nil},
		{"valid at every upper limit", func(in *input) {
			in.sku = strings.Repeat("A", product.MaxSKULength)
			in.name = long(product.MaxNameLength)
			in.description = long(product.MaxDescriptionLength)
			in.category = long(product.MaxCategoryLength)
			in.brand = long(product.MaxBrandLength)
			in.amount = product.MaxAmount
			in.stock = product.MaxStock
			in.attributes = attrs(product.MaxAttributes)
			in.attributes[long(product.MaxAttributeKey)] = long(product.MaxAttributeValue)
			delete(in.attributes, "k00")
		}, nil},
		{"valid at lower limits", func(in *input) { in.amount, in.stock = 0, 0 }, nil},
		{"sku with every allowed character", func(in *input) { in.sku = "a0._-/Z9" }, nil},
		{"sku starting with a digit", func(in *input) { in.sku = "0abc" }, nil},

		{"sku empty", func(in *input) { in.sku = "" }, []string{"sku"}},
		{"sku blank", func(in *input) { in.sku = " \t\n" }, []string{"sku"}},
		{"sku too long", func(in *input) { in.sku = strings.Repeat("A", product.MaxSKULength+1) }, []string{"sku"}},
		{"sku starting with a dash", func(in *input) { in.sku = "-A" }, []string{"sku"}},
		{"sku starting with a dot", func(in *input) { in.sku = ".A" }, []string{"sku"}},
		{"sku starting with a slash", func(in *input) { in.sku = "/A" }, []string{"sku"}},
		{"sku with inner space", func(in *input) { in.sku = "A B" }, []string{"sku"}},
		{"sku with non-ASCII letter", func(in *input) { in.sku = "SKÜ" }, []string{"sku"}},
		{"sku with NUL", func(in *input) { in.sku = "A\x00B" }, []string{"sku"}},
		{"sku with invalid UTF-8", func(in *input) { in.sku = "A\xffB" }, []string{"sku"}},
		{"sku with newline inside", func(in *input) { in.sku = "A\nB" }, []string{"sku"}},

		{"name empty", func(in *input) { in.name = "" }, []string{"name"}},
		{"name blank", func(in *input) { in.name = "   " }, []string{"name"}},
		{"name too long", func(in *input) { in.name = long(product.MaxNameLength + 1) }, []string{"name"}},
		{"name invalid UTF-8", func(in *input) { in.name = "caf\xc3" }, []string{"name"}},
		{"name with NUL", func(in *input) { in.name = "a\x00b" }, []string{"name"}},

		{"description too long", func(in *input) { in.description = long(product.MaxDescriptionLength + 1) }, []string{"description"}},
		{"description invalid UTF-8", func(in *input) { in.description = "\xed\xa0\x80" }, []string{"description"}}, // a UTF-16 surrogate
		{"description with NUL", func(in *input) { in.description = "\x00" }, []string{"description"}},
		{"category too long", func(in *input) { in.category = long(product.MaxCategoryLength + 1) }, []string{"category"}},
		{"category invalid UTF-8", func(in *input) { in.category = "\x80" }, []string{"category"}},
		{"category with NUL", func(in *input) { in.category = "a\x00" }, []string{"category"}},
		{"brand too long", func(in *input) { in.brand = long(product.MaxBrandLength + 1) }, []string{"brand"}},
		{"brand invalid UTF-8", func(in *input) { in.brand = "\xfe" }, []string{"brand"}},
		{"brand with NUL", func(in *input) { in.brand = "\x00a" }, []string{"brand"}},

		{"amount negative", func(in *input) { in.amount = -1 }, []string{"price.amount"}},
		{"amount min int64", func(in *input) { in.amount = math.MinInt64 }, []string{"price.amount"}},
		{"amount too large", func(in *input) { in.amount = product.MaxAmount + 1 }, []string{"price.amount"}},
		{"amount max int64", func(in *input) { in.amount = math.MaxInt64 }, []string{"price.amount"}},
		{"currency empty", func(in *input) { in.currency = "" }, []string{"price.currency"}},
		{"currency lower case", func(in *input) { in.currency = "eur" }, []string{"price.currency"}},
		{"currency mixed case", func(in *input) { in.currency = "Eur" }, []string{"price.currency"}},
		{"currency four letters", func(in *input) { in.currency = "XXXX" }, []string{"price.currency"}},
		{"currency two letters", func(in *input) { in.currency = "EU" }, []string{"price.currency"}},
		{"currency unknown", func(in *input) { in.currency = "ABC" }, []string{"price.currency"}},
		{"currency XXX (no currency)", func(in *input) { in.currency = "XXX" }, []string{"price.currency"}},
		{"currency precious metal", func(in *input) { in.currency = "XAU" }, []string{"price.currency"}},
		{"currency with spaces", func(in *input) { in.currency = " EUR" }, []string{"price.currency"}},

		{"stock negative", func(in *input) { in.stock = -1 }, []string{"stock"}},
		{"stock too large", func(in *input) { in.stock = product.MaxStock + 1 }, []string{"stock"}},
		{"stock min int64", func(in *input) { in.stock = math.MinInt64 }, []string{"stock"}},

		{"too many attributes", func(in *input) { in.attributes = attrs(product.MaxAttributes + 1) }, []string{"attributes"}},
		{"attribute key empty", func(in *input) { in.attributes = map[string]string{"": "x"} }, []string{"attributes"}},
		{"attribute key blank", func(in *input) { in.attributes = map[string]string{"  ": "x"} }, []string{"attributes"}},
		{"attribute key too long", func(in *input) {
			in.attributes = map[string]string{strings.Repeat("k", product.MaxAttributeKey+1): "x"}
		}, []string{"attributes." + strings.Repeat("k", product.MaxAttributeKey+1)}},
		{"attribute value too long", func(in *input) {
			in.attributes = map[string]string{"color": long(product.MaxAttributeValue + 1)}
		}, []string{"attributes.color"}},
		{"attribute value invalid UTF-8", func(in *input) { in.attributes = map[string]string{"color": "r\xffd"} }, []string{"attributes.color"}},
		{"attribute value with NUL", func(in *input) { in.attributes = map[string]string{"color": "r\x00d"} }, []string{"attributes.color"}},
		{"attribute key with NUL", func(in *input) { in.attributes = map[string]string{"a\x00": "x"} }, []string{"attributes.a\x00"}},
		{"attribute key invalid UTF-8", func(in *input) { in.attributes = map[string]string{"a\xff": "x"} }, []string{"attributes.a\xff"}},
		{"attribute key and value both invalid", func(in *input) {
			in.attributes = map[string]string{strings.Repeat("k", product.MaxAttributeKey+1): "\x00"}
		}, []string{"attributes." + strings.Repeat("k", product.MaxAttributeKey+1), "attributes." + strings.Repeat("k", product.MaxAttributeKey+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := validInput()
			tt.mutate(&in)
			d, err := in.details()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("NewDetails: unexpected error: %v", err)
				}
				if d.SKU != strings.TrimSpace(in.sku) || d.Name != strings.TrimSpace(in.name) || d.Description != in.description ||
					d.Category != in.category || d.Brand != in.brand || d.Price.Amount() != in.amount ||
					d.Price.Currency() != in.currency || d.Stock != in.stock || len(d.Attributes) != len(in.attributes) {
					t.Fatalf("NewDetails returned %+v for %+v", d, in)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewDetails: no error, want errors on %v", tt.want)
			}
			if !errors.Is(err, product.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			if errors.Is(err, product.ErrVersionConflict) || errors.Is(err, product.ErrNotFound) {
				t.Errorf("validation error matches an unrelated sentinel: %v", err)
			}
			if got := fieldNames(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("field errors = %q, want %q (err: %v)", got, tt.want, err)
			}
			if d.SKU != "" || d.Attributes != nil {
				t.Errorf("NewDetails returned non-zero details with an error: %+v", d)
			}
		})
	}
}

func TestNewDetailsReportsEveryFieldAtOnce(t *testing.T) {
	t.Parallel()
	_, err := product.NewDetails("", " ", "bad\xff", strings.Repeat("c", product.MaxCategoryLength+1), "a\x00b",
		-5, "eur", -1, attrs(product.MaxAttributes+1))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{"attributes", "brand", "category", "description", "name", "price.amount", "price.currency", "sku", "stock"}
	if got := fieldNames(t, err); !slices.Equal(got, want) {
		t.Fatalf("fields = %q, want %q", got, want)
	}
	if !errors.Is(err, product.ErrInvalid) {
		t.Fatal("errors.Is(err, ErrInvalid) = false")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid product: ") {
		t.Errorf("message %q lacks the prefix", msg)
	}
	for _, f := range want {
		if !strings.Contains(msg, f+": ") {
			t.Errorf("message %q does not name %s", msg, f)
		}
	}
	// Wrapping keeps both the sentinel and the field list reachable.
	wrapped := fmt.Errorf("create product: %w", err)
	var ve *product.ValidationError
	if !errors.Is(wrapped, product.ErrInvalid) || !errors.As(wrapped, &ve) || len(ve.Fields) != len(want) {
		t.Fatalf("wrapped validation error lost its identity: %v", wrapped)
	}
}

func TestNewDetailsTrimsSKUAndName(t *testing.T) {
	t.Parallel()
	in := validInput()
	in.sku, in.name = "  SKU-9\t", "\n Kettle  "
	d, err := in.details()
	if err != nil {
		t.Fatal(err)
	}
	if d.SKU != "SKU-9" || d.Name != "Kettle" {
		t.Fatalf("sku %q name %q, want trimmed", d.SKU, d.Name)
	}
}

func TestNewDetailsCopiesAttributes(t *testing.T) {
	t.Parallel()
	in := validInput()
	d, err := in.details()
	if err != nil {
		t.Fatal(err)
	}
	in.attributes["color"] = "blue"
	in.attributes["new"] = "x"
	if d.Attributes["color"] != "red" || len(d.Attributes) != 2 {
		t.Fatalf("details alias the caller's map: %v", d.Attributes)
	}
}

func TestNewMoney(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount   int64
		currency string
		want     []string
	}{
		{0, "EUR", nil},
		{1999, "USD", nil},
		{product.MaxAmount, "JPY", nil},
		{-1, "EUR", []string{"price.amount"}},
		{product.MaxAmount + 1, "EUR", []string{"price.amount"}},
		{1, "eur", []string{"price.currency"}},
		{1, "XXXX", []string{"price.currency"}},
		{1, "", []string{"price.currency"}},
		{-1, "usd", []string{"price.amount", "price.currency"}},
	}
	for _, tt := range tests {
		m, err := product.NewMoney(tt.amount, tt.currency)
		if tt.want == nil {
			if err != nil || m.Amount() != tt.amount || m.Currency() != tt.currency {
				t.Errorf("NewMoney(%d, %q) = %v, %v", tt.amount, tt.currency, m, err)
			}
			continue
		}
		if !errors.Is(err, product.ErrInvalid) {
			t.Errorf("NewMoney(%d, %q): err %v, want ErrInvalid", tt.amount, tt.currency, err)
			continue
		}
		if got := fieldNames(t, err); !slices.Equal(got, tt.want) {
			t.Errorf("NewMoney(%d, %q) fields %q, want %q", tt.amount, tt.currency, got, tt.want)
		}
		if m != (product.Money{}) {
			t.Errorf("NewMoney(%d, %q) returned %v with an error", tt.amount, tt.currency, m)
		}
	}
}

func TestIsCurrency(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"EUR", "USD", "GBP", "JPY", "CHF", "PLN", "SEK", "ZAR"} {
		if !product.IsCurrency(c) {
			t.Errorf("IsCurrency(%q) = false", c)
		}
	}
	for _, c := range []string{"", "eur", "Eur", "EURO", "XXXX", "EU", "E", "XXX", "XAU", "ABC", " EUR", "EUR ", "E\x00R", "ÉUR"} {
		if product.IsCurrency(c) {
			t.Errorf("IsCurrency(%q) = true", c)
		}
	}
}

// FuzzNewDetails checks that NewDetails never panics, that every failure is a ValidationError
// naming at least one field, and that accepted details are valid again (validation is stable).
func FuzzNewDetails(f *testing.F) {
	f.Add("SKU-1", "Name", "desc", "cat", "brand", int64(100), "EUR", int64(1), "color", "red")
	f.Add("", "", "", "", "", int64(-1), "eur", int64(-1), "", "")
	f.Add(" a/b.c_d-e ", "  x  ", "\x00", "\xff", strings.Repeat("b", 101), product.MaxAmount+1, "XXXX", product.MaxStock+1, "k\x00", "\xc3")
	f.Add("A", strings.Repeat("é", product.MaxNameLength+1), "", strings.Repeat("c", product.MaxCategoryLength), "", product.MaxAmount, "JPY", product.MaxStock, strings.Repeat("k", product.MaxAttributeKey), "v")
	f.Add("A\nB", "\t", "", "", "", int64(math.MinInt64), "US", int64(math.MaxInt64), " ", "x")
	f.Fuzz(func(t *testing.T, sku, name, desc, cat, brand string, amount int64, currency string, stock int64, key, value string) {
		attrs := map[string]string{key: value}
		d, err := product.NewDetails(sku, name, desc, cat, brand, amount, currency, stock, attrs)
		if err != nil {
			if !errors.Is(err, product.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			var ve *product.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("error %v is not a non-empty ValidationError", err)
			}
			_ = err.Error()
			return
		}
		if d.SKU == "" || d.Name == "" || d.SKU != strings.TrimSpace(d.SKU) || d.Name != strings.TrimSpace(d.Name) {
			t.Fatalf("accepted sku %q name %q", d.SKU, d.Name)
		}
		for _, s := range []string{d.SKU, d.Name, d.Description, d.Category, d.Brand, key, value} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("accepted invalid text %q", s)
			}
		}
		if d.Price.Amount() < 0 || d.Price.Amount() > product.MaxAmount || !product.IsCurrency(d.Price.Currency()) ||
			d.Stock < 0 || d.Stock > product.MaxStock {
			t.Fatalf("accepted out-of-range numbers: %+v", d)
		}
		again, err := product.NewDetails(d.SKU, d.Name, d.Description, d.Category, d.Brand, d.Price.Amount(), d.Price.Currency(), d.Stock, d.Attributes)
		if err != nil {
			t.Fatalf("accepted details do not validate again: %v", err)
		}
		if again.SKU != d.SKU || again.Name != d.Name || again.Attributes[key] != value {
			t.Fatalf("validation is not stable: %+v vs %+v", d, again)
		}
	})
}

func TestNewDetailsTags(t *testing.T) {
	t.Parallel()
	in := validInput()
	d, err := product.NewDetails(in.sku, in.name, in.description, in.category, in.brand, in.amount, in.currency, in.stock, in.attributes,
		" sale ", "Eco", "日本")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Tags, []string{"sale", "Eco", "日本"}) {
		t.Fatalf("tags %q: want trimmed, in the client's order, case kept", d.Tags)
	}
	none, err := in.details()
	if err != nil || none.Tags == nil || len(none.Tags) != 0 {
		t.Fatalf("no tags: %q, %v; want an empty list", none.Tags, err)
	}

	many := make([]string, product.MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	for name, c := range map[string]struct {
		tags  []string
		field string
	}{
		"too many":      {many, "tags"},
		"empty":         {[]string{"a", "  "}, "tags[1]"},
		"too long":      {[]string{strings.Repeat("é", product.MaxTagLength+1)}, "tags[0]"},
		"comma":         {[]string{"red,blue"}, "tags[0]"},
		"control":       {[]string{"a\tb"}, "tags[0]"},
		"invalid utf-8": {[]string{"a\xffb"}, "tags[0]"},
		"duplicate":     {[]string{"sale", " sale"}, "tags[1]"},
	} {
		_, err := product.NewDetails(in.sku, in.name, in.description, in.category, in.brand, in.amount, in.currency, in.stock, in.attributes, c.tags...)
		if got := fieldNames(t, err); !slices.Equal(got, []string{c.field}) {
			t.Errorf("%s: fields %q, want [%s]", name, got, c.field)
		}
	}
	exact := strings.Repeat("é", product.MaxTagLength)
	if _, err := product.NewDetails(in.sku, in.name, in.description, in.category, in.brand, in.amount, in.currency, in.stock, in.attributes, exact); err != nil {
		t.Errorf("a tag of exactly %d characters: %v", product.MaxTagLength, err)
	}
	// Tags are reported with the other fields, in one round.
	_, err = product.NewDetails("", in.name, in.description, in.category, in.brand, in.amount, in.currency, in.stock, in.attributes, "a,b")
	if got := fieldNames(t, err); !slices.Equal(got, []string{"sku", "tags[0]"}) {
		t.Errorf("fields %q, want sku and tags[0]", got)
	}
}

// History is not re-validated: a value valid under the rules of the release that wrote it
// stays readable when a rule is tightened (here: a name longer than today's limit, a
// currency no longer in the list).
func TestUnmarshalDetailsFromHistoryTrustsHistory(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 300)
	attrs := map[string]string{"k": "v"}
	tags := []string{"a"}
	d := product.UnmarshalDetailsFromHistory("legacy sku with spaces", long, "", "", "", 100, "DEM", 1, attrs, tags)
	if d.Name != long || d.SKU != "legacy sku with spaces" || d.Price.Currency() != "DEM" || d.Price.Amount() != 100 {
		t.Fatalf("details %+v changed on the way in", d)
	}
	attrs["k"], tags[0] = "changed", "changed"
	if d.Attributes["k"] != "v" || d.Tags[0] != "a" {
		t.Fatal("details alias the caller's map or slice")
	}
	empty := product.UnmarshalDetailsFromHistory("S", "n", "", "", "", 0, "EUR", 0, nil, nil)
	if empty.Attributes == nil || empty.Tags == nil {
		t.Fatal("absent attributes and tags must read as empty, not nil")
	}
	if _, err := product.NewDetails("S", long, "", "", "", 100, "EUR", 1, nil); err == nil {
		t.Fatal("the same name must still be refused in a command")
	}
}
