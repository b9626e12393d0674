package query_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// countingVersions is a read model whose versions the test sets, counting the checks.
type countingVersions struct {
	mu       sync.Mutex
	versions map[product.ID]int64
	fail     error
	checks   atomic.Int64
	maxBatch atomic.Int64
}

func (c *countingVersions) set(id product.ID, v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.versions[id] = v
}

func (c *countingVersions) VisibleVersions(_ context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	c.checks.Add(1)
	if n := int64(len(probes)); n > c.maxBatch.Load() {
		c.maxBatch.Store(n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	out := map[query.VersionProbe]int64{}
	for _, p := range probes {
		if v, ok := c.versions[p.ID]; ok {
			out[p] = v
		}
	}
	return out, nil
}

func newWaiter(t *testing.T, r query.VisibleVersionsReader, interval time.Duration) *query.VersionWaiter {
	t.Helper()
	w, err := query.NewVersionWaiter(r, query.VersionWaiterConfig{ReadModel: "test", Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func consistency(t *testing.T, timeout time.Duration, ws ...query.WaitFor) query.Consistency {
	t.Helper()
	c, err := query.Consistency{WaitFor: ws, Timeout: timeout}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Many reads waiting at once cost one batched check per interval, not one request each: the
// read model is not hammered however many clients wait.
func TestVersionWaiterBatchesEveryWaitingRead(t *testing.T) {
	t.Parallel()
	rm := &countingVersions{versions: map[product.ID]int64{}}
	const interval = 20 * time.Millisecond
	w := newWaiter(t, rm, interval)
	const readers = 200
	ids := make([]product.ID, readers)
	for i := range ids {
		ids[i] = product.NewID(time.Now())
	}
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	start := time.Now()
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lags, err := w.Wait(context.Background(), "", consistency(t, 10*time.Second, query.WaitFor{ID: ids[i], Version: 2}))
			if err != nil || len(lags) > 0 {
				errs <- errors.Join(err, errors.New("lags"))
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // everyone waits while nothing is visible
	for _, id := range ids {
		rm.set(id, 2)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a reader did not see its version: %v", err)
	}
	elapsed := time.Since(start)
	// One check per interval while anyone waits, plus the first of each idle-to-busy start;
	// the margin covers a loaded machine's late timers, far below one check per reader.
	if limit := int64(elapsed/interval) + 5; rm.checks.Load() > limit {
		t.Fatalf("%d checks for %d readers in %s; want at most %d (one per %s)", rm.checks.Load(), readers, elapsed, limit, interval)
	}
	if rm.maxBatch.Load() < 2 {
		t.Fatalf("largest check asked for %d versions; waiting reads were not batched", rm.maxBatch.Load())
	}
	// Nobody waits: the checker stops.
	before := rm.checks.Load()
	time.Sleep(5 * interval)
	if rm.checks.Load() != before {
		t.Fatalf("%d checks while nobody waited", rm.checks.Load()-before)
	}
}

// A failing check is retried at the next interval; the read's timeout bounds the wait.
func TestVersionWaiterRetriesFailedChecks(t *testing.T) {
	t.Parallel()
	id := product.NewID(time.Now())
	rm := &countingVersions{versions: map[product.ID]int64{id: 3}, fail: errors.New("cluster unreachable")}
	w := newWaiter(t, rm, 5*time.Millisecond)
	go func() {
		time.Sleep(50 * time.Millisecond)
		rm.mu.Lock()
		rm.fail = nil
		rm.mu.Unlock()
	}()
	lags, err := w.Wait(context.Background(), "", consistency(t, 10*time.Second, query.WaitFor{ID: id, Version: 3}))
	if err != nil || len(lags) != 0 {
		t.Fatalf("Wait = %v, %v; want the version once the checks succeed", lags, err)
	}
	if rm.checks.Load() < 2 {
		t.Fatalf("%d checks; the failed one was not retried", rm.checks.Load())
	}

	rm.mu.Lock()
	rm.fail = errors.New("still down")
	rm.mu.Unlock()
	lags, err = w.Wait(context.Background(), "", consistency(t, 30*time.Millisecond, query.WaitFor{ID: id, Version: 4}))
	if err != nil || len(lags) != 1 || lags[0] != (query.Lag{ID: id, Want: 4, Have: 0}) {
		t.Fatalf("Wait while checks fail = %+v, %v; want the lag after the timeout", lags, err)
	}
}

func TestWaitForParsingAndLimits(t *testing.T) {
	t.Parallel()
	id := product.NewID(time.Now())
	for _, bad := range []string{"", "x", string(id), string(id) + ":", string(id) + ":0", string(id) + ":-1", string(id) + ":1.5", "nope:3"} {
		if _, err := query.ParseWaitFor(bad); !errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("ParseWaitFor(%q) = %v, want ErrInvalidSearch", bad, err)
		}
	}
	w, err := query.ParseWaitFor(string(id) + ":7")
	if err != nil || w != (query.WaitFor{ID: id, Version: 7}) || w.String() != string(id)+":7" {
		t.Fatalf("ParseWaitFor = %+v, %v", w, err)
	}
	// Repeats of a product keep its highest version; the defaults fill in.
	c, err := query.Consistency{WaitFor: []query.WaitFor{{ID: id, Version: 2}, {ID: id, Version: 5}}}.Normalize()
	if err != nil || len(c.WaitFor) != 1 || c.WaitFor[0].Version != 5 || c.Timeout != query.DefaultWaitTimeout {
		t.Fatalf("Normalize = %+v, %v", c, err)
	}
	many := make([]query.WaitFor, query.MaxWaitFor+1)
	for i := range many {
		many[i] = query.WaitFor{ID: product.NewID(time.Now()), Version: 1}
	}
	for _, bad := range []query.Consistency{
		{WaitFor: many},
		{WaitFor: []query.WaitFor{{ID: id, Version: 1}}, Timeout: query.MaxWaitTimeout + time.Millisecond},
		{WaitFor: []query.WaitFor{{ID: id, Version: 1}}, Timeout: -time.Second},
		{WaitFor: []query.WaitFor{{ID: "x", Version: 1}}},
	} {
		if _, err := bad.Normalize(); !errors.Is(err, query.ErrInvalidSearch) {
			t.Errorf("Normalize(%+v) = %v, want ErrInvalidSearch", bad, err)
		}
	}
	// Nothing to wait for never waits and never asks the read model.
	rm := &countingVersions{versions: map[product.ID]int64{}}
	if lags, err := newWaiter(t, rm, time.Millisecond).Wait(context.Background(), "", query.Consistency{}); err != nil || lags != nil || rm.checks.Load() != 0 {
		t.Fatalf("empty Wait = %v, %v after %d checks", lags, err, rm.checks.Load())
	}
}
