package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// VisibleVersions answers the versions reads by id wait for (wait_for) in one query: the stored
// version of each product, tombstones included, nothing for an unknown id, whatever the route.
func TestVisibleVersions(t *testing.T) {
	db, _ := migratedDB(t)
	repo := newRepo(t, db)
	live := addProduct(t, repo, "VV-LIVE")
	gone := addProduct(t, repo, "VV-GONE")
	deleteProduct(t, repo, gone.ID())
	unknown := product.NewID(time.Now())

	probes := []query.VersionProbe{{ID: live.ID()}, {ID: gone.ID()}, {ID: unknown}, {Route: "a search", ID: live.ID()}}
	got, err := repo.VisibleVersions(context.Background(), probes)
	if err != nil {
		t.Fatal(err)
	}
	want := map[query.VersionProbe]int64{{ID: live.ID()}: 1, {ID: gone.ID()}: 2, {Route: "a search", ID: live.ID()}: 1}
	if len(got) != len(want) {
		t.Fatalf("VisibleVersions = %v, want %v", got, want)
	}
	for p, v := range want {
		if got[p] != v {
			t.Errorf("VisibleVersions[%+v] = %d, want %d", p, got[p], v)
		}
	}

	// A waiter over the repository returns at once for a version a write returned.
	w, err := query.NewVersionWaiter(repo, query.VersionWaiterConfig{ReadModel: "products"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := query.Consistency{WaitFor: []query.WaitFor{{ID: live.ID(), Version: 1}, {ID: gone.ID(), Version: 2}}, Timeout: 5 * time.Second}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if lags, err := w.Wait(context.Background(), "", c); err != nil || len(lags) != 0 {
		t.Fatalf("Wait = %v, %v", lags, err)
	}
}
