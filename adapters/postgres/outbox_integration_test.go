package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
)

func count(t *testing.T, db *postgres.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestProductAndOutboxCommitTogether: a write stores the row and its outbox row in one
// transaction; when the outbox insert fails the product is not stored either, and when the
// product write fails no event is left behind.
func TestProductAndOutboxCommitTogether(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := product.New(product.NewID(now), details(t, "OK-1", 100), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Add(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, `SELECT count(*) FROM products`); got != 1 {
		t.Fatalf("products = %d, want 1", got)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox_messages`); got != 1 {
		t.Fatalf("outbox rows = %d, want 1", got)
	}

	// Make every outbox insert fail: the product row must roll back with it.
	if _, err := db.Pool.Exec(ctx, `CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'outbox unavailable (test)'; END $$;
CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox_messages FOR EACH ROW EXECUTE FUNCTION fail_outbox();`); err != nil {
		t.Fatal(err)
	}
	q, err := product.New(product.NewID(now), details(t, "FAIL-1", 100), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Add(ctx, q, &product.IdempotencyKey{Key: "k-fail", Fingerprint: "f"}); err == nil {
		t.Fatal("add succeeded although the outbox insert failed")
	}
	if _, err := repo.Update(ctx, p.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.ChangeStock(9, time.Now())
	}); err == nil {
		t.Fatal("update succeeded although the outbox insert failed")
	}
	if got := count(t, db, `SELECT count(*) FROM products WHERE sku = 'FAIL-1'`); got != 0 {
		t.Errorf("product row written without its event")
	}
	if got := count(t, db, `SELECT count(*) FROM idempotency_keys`); got != 0 {
		t.Errorf("idempotency key written without its product")
	}
	if got := count(t, db, `SELECT version FROM products WHERE id = $1`, p.ID().String()); got != 1 {
		t.Errorf("update without event left version %d, want 1", got)
	}
	if _, err := db.Pool.Exec(ctx, `DROP TRIGGER fail_outbox ON outbox_messages`); err != nil {
		t.Fatal(err)
	}

	// A product write that fails (duplicate SKU) leaves no event.
	dup, err := product.New(product.NewID(now), details(t, "OK-1", 100), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Add(ctx, dup, nil); !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("duplicate sku: %v, want ErrDuplicateSKU", err)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox_messages`); got != 1 {
		t.Errorf("outbox rows = %d after failed writes, want 1", got)
	}
}

// TestMigrateTwiceAndConcurrently: migrations are idempotent and safe from several processes.
func TestMigrateTwiceAndConcurrently(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(ctx, postgres.Config{URL: url})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = postgres.Migrate(ctx, db, quietLog())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := postgres.Migrate(ctx, db, quietLog())
	if err != nil || n != 0 {
		t.Fatalf("second migrate applied %d (err %v), want 0", n, err)
	}
	for _, table := range []string{"products", "idempotency_keys", "outbox_messages", "outbox_offsets"} {
		if count(t, db, `SELECT count(*) FROM information_schema.tables WHERE table_name = $1`, table) != 1 {
			t.Errorf("table %s missing", table)
		}
	}
}
