package readmodeltest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
)

// visibilityCases are the read-your-writes contract: VisibleVersions reports what searches
// see (not what the engine has merely accepted), tombstones included, and a VersionWaiter
// over the read model returns as soon as a version is searchable.
var visibilityCases = []fixtureCase{
	{"versions of stored products, tombstones included, none for unknown ids", false, func(t *testing.T, e *env) {
		live, gone, unknown := NewID(), NewID(), NewID()
		e.apply(Product{ID: live, Version: 3, Name: "Visible lamp"}.Snapshot(t),
			Product{ID: gone, Version: 2, Name: "Gone lamp", Deleted: true}.Snapshot(t))
		e.refresh()
		probes := []query.VersionProbe{{ID: live}, {ID: gone}, {ID: unknown}, {Route: "some search", ID: live}}
		got, err := e.Versions.VisibleVersions(e.ctx(), probes)
		if err != nil {
			t.Fatalf("VisibleVersions: %v", err)
		}
		want := map[query.VersionProbe]int64{{ID: live}: 3, {ID: gone}: 2, {Route: "some search", ID: live}: 3}
		if len(got) != len(want) {
			t.Errorf("VisibleVersions = %v, want %v", got, want)
		}
		for p, v := range want {
			if got[p] != v {
				t.Errorf("VisibleVersions[%+v] = %d, want %d (all: %v)", p, got[p], v, got)
			}
		}
	}},
	{"a version reported is a version the search shows", false, func(t *testing.T, e *env) {
		// No Refresh: the read model's own refresh (Elasticsearch's refresh interval) decides
		// when a version is searchable, and VisibleVersions must not report it earlier (a
		// real-time get would).
		id := NewID()
		for v := int64(1); v <= 4; v++ {
			name := fmt.Sprintf("Roundtrip%d kettle", v)
			e.apply(Product{ID: id, Version: v, Name: name, Category: "roundtrip"}.Snapshot(t))
			q, err := query.SearchProducts{Text: fmt.Sprintf("roundtrip%d", v), Category: "roundtrip"}.Normalize()
			if err != nil {
				t.Fatal(err)
			}
			probe := query.VersionProbe{Route: q.Hash(), ID: id}
			deadline := time.Now().Add(30 * time.Second)
			for {
				got, err := e.Versions.VisibleVersions(e.ctx(), []query.VersionProbe{probe})
				if err != nil {
					t.Fatalf("VisibleVersions: %v", err)
				}
				if got[probe] >= v {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("v%d never reported visible (last %d)", v, got[probe])
				}
				time.Sleep(5 * time.Millisecond)
			}
			if res := e.search(q); len(res.Items) != 1 || res.Items[0].Version != v || res.Items[0].Name != name {
				t.Fatalf("VisibleVersions reported v%d, but the search shows %v", v, res.Items)
			}
		}
	}},
	{"a waiter returns once the version is searchable, and reports what it did not see", false, func(t *testing.T, e *env) {
		w, err := query.NewVersionWaiter(e.Versions, query.VersionWaiterConfig{ReadModel: "contract", Interval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		id := NewID()
		e.apply(Product{ID: id, Version: 2, Name: "Waited clock", Category: "waited"}.Snapshot(t))
		q := query.SearchProducts{Text: "waited", Category: "waited"}
		c, err := query.Consistency{WaitFor: []query.WaitFor{{ID: id, Version: 2}}, Timeout: query.MaxWaitTimeout}.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		nq, _ := q.Normalize()
		lags, err := w.Wait(e.ctx(), nq.Hash(), c)
		if err != nil || len(lags) != 0 {
			t.Fatalf("Wait = %v, %v; want it to return when v2 is searchable", lags, err)
		}
		if res := e.search(q); len(res.Items) != 1 || res.Items[0].Version != 2 {
			t.Fatalf("after the wait the search shows %v", res.Items)
		}
		// A version that never comes: the lag after the timeout, an error when strict.
		c.WaitFor = []query.WaitFor{{ID: id, Version: 7}, {ID: NewID(), Version: 1}}
		c.Timeout = 150 * time.Millisecond
		c, _ = c.Normalize()
		lags, err = w.Wait(e.ctx(), nq.Hash(), c)
		if err != nil || len(lags) != 2 {
			t.Fatalf("Wait for the future = %+v, %v; want two lags", lags, err)
		}
		for _, l := range lags {
			if l.ID == id && (l.Want != 7 || l.Have != 2) || l.ID != id && (l.Want != 1 || l.Have != 0) {
				t.Errorf("lag %+v", l)
			}
		}
		c.Strict = true
		var behind *query.BehindError
		if _, err := w.Wait(e.ctx(), nq.Hash(), c); !errors.As(err, &behind) || !errors.Is(err, query.ErrReadModelBehind) || len(behind.Lags) != 2 {
			t.Fatalf("strict Wait for the future = %v, want a BehindError with two lags", err)
		}
		// A caller that gives up is not kept waiting.
		ctx, cancel := context.WithTimeout(e.ctx(), 50*time.Millisecond)
		defer cancel()
		c.Strict, c.Timeout = false, 10*time.Second
		if _, err := w.Wait(ctx, nq.Hash(), c); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait after the caller's deadline = %v", err)
		}
	}},
	{"without alias the read model is unavailable", true, func(t *testing.T, e *env) {
		_, err := e.Versions.VisibleVersions(e.ctx(), []query.VersionProbe{{ID: NewID()}})
		if !errors.Is(err, query.ErrReadModelUnavailable) {
			t.Fatalf("VisibleVersions without alias = %v, want ErrReadModelUnavailable", err)
		}
	}},
}
