package command_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/domain/product"
)

func TestUpdateProduct(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*command.ProductInput)
		want   product.EventType
	}{
		{"price", func(in *command.ProductInput) { in.Amount = 1999 }, product.EventPriceChanged},
		{"stock", func(in *command.ProductInput) { in.Stock = 0 }, product.EventStockChanged},
		{"name", func(in *command.ProductInput) { in.Name = "Big kettle" }, product.EventUpdated},
		{"price and stock", func(in *command.ProductInput) { in.Amount, in.Stock = 1, 1 }, product.EventUpdated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := e.mustCreate(t, validInput())
			in := validInput()
			tt.change(&in)
			later := e.clock.Advance(time.Minute)
			got, err := e.update.Handle(context.Background(), command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: in})
			if err != nil {
				t.Fatal(err)
			}
			if got.Version() != 2 || !got.UpdatedAt().Equal(later.Truncate(time.Microsecond)) || !got.CreatedAt().Equal(p.CreatedAt()) {
				t.Fatalf("version %d updated %v", got.Version(), got.UpdatedAt())
			}
			requireInputState(t, got.Details(), in)
			stored, err := e.repo.Get(context.Background(), p.ID())
			if err != nil || stored.Version() != 2 {
				t.Fatalf("stored %v, %v", stored, err)
			}
			events := e.requireEvents(t, product.EventCreated, tt.want)
			requireInputState(t, events[1].State.Details, in)
			if events[1].AggregateVersion != 2 {
				t.Fatalf("event version %d", events[1].AggregateVersion)
			}
			if m := e.metrics.last(t); m.name != "update_product" || m.err != nil {
				t.Fatalf("metrics %+v", m)
			}
		})
	}
}

func TestUpdateProductStaleVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.mustCreate(t, validInput())
	in := validInput()
	in.Stock = 1
	if _, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: in}); err != nil {
		t.Fatal(err)
	}
	in.Stock = 2
	for _, stale := range []int64{1, 0, 3} {
		_, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: stale, Input: in})
		if !errors.Is(err, product.ErrVersionConflict) {
			t.Fatalf("expected version %d: %v, want ErrVersionConflict", stale, err)
		}
		var vc *product.VersionConflictError
		if !errors.As(err, &vc) || vc.Expected != stale || vc.Actual != 2 {
			t.Fatalf("conflict %v lacks the versions", err)
		}
		if m := e.metrics.last(t); !errors.Is(m.err, product.ErrVersionConflict) {
			t.Fatalf("metrics saw %v", m.err)
		}
	}
	stored, _ := e.repo.Get(ctx, p.ID())
	if stored.Version() != 2 || stored.Details().Stock != 1 {
		t.Fatalf("stale updates changed the product: version %d stock %d", stored.Version(), stored.Details().Stock)
	}
	e.requireEvents(t, product.EventCreated, product.EventStockChanged)
}

func TestUpdateProductErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.mustCreate(t, validInput())
	other := validInput()
	other.SKU = "SKU-2"
	e.mustCreate(t, other)

	bad := validInput()
	bad.Name, bad.Attributes = " ", map[string]string{"k": "\x00"}
	_, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: bad})
	requireValidationError(t, err, "name", "attributes.k")

	for _, id := range []string{"", "42", "not-a-uuid", p.ID().String() + "0"} {
		if _, err := e.update.Handle(ctx, command.UpdateProduct{ID: id, ExpectedVersion: 1, Input: validInput()}); !errors.Is(err, product.ErrInvalidID) {
			t.Fatalf("id %q: %v, want ErrInvalidID", id, err)
		}
	}
	unknown := product.NewID(time.Now()).String()
	if _, err := e.update.Handle(ctx, command.UpdateProduct{ID: unknown, ExpectedVersion: 1, Input: validInput()}); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
	dup := validInput()
	dup.SKU = "SKU-2"
	if _, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: dup}); !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("update to a taken SKU: %v, want ErrDuplicateSKU", err)
	}
	e.requireEvents(t, product.EventCreated, product.EventCreated)
}

func TestUpdateProductNoOp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustCreate(t, validInput())
	e.clock.Advance(time.Hour)
	in := validInput()
	in.Name = "  " + in.Name + " " // trimmed to the same state
	got, err := e.update.Handle(context.Background(), command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 1 || !got.UpdatedAt().Equal(p.UpdatedAt()) {
		t.Fatalf("no-op update: version %d updated %v", got.Version(), got.UpdatedAt())
	}
	e.requireEvents(t, product.EventCreated)
}

func TestUpdateProductUpperCaseID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustCreate(t, validInput())
	in := validInput()
	in.Stock = 3
	upper := []byte(p.ID().String())
	for i, c := range upper {
		if c >= 'a' && c <= 'f' {
			upper[i] = c - 'a' + 'A'
		}
	}
	got, err := e.update.Handle(context.Background(), command.UpdateProduct{ID: string(upper), ExpectedVersion: 1, Input: in})
	if err != nil || got.ID() != p.ID() {
		t.Fatalf("update by upper-case id: %v, %v", got, err)
	}
}

func TestUpdateDeletedProduct(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.mustCreate(t, validInput())
	if _, err := e.delete.Handle(ctx, command.DeleteProduct{ID: p.ID().String()}); err != nil {
		t.Fatal(err)
	}
	in := validInput()
	in.Stock = 99
	for _, v := range []int64{1, 2} {
		if _, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: v, Input: in}); !errors.Is(err, product.ErrDeleted) {
			t.Fatalf("update of a tombstone at version %d: %v, want ErrDeleted", v, err)
		}
	}
	e.requireEvents(t, product.EventCreated, product.EventDeleted)
}

// A client that does not send tags (one written before tags existed) keeps the stored ones;
// a client that sends an empty list clears them.
func TestUpdateProductWithoutTagsKeepsThem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	in := validInput()
	in.Tags = []string{"sale", "eco"}
	p := e.mustCreate(t, in)

	old := validInput()
	old.TagsOmitted = true
	old.Stock = 1
	got, err := e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 1, Input: old})
	if err != nil {
		t.Fatal(err)
	}
	if tags := got.Details().Tags; len(tags) != 2 || tags[0] != "sale" || tags[1] != "eco" {
		t.Fatalf("an update without tags left %q", tags)
	}
	clear := validInput()
	clear.Tags = []string{}
	got, err = e.update.Handle(ctx, command.UpdateProduct{ID: p.ID().String(), ExpectedVersion: 2, Input: clear})
	if err != nil {
		t.Fatal(err)
	}
	if tags := got.Details().Tags; len(tags) != 0 {
		t.Fatalf("an update with no tags left %q", tags)
	}
}
