package command_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/marketplace/catalog/adapters/memory"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

func TestCreateProduct(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := validInput()
	res, err := e.create.Handle(context.Background(), command.CreateProduct{Input: in})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Product
	if res.Replayed || p.Version() != 1 || p.IsDeleted() {
		t.Fatalf("result: replayed %v version %d deleted %v", res.Replayed, p.Version(), p.IsDeleted())
	}
	requireInputState(t, p.Details(), in)
	now := e.clock.Now().Truncate(time.Microsecond)
	if !p.CreatedAt().Equal(now) || !p.UpdatedAt().Equal(now) {
		t.Fatalf("created %v updated %v, want the clock's %v", p.CreatedAt(), p.UpdatedAt(), now)
	}
	if ms, _ := strconv.ParseInt(p.ID().String()[:8]+p.ID().String()[9:13], 16, 64); ms != e.clock.Now().UnixMilli() || p.ID().String()[14] != '7' {
		t.Fatalf("id %s is not a UUIDv7 of the clock's time", p.ID())
	}
	stored, err := e.repo.Get(context.Background(), p.ID())
	if err != nil || stored.Version() != 1 {
		t.Fatalf("stored: %v, %v", stored, err)
	}

	events := e.requireEvents(t, product.EventCreated)
	ev := events[0]
	if ev.AggregateID != p.ID() || ev.AggregateVersion != 1 || !ev.OccurredAt.Equal(now) || ev.State.Version != 1 {
		t.Fatalf("event %+v", ev)
	}
	requireInputState(t, ev.State.Details, in)
	if got := e.metrics.last(t); got.name != "create_product" || got.err != nil {
		t.Fatalf("metrics %+v", got)
	}
}

// TestCreateProductPublishesOnTopic reads product.created straight from a GoChannel
// subscription, as a projector would.
func TestCreateProductPublishesOnTopic(t *testing.T) {
	t.Parallel()
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, nil)
	t.Cleanup(func() { _ = pubsub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := pubsub.Subscribe(ctx, memory.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := memory.NewProductRepository(pubsub, memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	create, err := command.NewCreateProductHandler(repo, time.Now, decorator.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := create.Handle(ctx, command.CreateProduct{Input: validInput()})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-msgs:
		defer msg.Ack()
		ev, err := envelope.Unmarshal(msg.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != product.EventCreated || ev.AggregateID != res.Product.ID() || ev.AggregateVersion != 1 {
			t.Fatalf("event %+v", ev)
		}
		if msg.UUID != ev.ID.String() || msg.Metadata.Get(envelope.MetaEventType) != string(product.EventCreated) ||
			msg.Metadata.Get(envelope.MetaAggregateID) != res.Product.ID().String() || msg.Metadata.Get(envelope.MetaAggregateVersion) != "1" {
			t.Fatalf("message uuid %s metadata %v", msg.UUID, msg.Metadata)
		}
		requireInputState(t, ev.State.Details, validInput())
	case <-ctx.Done():
		t.Fatal("no message on product.events")
	}
}

func TestCreateProductValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := validInput()
	in.SKU, in.Name, in.Currency, in.Amount, in.Stock = "", "", "eur", -1, -1
	_, err := e.create.Handle(context.Background(), command.CreateProduct{Input: in, IdempotencyKey: "k", Fingerprint: "f"})
	requireValidationError(t, err, "sku", "name", "price.currency", "price.amount", "stock")
	e.requireEvents(t)
	if got := e.metrics.last(t); !errors.Is(got.err, product.ErrInvalid) {
		t.Fatalf("metrics saw %v, want the validation error", got.err)
	}
	// The refused request claimed nothing: the key is free for a valid body.
	res, err := e.create.Handle(context.Background(), command.CreateProduct{Input: validInput(), IdempotencyKey: "k", Fingerprint: "g"})
	if err != nil || res.Replayed {
		t.Fatalf("create after a refused request with the same key: %v, replayed %v", err, res.Replayed)
	}
}

func TestCreateProductIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	cmd := command.CreateProduct{Input: validInput(), IdempotencyKey: "key-1", Fingerprint: "sha256:abc"}
	first, err := e.create.Handle(ctx, cmd)
	if err != nil || first.Replayed {
		t.Fatalf("first: %v, replayed %v", err, first.Replayed)
	}
	e.clock.Advance(time.Second)
	again, err := e.create.Handle(ctx, cmd)
	if err != nil || !again.Replayed || again.Product.ID() != first.Product.ID() || again.Product.Version() != 1 {
		t.Fatalf("retry: %v, replayed %v, id %v", err, again.Replayed, again.Product)
	}
	other := cmd
	other.Fingerprint = "sha256:def"
	other.Input.Name = "Other"
	if _, err := e.create.Handle(ctx, other); !errors.Is(err, product.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyKeyReused", err)
	}
	e.requireEvents(t, product.EventCreated)

	// Without a key, a repeated request is a new product, refused here for its SKU.
	noKey := command.CreateProduct{Input: validInput()}
	if _, err := e.create.Handle(ctx, noKey); !errors.Is(err, product.ErrDuplicateSKU) {
		t.Fatalf("repeat without a key: %v, want ErrDuplicateSKU", err)
	}
	e.requireEvents(t, product.EventCreated)
}

func TestNewCreateProductHandlerNilDependencies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := command.NewCreateProductHandler(nil, time.Now, decorator.Deps{}); err == nil {
		t.Error("nil repository accepted")
	}
	if _, err := command.NewCreateProductHandler(e.repo, nil, decorator.Deps{}); err == nil {
		t.Error("nil clock accepted")
	}
	if _, err := command.NewUpdateProductHandler(nil, time.Now, decorator.Deps{}); err == nil {
		t.Error("update: nil repository accepted")
	}
	if _, err := command.NewUpdateProductHandler(e.repo, nil, decorator.Deps{}); err == nil {
		t.Error("update: nil clock accepted")
	}
	if _, err := command.NewDeleteProductHandler(nil, time.Now, decorator.Deps{}); err == nil {
		t.Error("delete: nil repository accepted")
	}
	if _, err := command.NewDeleteProductHandler(e.repo, nil, decorator.Deps{}); err == nil {
		t.Error("delete: nil clock accepted")
	}
}

func TestProductInputDetails(t *testing.T) {
	t.Parallel()
	in := validInput()
	in.SKU = "  SKU-1  "
	d, err := in.Details()
	if err != nil || d.SKU != "SKU-1" {
		t.Fatalf("Details: %+v, %v", d, err)
	}
	in.Attributes["color"] = "red"
	if d.Attributes["color"] != "steel" {
		t.Fatal("details alias the input's attributes")
	}
	in.Currency = "XXXX"
	if _, err := in.Details(); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("bad currency: %v", err)
	}
}
