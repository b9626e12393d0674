package postgres_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

// insertLegacyRow writes a product row the way an earlier release (or an operator's script)
// did: under looser rules, and without the columns added since, which take their defaults.
func insertLegacyRow(t *testing.T, exec func(ctx context.Context, sql string, args ...any) error, name string) product.ID {
	t.Helper()
	id := product.NewID(time.Now())
	err := exec(context.Background(), `INSERT INTO products (id, sku, name, description, category, brand, price_amount,
price_currency, stock, attributes, version, created_at, updated_at)
VALUES ($1, 'LEGACY-1', $2, 'legacy row', 'lighting', 'Acme', 1000, 'EUR', 3, '{}', 1, now(), now())`, id.String(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A row that breaks today's rules (a 300-character name) is history: the repository reads it,
// a database rebuild's chunk reads it, and a change of its stock is stored with the name untouched.
func TestLegacyRowIsReadNotRevalidated(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo, src := newRepo(t, db), newProductSource(t, db)
	exec := func(ctx context.Context, sql string, args ...any) error {
		_, err := db.Pool.Exec(ctx, sql, args...)
		return err
	}
	name := "Heritagelamp " + strings.Repeat("x", 287)
	id := insertLegacyRow(t, exec, name)
	addProduct(t, repo, "NEW-1")

	p, err := repo.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get of a legacy row: %v", err)
	}
	if d := p.Details(); d.Name != name || d.Tags == nil || len(d.Tags) != 0 {
		t.Fatalf("legacy row read as %q with tags %q", d.Name, d.Tags)
	}

	streamed, err := src.Chunk(ctx, "", 10)
	if err != nil || len(streamed) != 2 {
		t.Fatalf("a chunk over a legacy row: %d, %v", len(streamed), err)
	}
	i := slices.IndexFunc(streamed, func(s product.Snapshot) bool { return s.ID == id })
	if i < 0 || streamed[i].Details.Name != name {
		t.Fatalf("the legacy row was not streamed as stored: %+v", streamed)
	}

	updated, err := repo.Update(ctx, id, func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.ChangeStock(9, time.Now())
	})
	if err != nil {
		t.Fatalf("stock change of a legacy row: %v", err)
	}
	if updated.Details().Name != name || updated.Version() != 2 {
		t.Fatalf("after the change: %+v", updated.Snapshot())
	}
	if got := outboxEvents(t, db, "product.events"); len(got) != 2 || got[1].State.Details.Name != name {
		t.Fatalf("outbox events %+v", got)
	}
}

// Damage is not history: tags that are not a list of strings fail the read with the product named.
func TestCorruptRowIsRefused(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	repo := newRepo(t, db)
	p := addProduct(t, repo, "BROKEN-1")
	if _, err := db.Pool.Exec(ctx, `UPDATE products SET tags = '{"a": 1}' WHERE id = $1`, p.ID().String()); err != nil {
		t.Fatal(err)
	}
	_, err := repo.Get(ctx, p.ID())
	if err == nil || !strings.Contains(err.Error(), p.ID().String()) || errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get of a row with corrupt tags: %v", err)
	}
}
