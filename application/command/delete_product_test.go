package command_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/domain/product"
)

func TestDeleteProduct(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.mustCreate(t, validInput())
	at := e.clock.Advance(time.Minute)
	got, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String()})
	if err != nil {
		t.Fatal(err)
	}
	want := at.Truncate(time.Microsecond)
	if !got.IsDeleted() || got.Version() != 2 || !got.DeletedAt().Equal(want) || !got.UpdatedAt().Equal(want) {
		t.Fatalf("deleted %v version %d at %v", got.IsDeleted(), got.Version(), got.DeletedAt())
	}
	tomb, err := e.repo.Get(ctx, p.ID())
	if err != nil || !tomb.IsDeleted() || tomb.Version() != 2 {
		t.Fatalf("stored tombstone %v, %v", tomb, err)
	}
	requireInputState(t, tomb.Details(), validInput())

	events := e.requireEvents(t, product.EventCreated, product.EventDeleted)
	del := events[1]
	if del.AggregateID != p.ID() || del.AggregateVersion != 2 || !del.State.Deleted() || !del.State.DeletedAt.Equal(want) {
		t.Fatalf("deleted event %+v", del)
	}
	if m := e.metrics.last(t); m.name != "delete_product" || m.err != nil {
		t.Fatalf("metrics %+v", m)
	}

	// Deleting again is refused and announces nothing.
	if _, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String()}); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("second delete: %v, want ErrDeleted", err)
	}
	e.requireEvents(t, product.EventCreated, product.EventDeleted)

	// The SKU is free again.
	if _, err := e.create.Handle(ctx, command.CreateProduct{Input: validInput()}); err != nil {
		t.Fatalf("create with the deleted product's SKU: %v", err)
	}
}

func TestDeleteProductExpectedVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.mustCreate(t, validInput())
	_, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String(), ExpectedVersion: ptr(int64(2))})
	var vc *product.VersionConflictError
	if !errors.Is(err, product.ErrVersionConflict) || !errors.As(err, &vc) || vc.Expected != 2 || vc.Actual != 1 {
		t.Fatalf("delete at a wrong version: %v, want a version conflict", err)
	}
	if stored, _ := e.repo.Get(ctx, p.ID()); stored.IsDeleted() {
		t.Fatal("a refused delete deleted the product")
	}
	e.requireEvents(t, product.EventCreated)
	got, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String(), ExpectedVersion: ptr(int64(1))})
	if err != nil || !got.IsDeleted() {
		t.Fatalf("delete at the right version: %v, %v", got, err)
	}
	e.requireEvents(t, product.EventCreated, product.EventDeleted)
	// A retried delete (the first answer was lost) names the version it read, which the
	// tombstone has moved past: it is told the product is gone, not that it is stale.
	if _, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String(), ExpectedVersion: ptr(int64(1))}); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("retried delete: %v, want ErrDeleted", err)
	}
	e.requireEvents(t, product.EventCreated, product.EventDeleted)
}

func TestDeleteProductErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.delete.Handle(ctx, command.DeleteProduct{ID: "nope"}); !errors.Is(err, product.ErrInvalidID) {
		t.Fatalf("bad id: %v, want ErrInvalidID", err)
	}
	if _, err := e.delete.Handle(ctx, command.DeleteProduct{ID: product.NewID(time.Now()).String()}); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
	if m := e.metrics.last(t); !errors.Is(m.err, product.ErrNotFound) || m.name != "delete_product" {
		t.Fatalf("metrics %+v", m)
	}
	e.requireEvents(t)
}
