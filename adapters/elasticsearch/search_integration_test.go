package elasticsearch_test

import (
	"errors"
	"testing"

	"github.com/marketplace/catalog/application/query"
)

func TestSearchWithoutAliasIsNotAClientError(t *testing.T) {
	e := rmSetup(t, nil)
	_, err := e.search().Search(e.ctx(), query.SearchProducts{Text: "x"})
	if err == nil || errors.Is(err, query.ErrInvalidSearch) {
		t.Fatalf("Search without alias = %v, want a plain error", err)
	}
}
