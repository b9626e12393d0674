package query_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

func TestNormalizeTags(t *testing.T) {
	q, err := query.SearchProducts{Tags: []string{" sale", "eco", "sale"}}.Normalize()
	if err != nil || !slices.Equal(q.Tags, []string{"eco", "sale"}) {
		t.Fatalf("tags %q, %v; want sorted, trimmed, without repeats", q.Tags, err)
	}
	// The same filter in another order is the same search: a cursor of one serves the other.
	other, _ := query.SearchProducts{Tags: []string{"eco", "sale"}}.Normalize()
	if q.Hash() != other.Hash() {
		t.Error("the hash depends on the order of tags")
	}
	none, _ := query.SearchProducts{}.Normalize()
	if none.Hash() == q.Hash() {
		t.Error("a tags filter does not change the hash")
	}
	many := make([]string, product.MaxTags+1)
	for i := range many {
		many[i] = strings.Repeat("t", i+1)
	}
	for name, tags := range map[string][]string{
		"empty":    {"a", " "},
		"too long": {strings.Repeat("x", product.MaxTagLength+1)},
		"too many": many,
		"bad utf8": {"\xff"},
	} {
		if _, err := (query.SearchProducts{Tags: tags}).Normalize(); !errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("%s: %v, want ErrInvalidSearch", name, err)
		}
	}
}

// Cursors issued before the tags filter existed stay valid: a search without tags hashes as
// it did. The value is the hash of an empty search (relevance) computed by the release before.
func TestHashWithoutTagsIsUnchanged(t *testing.T) {
	q, err := query.SearchProducts{}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := q.Hash(), preTagsHash; got != want {
		t.Errorf("hash of an empty search %q, want %q as before tags", got, want)
	}
}

// preTagsHash is query.SearchProducts{}.Normalize().Hash() of the release before tags.
const preTagsHash = "1bE1QLuYCK-IDC5Q"
