package command_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/marketplace/catalog/adapters/memory"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/repotest"
)

const topic = "test.product.events"

// fakeClock returns a fixed time with nanoseconds, advanced explicitly.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// observation is one call of the metrics client.
type observation struct {
	name string
	err  error
}

type fakeMetrics struct {
	mu  sync.Mutex
	obs []observation
}

func (m *fakeMetrics) ObserveUseCase(name string, _ time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.obs = append(m.obs, observation{name, err})
}

func (m *fakeMetrics) last(t *testing.T) observation {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.obs) == 0 {
		t.Fatal("metrics client not called")
	}
	return m.obs[len(m.obs)-1]
}

// env is the write side of the application on the in-memory repository, with a GoChannel as the
// event bus and a recorder subscribed to the events topic.
type env struct {
	repo    *memory.ProductRepository
	pubsub  *gochannel.GoChannel
	events  *repotest.EventRecorder
	clock   *fakeClock
	metrics *fakeMetrics
	create  command.CreateProductHandler
	update  command.UpdateProductHandler
	delete  command.DeleteProductHandler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	t.Cleanup(func() { _ = pubsub.Close() })
	e := &env{
		pubsub:  pubsub,
		events:  repotest.RecordEvents(t, pubsub, topic),
		clock:   &fakeClock{now: time.Date(2025, 5, 4, 3, 2, 1, 987654321, time.UTC)},
		metrics: &fakeMetrics{},
	}
	repo, err := memory.NewProductRepository(pubsub, memory.Config{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	e.repo = repo
	deps := decorator.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: e.metrics}
	if e.create, err = command.NewCreateProductHandler(repo, e.clock.Now, deps); err != nil {
		t.Fatal(err)
	}
	if e.update, err = command.NewUpdateProductHandler(repo, e.clock.Now, deps); err != nil {
		t.Fatal(err)
	}
	if e.delete, err = command.NewDeleteProductHandler(repo, e.clock.Now, deps); err != nil {
		t.Fatal(err)
	}
	return e
}

func validInput() command.ProductInput {
	return command.ProductInput{
		SKU: "SKU-1", Name: "Kettle", Description: "Boils water.", Category: "kitchen", Brand: "Acme",
		Amount: 2999, Currency: "EUR", Stock: 10, Attributes: map[string]string{"color": "steel"},
	}
}

func (e *env) mustCreate(t *testing.T, in command.ProductInput) *product.Product {
	t.Helper()
	res, err := e.create.Handle(context.Background(), command.CreateProduct{Input: in})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.Product
}

// requireEvents checks the event types recorded so far, in order.
func (e *env) requireEvents(t *testing.T, want ...product.EventType) []product.Event {
	t.Helper()
	got := e.events.Events(t)
	if len(got) != len(want) {
		types := make([]product.EventType, len(got))
		for i, ev := range got {
			types[i] = ev.Type
		}
		t.Fatalf("events %v, want %v", types, want)
	}
	for i, ev := range got {
		if ev.Type != want[i] {
			t.Fatalf("event %d is %s, want %s", i, ev.Type, want[i])
		}
	}
	return got
}

func requireInputState(t *testing.T, d product.Details, in command.ProductInput) {
	t.Helper()
	if d.SKU != in.SKU || d.Name != in.Name || d.Description != in.Description || d.Category != in.Category ||
		d.Brand != in.Brand || d.Price.Amount() != in.Amount || d.Price.Currency() != in.Currency || d.Stock != in.Stock ||
		!maps.Equal(d.Attributes, in.Attributes) {
		t.Fatalf("details %+v, want %+v", d, in)
	}
}

func requireValidationError(t *testing.T, err error, fields ...string) {
	t.Helper()
	var ve *product.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("err %v (%T), want a *product.ValidationError", err, err)
	}
	got := map[string]bool{}
	for _, f := range ve.Fields {
		got[f.Field] = true
	}
	for _, f := range fields {
		if !got[f] {
			t.Errorf("validation error %v does not name %s", err, f)
		}
	}
	if len(got) != len(fields) {
		t.Errorf("validation error names %d fields, want %d: %v", len(got), len(fields), err)
	}
}

func ptr[T any](v T) *T { return &v }
