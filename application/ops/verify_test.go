package ops_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
)

func uid(i int) string { return fmt.Sprintf("%08x-0000-7000-8000-000000000000", i) }

func verifyOK(t *testing.T, s *ops.Service, req ops.VerifyRequest) ops.VerifyReport {
	t.Helper()
	rep, err := s.Verify(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func counts(rep ops.VerifyReport) map[ops.Category]int64 {
	out := map[ops.Category]int64{}
	for _, c := range rep.Categories {
		if c.Count > 0 {
			out[c.Category] = c.Count
		}
	}
	return out
}

func sampleOf(rep ops.VerifyReport, cat ops.Category) []ops.Difference {
	for _, c := range rep.Categories {
		if c.Category == cat {
			return c.Samples
		}
	}
	return nil
}

func TestVerifyHealthyPipelineFindsNothing(t *testing.T) {
	w := newWorld()
	for i := range 100 {
		w.product(uid(i), int64(i%5+1), i%7 == 0)
		w.doc(uid(i), int64(i%5+1), i%7 == 0)
	}
	w.doc(uid(1000), 3, true) // a tombstone without a product hides nothing: no difference
	rep := verifyOK(t, w.service(ops.Config{VerifyPageSize: 7}), ops.VerifyRequest{Settle: 0, Samples: 10})
	if !rep.Consistent() || rep.Candidates != 0 || rep.Products != 100 || rep.Documents != 101 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Index != w.alias || rep.Alias != "ps" || len(rep.Categories) != len(ops.Categories) {
		t.Fatalf("report %+v", rep)
	}
	if w.byIDCalls != 0 {
		t.Errorf("re-checked %d times with nothing to re-check", w.byIDCalls)
	}
}

// Every category is found, each with the versions of both sides.
func TestVerifyCategories(t *testing.T) {
	w := newWorld()
	for i := range 50 {
		w.product(uid(i), 2, false)
		w.doc(uid(i), 2, false)
	}
	delete(w.docs, uid(3))       // missing
	w.doc(uid(5), 1, false)      // stale
	w.doc(uid(100), 1, false)    // phantom
	w.product(uid(7), 3, true)   // resurrected: tombstone in the database, live document v2
	w.product(uid(8), 3, true)   // resurrected at the same version
	w.doc(uid(8), 3, false)      //
	w.doc(uid(9), 5, false)      // ahead
	w.product(uid(10), 2, false) // same version, document deleted: stale
	w.doc(uid(10), 2, true)      //
	w.product(uid(11), 4, true)  // a deleted product with an older tombstone: stale
	w.doc(uid(11), 3, true)      //
	rep := verifyOK(t, w.service(ops.Config{VerifyPageSize: 4}), ops.VerifyRequest{Settle: 0, Samples: 10})
	want := map[ops.Category]int64{ops.CategoryMissing: 1, ops.CategoryStale: 3, ops.CategoryPhantom: 1, ops.CategoryResurrected: 2, ops.CategoryAhead: 1}
	if got := counts(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	if rep.Consistent() || rep.Differences() != 8 || rep.Candidates != 8 {
		t.Fatalf("report %+v", rep)
	}
	check := func(cat ops.Category, want ...ops.Difference) {
		t.Helper()
		if got := sampleOf(rep, cat); !reflect.DeepEqual(got, want) {
			t.Errorf("%s samples\n got %+v\nwant %+v", cat, got, want)
		}
	}
	check(ops.CategoryMissing, ops.Difference{ID: uid(3), Category: ops.CategoryMissing, InDatabase: true, DatabaseVersion: 2})
	check(ops.CategoryPhantom, ops.Difference{ID: uid(100), Category: ops.CategoryPhantom, InIndex: true, IndexVersion: 1})
	check(ops.CategoryAhead, ops.Difference{ID: uid(9), Category: ops.CategoryAhead, InDatabase: true, DatabaseVersion: 2, InIndex: true, IndexVersion: 5})
	check(ops.CategoryResurrected,
		ops.Difference{ID: uid(7), Category: ops.CategoryResurrected, InDatabase: true, DatabaseVersion: 3, DatabaseDeleted: true, InIndex: true, IndexVersion: 2},
		ops.Difference{ID: uid(8), Category: ops.CategoryResurrected, InDatabase: true, DatabaseVersion: 3, DatabaseDeleted: true, InIndex: true, IndexVersion: 3})
	check(ops.CategoryStale,
		ops.Difference{ID: uid(5), Category: ops.CategoryStale, InDatabase: true, DatabaseVersion: 2, InIndex: true, IndexVersion: 1},
		ops.Difference{ID: uid(10), Category: ops.CategoryStale, InDatabase: true, DatabaseVersion: 2, InIndex: true, IndexVersion: 2, IndexDeleted: true},
		ops.Difference{ID: uid(11), Category: ops.CategoryStale, InDatabase: true, DatabaseVersion: 4, DatabaseDeleted: true, InIndex: true, IndexVersion: 3, IndexDeleted: true})
}

// Differences that events in flight resolve during the settle delay are not reported; the
// ones that persist are, with the category they have after the delay.
func TestVerifySettleRecheck(t *testing.T) {
	w := newWorld()
	for i := range 30 {
		w.product(uid(i), 1, false)
		w.doc(uid(i), 1, false)
	}
	w.product(uid(2), 2, false) // an update in flight: arrives during the settle delay
	w.product(uid(4), 1, false) // a create in flight
	delete(w.docs, uid(4))
	w.doc(uid(200), 1, false) // a document whose product commits during the delay (live write raced the scan)
	w.product(uid(6), 3, false)
	delete(w.docs, uid(6))      // missing in the scan, then its v2 arrives: still stale after the delay
	w.product(uid(8), 2, false) // stale for good
	var recheckAt time.Time
	w.onRecheck = func(w *world) {
		recheckAt = time.Now()
		w.doc(uid(2), 2, false)
		w.doc(uid(4), 1, false)
		w.product(uid(200), 1, false)
		w.doc(uid(6), 2, false)
	}
	const settle = 150 * time.Millisecond
	start := time.Now()
	rep := verifyOK(t, w.service(ops.Config{VerifyPageSize: 8}), ops.VerifyRequest{Settle: settle, Samples: 10})
	if recheckAt.Sub(start) < settle {
		t.Errorf("re-checked %s after the start, before the settle delay of %s", recheckAt.Sub(start), settle)
	}
	if rep.Candidates != 5 {
		t.Errorf("candidates %d, want 5", rep.Candidates)
	}
	want := map[ops.Category]int64{ops.CategoryStale: 2}
	if got := counts(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v (%+v)", got, want, rep.Categories)
	}
	stale := sampleOf(rep, ops.CategoryStale)
	if len(stale) != 2 || stale[0].ID != uid(6) || stale[0].IndexVersion != 2 || stale[1].ID != uid(8) {
		t.Fatalf("stale samples %+v", stale)
	}
	if rep.Settle != settle {
		t.Errorf("settle %s", rep.Settle)
	}
}

// With more differences than VerifyMaxPending, the scan re-checks in bounded batches: every
// difference is counted, samples are the first in id order, and no batch exceeds the bound.
func TestVerifyManyDifferencesInBoundedMemory(t *testing.T) {
	w := newWorld()
	for i := range 1000 {
		w.product(uid(i), 1, false)
		if i%10 == 0 {
			w.doc(uid(i), 1, false)
		}
	}
	var mu sync.Mutex
	var phases []ops.VerifyPhase
	s := w.service(ops.Config{VerifyPageSize: 50, VerifyMaxPending: 64})
	rep, err := s.Verify(context.Background(), ops.VerifyRequest{Settle: time.Millisecond, Samples: 3}, func(p ops.VerifyProgress) {
		mu.Lock()
		defer mu.Unlock()
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := counts(rep); got[ops.CategoryMissing] != 900 || len(got) != 1 {
		t.Fatalf("counts %v", got)
	}
	m := sampleOf(rep, ops.CategoryMissing)
	if len(m) != 3 || m[0].ID != uid(1) || m[1].ID != uid(2) || m[2].ID != uid(3) {
		t.Fatalf("samples %+v", m)
	}
	if w.maxByIDBatch > 64 {
		t.Errorf("a re-check batch of %d ids, bound 64", w.maxByIDBatch)
	}
	if w.byIDCalls < 900/64 {
		t.Errorf("%d re-check batches for 900 differences with a bound of 64", w.byIDCalls)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(phases) < 3 || phases[0] != ops.PhaseScan {
		t.Errorf("phases %v", phases)
	}
}

// Re-reading documents costs requests per page of the scan, not per difference: an index
// that lost everything is re-read in one request.
func TestVerifyRereadsDocumentsByWindow(t *testing.T) {
	w := newWorld()
	for i := range 500 {
		w.product(uid(i), 1, false)
	}
	rep := verifyOK(t, w.service(ops.Config{VerifyPageSize: 100}), ops.VerifyRequest{Samples: 1})
	if counts(rep)[ops.CategoryMissing] != 500 {
		t.Fatalf("counts %v", counts(rep))
	}
	// scan: 1 empty page; re-check: 1 window
	if w.docCalls > 3 {
		t.Errorf("%d document requests for an empty index", w.docCalls)
	}

	// Scattered differences in a full index: the re-check reads one small window each.
	w = newWorld()
	for i := range 500 {
		w.product(uid(i), 2, false)
		v := int64(2)
		if i%100 == 50 {
			v = 1
		}
		w.doc(uid(i), v, false)
	}
	rep = verifyOK(t, w.service(ops.Config{VerifyPageSize: 100}), ops.VerifyRequest{Samples: 10})
	if counts(rep)[ops.CategoryStale] != 5 {
		t.Fatalf("counts %v", counts(rep))
	}
	if scan := 6; w.docCalls > scan+5*2 {
		t.Errorf("%d document requests: more than two per scattered difference", w.docCalls-scan)
	}
}

func TestVerifyRefusals(t *testing.T) {
	w := newWorld()
	w.alias = ""
	if _, err := w.service(ops.Config{}).Verify(context.Background(), ops.DefaultVerifyRequest(), nil); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Errorf("no alias: err = %v", err)
	}
	w = newWorld()
	for _, req := range []ops.VerifyRequest{{Settle: -1}, {Settle: time.Hour}, {Samples: -1}, {Samples: 1001}} {
		if _, err := w.service(ops.Config{}).Verify(context.Background(), req, nil); !errors.Is(err, ops.ErrInvalid) {
			t.Errorf("%+v: err = %v", req, err)
		}
	}
	w.docsErr = errors.New("search cluster down")
	w.product(uid(1), 1, false)
	if _, err := w.service(ops.Config{}).Verify(context.Background(), ops.DefaultVerifyRequest(), nil); !errors.Is(err, w.docsErr) {
		t.Errorf("read failure: err = %v", err)
	}
}

func TestVerifyOneAtATime(t *testing.T) {
	w := newWorld()
	w.product(uid(1), 1, false)
	w.docsBlock, w.docsCalled = make(chan struct{}), make(chan struct{})
	called := w.docsCalled
	s := w.service(ops.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Verify(ctx, ops.DefaultVerifyRequest(), nil); done <- err }()
	<-called
	if _, err := s.Verify(context.Background(), ops.DefaultVerifyRequest(), nil); !errors.Is(err, ops.ErrVerifyRunning) {
		t.Errorf("second verify: err = %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled verify: err = %v", err)
	}
	w.mu.Lock()
	w.docsBlock = nil
	w.mu.Unlock()
	if _, err := s.Verify(context.Background(), ops.VerifyRequest{Samples: 1}, nil); err != nil {
		t.Errorf("verify after the first ended: %v", err)
	}
}

func TestMergeJoin(t *testing.T) {
	ctx := context.Background()
	stream := func(ids ...string) rebuild.PageReader {
		m := map[string]rebuild.DocVersion{}
		for _, id := range ids {
			m[id] = rebuild.DocVersion{ID: id, Version: 1}
		}
		return func(_ context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
			return page(m, after, limit), nil
		}
	}
	var got []string
	err := rebuild.MergeJoin(ctx, stream("a", "c", "d", "f"), stream("b", "c", "e", "f", "g"), 2, func(l, r *rebuild.DocVersion) error {
		switch {
		case l == nil:
			got = append(got, "+"+r.ID)
		case r == nil:
			got = append(got, "-"+l.ID)
		default:
			got = append(got, "="+l.ID)
		}
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[-a +b =c -d +e =f +g]" {
		t.Fatalf("merge %v, err %v", got, err)
	}

	unordered := func(_ context.Context, after string, _ int) ([]rebuild.DocVersion, error) {
		if after == "" {
			return []rebuild.DocVersion{{ID: "b"}, {ID: "a"}}, nil
		}
		return nil, nil
	}
	if err := rebuild.MergeJoin(ctx, unordered, stream(), 10, func(_, _ *rebuild.DocVersion) error { return nil }); err == nil {
		t.Error("an unordered stream was merged")
	}

	boom := errors.New("boom")
	failing := func(context.Context, string, int) ([]rebuild.DocVersion, error) { return nil, boom }
	if err := rebuild.MergeJoin(ctx, stream("a"), failing, 10, func(_, _ *rebuild.DocVersion) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	if err := rebuild.MergeJoin(ctx, stream("a"), stream("a"), 10, func(_, _ *rebuild.DocVersion) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := rebuild.MergeJoin(cctx, stream("a"), stream("b"), 10, func(_, _ *rebuild.DocVersion) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
