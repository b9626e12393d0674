package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	apprebuild "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
)

func newProductSource(t *testing.T, db *postgres.DB) *postgres.ProductSource {
	t.Helper()
	s, err := postgres.NewProductSource(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newRepo(t *testing.T, db *postgres.DB) *postgres.ProductRepository {
	t.Helper()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func addProduct(t *testing.T, repo *postgres.ProductRepository, sku string) *product.Product {
	t.Helper()
	now := time.Now()
	p, err := product.New(product.NewID(now), details(t, sku, 100), now)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := repo.Add(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func deleteProduct(t *testing.T, repo *postgres.ProductRepository, id product.ID) *product.Product {
	t.Helper()
	p, err := repo.Update(context.Background(), id, func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.Delete(time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// allRecorded pages through what was recorded for rebuildID, checking every page is in strict
// Go string order and continues after the previous one.
func allRecorded(t *testing.T, src *postgres.ProductSource, rebuildID string, page int) []apprebuild.DocVersion {
	t.Helper()
	var all []apprebuild.DocVersion
	after := ""
	for {
		p, err := src.Recorded(context.Background(), rebuildID, after, page)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > page {
			t.Fatalf("page of %d rows, limit %d", len(p), page)
		}
		for _, d := range p {
			if d.ID <= after {
				t.Fatalf("recorded %s after %s: not in strict id order", d.ID, after)
			}
			after = d.ID
		}
		all = append(all, p...)
		if len(p) < page {
			return all
		}
	}
}

// TestSourceStreamBatchesInIDOrderWithTombstones: batches of at most batchSize, in strict id
// order, every product exactly once, tombstones included, equal to what the repository reads;
// what is recorded matches what is streamed.
func TestSourceStreamBatchesInIDOrderWithTombstones(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, src := newRepo(t, db), newProductSource(t, db)
	want := map[product.ID]*product.Product{}
	for i := range 50 {
		p := addProduct(t, repo, fmt.Sprintf("S-%02d", i))
		if i%5 == 0 {
			p = deleteProduct(t, repo, p.ID())
		}
		want[p.ID()] = p
	}
	if n, err := src.Count(ctx); err != nil || n != 50 {
		t.Fatalf("Count: %d, %v", n, err)
	}

	for _, batchSize := range []int{7, 1, 10, 50, 1000} {
		t.Run(fmt.Sprint("batch", batchSize), func(t *testing.T) {
			rebuildID := fmt.Sprint("rb-batch-", batchSize)
			var sizes []int
			var streamed []product.Snapshot
			n, err := src.Stream(ctx, rebuildID, batchSize, func(b []product.Snapshot) error {
				sizes = append(sizes, len(b))
				streamed = append(streamed, b...)
				return nil
			})
			if err != nil || n != 50 || len(streamed) != 50 {
				t.Fatalf("Stream: n %d, streamed %d, %v", n, len(streamed), err)
			}
			for i, s := range sizes {
				if s > batchSize || s == 0 || (i < len(sizes)-1 && s != batchSize) {
					t.Fatalf("batch sizes %v with batch size %d", sizes, batchSize)
				}
			}
			tombstones := 0
			for i, s := range streamed {
				if i > 0 && s.ID.String() <= streamed[i-1].ID.String() {
					t.Fatalf("%s streamed after %s", s.ID, streamed[i-1].ID)
				}
				w := want[s.ID]
				if w == nil {
					t.Fatalf("unknown product %s", s.ID)
				}
				ws := w.Snapshot()
				if s.Version != ws.Version || s.Deleted() != ws.Deleted() || s.Details.SKU != ws.Details.SKU ||
					s.Details.Price != ws.Details.Price || s.Details.Attributes["k"] != "v" ||
					!s.UpdatedAt.Equal(ws.UpdatedAt) || !s.CreatedAt.Equal(ws.CreatedAt) {
					t.Fatalf("streamed %+v\nwant %+v", s, ws)
				}
				if s.Deleted() {
					tombstones++
					if s.Version != 2 || !s.DeletedAt.Equal(*ws.DeletedAt) {
						t.Fatalf("tombstone %+v", s)
					}
				}
			}
			if tombstones != 10 {
				t.Fatalf("%d tombstones streamed, want 10", tombstones)
			}
			rec := allRecorded(t, src, rebuildID, 7)
			if len(rec) != 50 {
				t.Fatalf("recorded %d rows, want 50", len(rec))
			}
			for i, d := range rec {
				s := streamed[i]
				if d != (apprebuild.DocVersion{ID: s.ID.String(), Version: s.Version, Deleted: s.Deleted()}) {
					t.Fatalf("recorded %+v, streamed %s v%d deleted %v", d, s.ID, s.Version, s.Deleted())
				}
			}
		})
	}

	// A retried Stream of the same rebuild starts over instead of failing or doubling rows.
	if _, err := src.Stream(ctx, "rb-batch-7", 7, func([]product.Snapshot) error { return nil }); err != nil {
		t.Fatalf("second Stream of one rebuild: %v", err)
	}
	if rec := allRecorded(t, src, "rb-batch-7", 100); len(rec) != 50 {
		t.Fatalf("after a retried Stream %d rows recorded, want 50", len(rec))
	}

	// fn's error stops the stream, comes back wrapped, and nothing is recorded.
	boom := errors.New("bulk write failed")
	calls := 0
	_, err := src.Stream(ctx, "rb-failed", 7, func([]product.Snapshot) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Stream with a failing fn: %v after %d calls", err, calls)
	}
	if rec := allRecorded(t, src, "rb-failed", 100); len(rec) != 0 {
		t.Fatalf("a failed Stream recorded %d rows", len(rec))
	}
	if _, err := src.Stream(ctx, "", 7, func([]product.Snapshot) error { return nil }); err == nil {
		t.Fatal("Stream without a rebuild id succeeded")
	}
	if _, err := src.Stream(ctx, "x", 0, func([]product.Snapshot) error { return nil }); err == nil {
		t.Fatal("Stream with batch size 0 succeeded")
	}
}

// TestSourceStreamIsOneSnapshot: writers create, update and delete products, and a
// transaction keeps two far-apart products at equal versions, while Stream runs with a slow
// fn. What is streamed and what is recorded are the products as of one instant: equal to each
// other, the pair at equal versions though they come in different batches, and nothing written
// after the stream began.
func TestSourceStreamIsOneSnapshot(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, src := newRepo(t, db), newProductSource(t, db)
	var seeded []product.ID
	for i := range 200 {
		seeded = append(seeded, addProduct(t, repo, fmt.Sprintf("SEED-%03d", i)).ID())
	}
	slices.Sort(seeded)
	pair := []string{seeded[0].String(), seeded[len(seeded)-1].String()} // first and last batch

	var (
		began     atomic.Bool // set in fn's first call: the snapshot is taken by then
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		after     = map[product.ID]int64{} // lowest version written by a write begun after the snapshot
		before    = map[product.ID]int64{} // highest version committed before Stream was called
		streaming atomic.Bool
		during    atomic.Int64 // writes committed while Stream ran
	)
	written := func(startedAfter bool, p *product.Product) {
		mu.Lock()
		defer mu.Unlock()
		if startedAfter {
			if v, ok := after[p.ID()]; !ok || p.Version() < v {
				after[p.ID()] = p.Version()
			}
		} else if !streaming.Load() && p.Version() > before[p.ID()] {
			before[p.ID()] = p.Version()
		}
		if streaming.Load() {
			during.Add(1)
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				startedAfter := began.Load()
				now := time.Now()
				var p *product.Product
				var err error
				changed := true // false when an update turned out to be a no-op
				switch i % 3 {
				case 0:
					p, err = product.New(product.NewID(now), details(t, fmt.Sprintf("W%d-%d", w, i), 1), now)
					if err == nil {
						p, _, err = repo.Add(ctx, p, nil)
					}
				case 1:
					id := seeded[1+mrand.IntN(len(seeded)-2)]
					p, err = repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
						changed = !p.IsDeleted()
						if !changed {
							return p, nil
						}
						return p, p.ChangeStock(p.Details().Stock+1, time.Now())
					})
				case 2:
					id := seeded[1+mrand.IntN(len(seeded)-2)]
					p, err = repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
						changed = !p.IsDeleted() && mrand.IntN(4) == 0
						if !changed {
							return p, nil
						}
						return p, p.Delete(time.Now())
					})
				}
				if errors.Is(err, product.ErrVersionConflict) {
					continue
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if changed {
					written(startedAfter, p)
				}
			}
		}()
	}
	// The pair's versions move together, in one transaction.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Pool.Exec(ctx, `UPDATE products SET version = version + 1 WHERE id = ANY($1::uuid[])`, pair); err != nil {
				t.Errorf("pair writer: %v", err)
				return
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(100 * time.Millisecond) // the snapshot lands amid the writes
	streaming.Store(true)
	streamed := map[string]product.Snapshot{}
	batches := 0
	n, err := src.Stream(ctx, "rb-live", 10, func(b []product.Snapshot) error {
		began.Store(true)
		batches++
		for _, s := range b {
			streamed[s.ID.String()] = s
		}
		time.Sleep(15 * time.Millisecond) // a slow bulk write
		return nil
	})
	streaming.Store(false)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != len(streamed) {
		t.Fatalf("Stream returned %d, streamed %d distinct products", n, len(streamed))
	}
	if during.Load() < 20 {
		t.Fatalf("only %d writes committed during the stream: the test did not exercise concurrency", during.Load())
	}

	rec := allRecorded(t, src, "rb-live", 64)
	if len(rec) != len(streamed) {
		t.Fatalf("recorded %d, streamed %d", len(rec), len(streamed))
	}
	for _, d := range rec {
		s, ok := streamed[d.ID]
		if !ok || s.Version != d.Version || s.Deleted() != d.Deleted {
			t.Fatalf("recorded %+v, streamed %+v (present %v)", d, s, ok)
		}
	}
	a, b := streamed[pair[0]], streamed[pair[1]]
	if a.Version != b.Version || a.Version < 2 {
		t.Fatalf("the pair, updated together, streamed at versions %d and %d: not one snapshot", a.Version, b.Version)
	}
	for id, v := range before {
		if s, ok := streamed[id.String()]; !ok || s.Version < v {
			t.Fatalf("%s committed at v%d before Stream, streamed v%d (present %v)", id, v, s.Version, ok)
		}
	}
	for id, v := range after {
		if s, ok := streamed[id.String()]; ok && s.Version >= v {
			t.Fatalf("%s written at v%d after the snapshot, yet streamed at v%d", id, v, s.Version)
		}
	}
	now, err := src.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("streamed %d products in %d batches; %d writes committed meanwhile; %d products now; %d written after the snapshot",
		n, batches, during.Load(), now, len(after))
	if now <= n {
		t.Fatalf("no product was created during the stream (%d now, %d streamed)", now, n)
	}
}

// randomUUIDs returns n random UUIDs (any bits, not just v4/v7) plus edge cases around the
// digit/letter boundary of every position, which is where byte and text order could differ.
func randomUUIDs(t *testing.T, n int) []string {
	t.Helper()
	out := []string{
		"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
	}
	hexd := "0123456789abcdef"
	for pos := range 32 {
		for _, c := range []byte{'9', 'a', '0', 'f'} {
			digits := []byte(strings.Repeat("5", 32))
			digits[pos] = c
			d := string(digits)
			out = append(out, d[0:8]+"-"+d[8:12]+"-"+d[12:16]+"-"+d[16:20]+"-"+d[20:32])
		}
	}
	for range n {
		var b strings.Builder
		for i := range 32 {
			if i == 8 || i == 12 || i == 16 || i == 20 {
				b.WriteByte('-')
			}
			x, err := rand.Int(rand.Reader, big.NewInt(16))
			if err != nil {
				t.Fatal(err)
			}
			b.WriteByte(hexd[x.Int64()])
		}
		out = append(out, b.String())
	}
	return out
}

// TestSourceRecordedOrderIsGoStringOrder: the caller merge-joins Recorded pages with an
// Elasticsearch keyword sort, which is byte-wise, like Go's string comparison. Rows stored as
// uuid must come back in exactly that order, in canonical form, each once.
func TestSourceRecordedOrderIsGoStringOrder(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	src := newProductSource(t, db)
	ids := randomUUIDs(t, 3000)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	asGiven := make([]string, len(ids))
	for i, id := range ids {
		if i%2 == 0 {
			id = strings.ToUpper(id) // stored as uuid, the spelling must not matter
		}
		asGiven[i] = id
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO rebuild_snapshots (rebuild_id, id, version, deleted)
SELECT 'rb-order', u, 1, false FROM unnest($1::uuid[]) AS u`, asGiven); err != nil {
		t.Fatal(err)
	}
	rec := allRecorded(t, src, "rb-order", 97) // checks strict Go order page by page
	got := make([]string, len(rec))
	for i, d := range rec {
		got[i] = d.ID
	}
	if !slices.Equal(got, ids) {
		for i := range min(len(got), len(ids)) {
			if got[i] != ids[i] {
				t.Fatalf("position %d: PostgreSQL gives %s, Go order %s", i, got[i], ids[i])
			}
		}
		t.Fatalf("PostgreSQL gives %d ids, Go %d", len(got), len(ids))
	}
	// afterID may be any spelling of a UUID; anything else is refused.
	page, err := src.Recorded(ctx, "rb-order", strings.ToUpper(ids[10]), 1)
	if err != nil || len(page) != 1 || page[0].ID != ids[11] {
		t.Fatalf("after an upper-case id: %v, %v", page, err)
	}
	if _, err := src.Recorded(ctx, "rb-order", "not-a-uuid", 1); err == nil {
		t.Fatal("Recorded after a non-UUID succeeded")
	}
	if _, err := src.Recorded(ctx, "rb-order", "", 0); err == nil {
		t.Fatal("Recorded with limit 0 succeeded")
	}
}

// TestSourceKnownRecordForget: Known answers for live products and tombstones and ignores
// what cannot be a product id; Record records without streaming; Forget drops one rebuild's
// rows only.
func TestSourceKnownRecordForget(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, src := newRepo(t, db), newProductSource(t, db)
	live := addProduct(t, repo, "LIVE-1")
	tomb := deleteProduct(t, repo, addProduct(t, repo, "TOMB-1").ID())
	unknown := product.NewID(time.Now()).String()
	upper := strings.ToUpper(live.ID().String())

	known, err := src.Known(ctx, []string{live.ID().String(), tomb.ID().String(), unknown, "not-a-uuid", "", upper, live.ID().String()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{live.ID().String(): true, tomb.ID().String(): true, upper: true}
	if len(known) != len(want) {
		t.Fatalf("Known: %v, want %v", known, want)
	}
	for id := range want {
		if !known[id] {
			t.Fatalf("Known: %v, want %v", known, want)
		}
	}
	if known, err := src.Known(ctx, nil); err != nil || len(known) != 0 {
		t.Fatalf("Known(nil): %v, %v", known, err)
	}

	for _, id := range []string{"rb-a", "rb-b"} {
		n, err := src.Record(ctx, id)
		if err != nil || n != 2 {
			t.Fatalf("Record %s: %d, %v", id, n, err)
		}
	}
	n, err := src.Record(ctx, "rb-a") // again: replaces, does not fail or double
	if err != nil || n != 2 {
		t.Fatalf("Record again: %d, %v", n, err)
	}
	rec := allRecorded(t, src, "rb-a", 10)
	wantRec := []apprebuild.DocVersion{
		{ID: live.ID().String(), Version: 1},
		{ID: tomb.ID().String(), Version: 2, Deleted: true},
	}
	slices.SortFunc(wantRec, func(x, y apprebuild.DocVersion) int { return strings.Compare(x.ID, y.ID) })
	if !slices.Equal(rec, wantRec) {
		t.Fatalf("recorded %v, want %v", rec, wantRec)
	}
	if err := src.Forget(ctx, "rb-a"); err != nil {
		t.Fatal(err)
	}
	if rec := allRecorded(t, src, "rb-a", 10); len(rec) != 0 {
		t.Fatalf("after Forget: %v", rec)
	}
	if rec := allRecorded(t, src, "rb-b", 10); len(rec) != 2 {
		t.Fatalf("Forget of rb-a dropped rb-b's rows: %v", rec)
	}
	if err := src.Forget(ctx, "never-recorded"); err != nil {
		t.Fatalf("Forget of nothing: %v", err)
	}
}

// TestSourceStreamLargeInBoundedMemory streams 200,000 products and checks the live heap never
// grows by more than a few batches' worth: the products are never all in memory. It logs the
// rate, the figure the rebuild benchmark's database side is bounded by.
func TestSourceStreamLargeInBoundedMemory(t *testing.T) {
	if testing.Short() && !testenv.InCI() {
		t.Skip("200k rows; skipped with -short")
	}
	const rows, batch = 200_000, 1000
	db, _ := migratedDB(t)
	ctx := context.Background()
	src := newProductSource(t, db)
	start := time.Now()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (id, sku, name, description, category, brand,
  price_amount, price_currency, stock, attributes, version, created_at, updated_at, deleted_at)
SELECT gen_random_uuid(), 'BULK-' || g, 'Bulk product number ' || g, repeat('A fine product. ', 8),
  'category-' || (g % 50), 'brand-' || (g % 20), 100 + g, 'EUR', g % 1000,
  jsonb_build_object('color', 'c' || (g % 7), 'size', 's' || (g % 5)), 1 + g % 3, now(), now(),
  CASE WHEN g % 10 = 0 THEN now() END
FROM generate_series(1, $1::int) AS g`, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d products in %s", rows, time.Since(start).Round(time.Millisecond))

	// Rate, undisturbed.
	start = time.Now()
	n, err := src.Stream(ctx, "rb-rate", batch, func([]product.Snapshot) error { return nil })
	if err != nil || n != rows {
		t.Fatalf("Stream: %d, %v", n, err)
	}
	elapsed := time.Since(start)
	t.Logf("Stream: %d products (recording included) in %s: %.0f products/s",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())

	start = time.Now()
	if n, err := src.Record(ctx, "rb-record"); err != nil || n != rows {
		t.Fatalf("Record: %d, %v", n, err)
	}
	t.Logf("Record alone: %d rows in %s", rows, time.Since(start).Round(time.Millisecond))

	// Memory: the live heap after a GC, sampled along the way.
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	var peak uint64
	calls := 0
	last := ""
	n, err = src.Stream(ctx, "rb-mem", batch, func(b []product.Snapshot) error {
		calls++
		if b[0].ID.String() <= last {
			return fmt.Errorf("batch %d out of order", calls)
		}
		last = b[len(b)-1].ID.String()
		if calls%20 == 0 {
			peak = max(peak, heap())
			runtime.KeepAlive(b) // the batch in hand counts, as it would for a real writer
		}
		return nil
	})
	if err != nil || n != rows {
		t.Fatalf("Stream: %d, %v", n, err)
	}
	grown := int64(peak) - int64(base)
	t.Logf("live heap: %d KiB before, peak %d KiB during the stream (%+d KiB)", base>>10, peak>>10, grown>>10)
	// All 200k snapshots would take well over 100 MiB; one batch takes about 1 MiB.
	if grown > 32<<20 {
		t.Fatalf("live heap grew by %d MiB while streaming: products are accumulating", grown>>20)
	}
}
