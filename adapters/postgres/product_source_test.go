package postgres_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/rebuild"
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

// allChunks pages through the products with Chunk, checking every chunk is in strict Go
// string order, continues after the previous one and is full unless it is the last.
func allChunks(t *testing.T, src *postgres.ProductSource, size int) []product.Snapshot {
	t.Helper()
	var all []product.Snapshot
	after := ""
	for {
		c, err := src.Chunk(context.Background(), after, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) > size {
			t.Fatalf("chunk of %d products, limit %d", len(c), size)
		}
		for _, p := range c {
			if p.ID.String() <= after {
				t.Fatalf("%s after %s: not in strict id order", p.ID, after)
			}
			after = p.ID.String()
		}
		all = append(all, c...)
		if len(c) < size {
			return all
		}
	}
}

// allVersions pages through the products' versions, checking the order the same way.
func allVersions(t *testing.T, src *postgres.ProductSource, page int) []rebuild.DocVersion {
	t.Helper()
	var all []rebuild.DocVersion
	after := ""
	for {
		p, err := src.Versions(context.Background(), after, page)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > page {
			t.Fatalf("page of %d rows, limit %d", len(p), page)
		}
		for _, d := range p {
			if d.ID <= after {
				t.Fatalf("%s after %s: not in strict id order", d.ID, after)
			}
			after = d.ID
		}
		all = append(all, p...)
		if len(p) < page {
			return all
		}
	}
}

// TestSourceChunksInIDOrderWithTombstones: chunks of at most the limit, full but for the last,
// in strict id order, every product exactly once, tombstones included, equal to what the
// repository reads; Versions pages give the same (id, version, deleted). Bad arguments are
// refused.
func TestSourceChunksInIDOrderWithTombstones(t *testing.T) {
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

	for _, size := range []int{7, 1, 10, 50, 1000} {
		t.Run(fmt.Sprint("chunk", size), func(t *testing.T) {
			chunked := allChunks(t, src, size)
			if len(chunked) != 50 {
				t.Fatalf("%d products in chunks of %d, want 50", len(chunked), size)
			}
			tombstones := 0
			for _, s := range chunked {
				w := want[s.ID]
				if w == nil {
					t.Fatalf("unknown product %s", s.ID)
				}
				ws := w.Snapshot()
				if s.Version != ws.Version || s.Deleted() != ws.Deleted() || s.Details.SKU != ws.Details.SKU ||
					s.Details.Price != ws.Details.Price || s.Details.Attributes["k"] != "v" ||
					!s.UpdatedAt.Equal(ws.UpdatedAt) || !s.CreatedAt.Equal(ws.CreatedAt) {
					t.Fatalf("chunked %+v\nwant %+v", s, ws)
				}
				if s.Deleted() {
					tombstones++
					if s.Version != 2 || !s.DeletedAt.Equal(*ws.DeletedAt) {
						t.Fatalf("tombstone %+v", s)
					}
				}
			}
			if tombstones != 10 {
				t.Fatalf("%d tombstones, want 10", tombstones)
			}
			versions := allVersions(t, src, size)
			if len(versions) != 50 {
				t.Fatalf("%d versions, want 50", len(versions))
			}
			for i, d := range versions {
				s := chunked[i]
				if d != (rebuild.DocVersion{ID: s.ID.String(), Version: s.Version, Deleted: s.Deleted()}) {
					t.Fatalf("versions say %+v, the chunk %s v%d deleted %v", d, s.ID, s.Version, s.Deleted())
				}
			}
		})
	}
	first := allChunks(t, src, 50)[10].ID.String()
	if c, err := src.Chunk(ctx, strings.ToUpper(first), 1); err != nil || len(c) != 1 || c[0].ID.String() <= first {
		t.Fatalf("a chunk after an upper-case id: %v, %v", c, err)
	}
	for name, call := range map[string]func() error{
		"chunk limit 0":       func() error { _, err := src.Chunk(ctx, "", 0); return err },
		"chunk after junk":    func() error { _, err := src.Chunk(ctx, "not-a-uuid", 5); return err },
		"versions limit 0":    func() error { _, err := src.Versions(ctx, "", 0); return err },
		"versions after junk": func() error { _, err := src.Versions(ctx, "not-a-uuid", 5); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
}

// TestSourceChunkIsOneShortStatement: a chunk holds no transaction once it has returned, and a
// change committed between two chunks is seen by the later chunk that reads the row: chunks
// are not one snapshot (the rebuild's catch-up makes them consistent), and nothing holds back
// vacuum between them.
func TestSourceChunkIsOneShortStatement(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, src := newRepo(t, db), newProductSource(t, db)
	for i := range 20 {
		addProduct(t, repo, fmt.Sprintf("C-%02d", i))
	}
	firstChunk, err := src.Chunk(ctx, "", 10)
	if err != nil || len(firstChunk) != 10 {
		t.Fatalf("first chunk: %d, %v", len(firstChunk), err)
	}
	var open int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d transactions of this database are open between two chunks", open)
	}
	rest := allVersions(t, src, 100)[10:]
	later := product.ID(rest[3].ID)
	changed, err := repo.Update(ctx, later, func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.ChangeStock(42, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	second, err := src.Chunk(ctx, firstChunk[9].ID.String(), 10)
	if err != nil || len(second) != 10 {
		t.Fatalf("second chunk: %d, %v", len(second), err)
	}
	if second[3].ID != later || second[3].Version != changed.Version() {
		t.Errorf("the second chunk has %s v%d, want the change committed before it: %s v%d", second[3].ID, second[3].Version, later, changed.Version())
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

// TestSourceVersionsOrderIsGoStringOrder: the caller merge-joins Versions pages with an
// Elasticsearch keyword sort, which is byte-wise, like Go's string comparison. Rows stored as
// uuid must come back in exactly that order, in canonical form, each once.
func TestSourceVersionsOrderIsGoStringOrder(t *testing.T) {
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
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (id, sku, name, description, category, brand,
  price_amount, price_currency, stock, attributes, version, created_at, updated_at)
SELECT u, 'ORD-' || u, 'Order', '', 'c', 'b', 100, 'EUR', 1, '{}'::jsonb, 1, now(), now() FROM unnest($1::uuid[]) AS u`, asGiven); err != nil {
		t.Fatal(err)
	}
	rec := allVersions(t, src, 97) // checks strict Go order page by page
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
	// afterID may be any spelling of a UUID.
	page, err := src.Versions(ctx, strings.ToUpper(ids[10]), 1)
	if err != nil || len(page) != 1 || page[0].ID != ids[11] {
		t.Fatalf("after an upper-case id: %v, %v", page, err)
	}
}

// TestSourceKnown: Known answers for live products and tombstones and ignores what cannot be
// a product id.
func TestSourceKnown(t *testing.T) {
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

}

// TestSourceChunksLargeInBoundedMemory reads 200,000 products in chunks and checks the live
// heap never grows by more than a few chunks' worth: the products are never all in memory, and
// a deep chunk costs what a shallow one does. It logs the rate, the figure the rebuild
// benchmark's database side is bounded by.
func TestSourceChunksLargeInBoundedMemory(t *testing.T) {
	if testing.Short() && !testenv.InCI() {
		t.Skip("200k rows; skipped with -short")
	}
	const rows, chunk = 200_000, 5000
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

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	var peak uint64
	var n int
	var first, last time.Duration
	after := ""
	start = time.Now()
	for calls := 1; ; calls++ {
		t0 := time.Now()
		c, err := src.Chunk(ctx, after, chunk)
		took := time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if calls == 2 {
			first = took
		}
		if len(c) == chunk {
			last = took
		}
		n += len(c)
		if len(c) > 0 {
			after = c[len(c)-1].ID.String()
		}
		if calls%10 == 0 {
			peak = max(peak, heap())
			runtime.KeepAlive(c) // the chunk in hand counts, as it would for a real writer
		}
		if len(c) < chunk {
			break
		}
	}
	elapsed := time.Since(start)
	if n != rows {
		t.Fatalf("chunks held %d products, want %d", n, rows)
	}
	t.Logf("Chunk: %d products in %s: %.0f products/s; an early chunk took %s, the last full one %s",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), first.Round(time.Microsecond), last.Round(time.Microsecond))
	grown := int64(peak) - int64(base)
	t.Logf("live heap: %d KiB before, peak %d KiB during the chunks (%+d KiB)", base>>10, peak>>10, grown>>10)
	// All 200k snapshots would take well over 100 MiB; one chunk takes about 5 MiB.
	if grown > 32<<20 {
		t.Fatalf("live heap grew by %d MiB while reading chunks: products are accumulating", grown>>20)
	}
}
