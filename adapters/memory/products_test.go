package memory_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/marketplace/catalog/adapters/memory"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/repotest"
)

func newPubSub(t *testing.T) *gochannel.GoChannel {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	t.Cleanup(func() { _ = pubsub.Close() })
	return pubsub
}

func TestProductRepositoryContract(t *testing.T) {
	repotest.RunProductRepositoryContract(t, func(t *testing.T) repotest.Fixture {
		pubsub := newPubSub(t)
		rec := repotest.RecordEvents(t, pubsub, memory.DefaultTopic)
		repo, err := memory.NewProductRepository(pubsub, memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return repotest.Fixture{Repo: repo, Events: rec.Events}
	})
}

func TestConfig(t *testing.T) {
	t.Parallel()
	if err := (memory.Config{}).Validate(); err == nil {
		t.Error("empty topic validated")
	}
	if err := (memory.Config{Topic: "x"}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := memory.NewProductRepository(nil, memory.Config{}); err == nil {
		t.Error("nil publisher accepted")
	}
}

func newDetails(t *testing.T, sku string) product.Details {
	t.Helper()
	d, err := product.NewDetails(sku, "Name", "", "", "", 100, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newProduct(t *testing.T, sku string) *product.Product {
	t.Helper()
	now := time.Now()
	p, err := product.New(product.NewID(now), newDetails(t, sku), now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishesOnConfiguredTopic(t *testing.T) {
	t.Parallel()
	pubsub := newPubSub(t)
	custom := repotest.RecordEvents(t, pubsub, "test.product.events")
	def := repotest.RecordEvents(t, pubsub, memory.DefaultTopic)
	repo, err := memory.NewProductRepository(pubsub, memory.Config{Topic: "test.product.events"})
	if err != nil {
		t.Fatal(err)
	}
	p := newProduct(t, "SKU-1")
	if _, _, err := repo.Add(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	ev := custom.Events(t)
	if len(ev) != 1 || ev[0].Type != product.EventCreated || ev[0].AggregateID != p.ID() {
		t.Fatalf("events on the configured topic: %+v", ev)
	}
	if n := len(def.Messages()); n != 0 {
		t.Fatalf("%d messages on the default topic", n)
	}
}

type failingPublisher struct{}

var errPublish = errors.New("broker down")

func (failingPublisher) Publish(string, ...*message.Message) error { return errPublish }
func (failingPublisher) Close() error                              { return nil }

func TestPublishFailureStoresNothing(t *testing.T) {
	t.Parallel()
	repo, err := memory.NewProductRepository(failingPublisher{}, memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := newProduct(t, "SKU-1")
	key := &product.IdempotencyKey{Key: "k", Fingerprint: "f"}
	if _, _, err := repo.Add(ctx, p, key); !errors.Is(err, errPublish) {
		t.Fatalf("Add: %v, want the publish error", err)
	}
	if _, err := repo.Get(ctx, p.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound", err)
	}
	// Neither the SKU nor the key was taken.
	q := newProduct(t, "SKU-1")
	if _, _, err := repo.Add(ctx, q, &product.IdempotencyKey{Key: "k", Fingerprint: "other"}); !errors.Is(err, errPublish) {
		t.Fatalf("second Add: %v, want the publish error (not a duplicate SKU or reused key)", err)
	}
}

func TestPublishFailureOnUpdateStoresNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pub := &switchPublisher{next: newPubSub(t)}
	repo, err := memory.NewProductRepository(pub, memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := newProduct(t, "SKU-1")
	if _, _, err := repo.Add(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	pub.fail(true)
	_, err = repo.Update(ctx, p.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
		return p, p.ChangeStock(9, time.Now())
	})
	if !errors.Is(err, errPublish) {
		t.Fatalf("Update: %v, want the publish error", err)
	}
	got, err := repo.Get(ctx, p.ID())
	if err != nil || got.Version() != 1 || got.Details().Stock != 1 {
		t.Fatalf("Get after failed publish: %v, %v", got, err)
	}
}

type switchPublisher struct {
	mu     sync.Mutex
	failOn bool
	next   message.Publisher
}

func (s *switchPublisher) fail(on bool) { s.mu.Lock(); s.failOn = on; s.mu.Unlock() }

func (s *switchPublisher) Publish(topic string, msgs ...*message.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failOn {
		return errPublish
	}
	return s.next.Publish(topic, msgs...)
}

func (s *switchPublisher) Close() error { return nil }

func TestUpdateFnResultChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, err := memory.NewProductRepository(newPubSub(t), memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := newProduct(t, "SKU-1")
	other := newProduct(t, "SKU-2")
	if _, _, err := repo.Add(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func(context.Context, *product.Product) (*product.Product, error){
		"nil product": func(context.Context, *product.Product) (*product.Product, error) { return nil, nil },
		"other product": func(context.Context, *product.Product) (*product.Product, error) {
			return other, other.ChangeStock(7, time.Now())
		},
	} {
		if _, err := repo.Update(ctx, p.ID(), fn); err == nil {
			t.Errorf("%s: Update succeeded", name)
		}
	}
	if _, err := repo.Get(ctx, other.ID()); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("a product returned by updateFn for another id was stored: %v", err)
	}
	if _, _, err := repo.Add(ctx, p, nil); err == nil {
		t.Fatal("a second Add of the same id succeeded")
	}
}

// TestUpdateIsSerialised shows that the repository's lock is held across updateFn: while one
// updateFn runs, no other operation of the repository gets in.
func TestUpdateIsSerialised(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo, err := memory.NewProductRepository(newPubSub(t), memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newProduct(t, "SKU-A"), newProduct(t, "SKU-B")
	for _, p := range []*product.Product{a, b} {
		if _, _, err := repo.Add(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := repo.Update(ctx, a.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
			close(entered)
			<-release
			return p, p.ChangeStock(2, time.Now())
		})
		firstDone <- err
	}()
	<-entered

	secondEntered := make(chan struct{})
	secondDone := make(chan error, 1)
	go func() {
		_, err := repo.Update(ctx, b.ID(), func(_ context.Context, p *product.Product) (*product.Product, error) {
			close(secondEntered)
			return p, p.ChangeStock(3, time.Now())
		})
		secondDone <- err
	}()
	getDone := make(chan struct{})
	go func() {
		_, _ = repo.Get(ctx, a.ID())
		close(getDone)
	}()
	select {
	case <-secondEntered:
		t.Fatal("a second updateFn ran while the first one held the repository")
	case <-getDone:
		t.Fatal("Get ran while an updateFn held the repository")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	<-getDone
}
