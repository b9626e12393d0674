package repotest

import (
	"context"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// EventRecorder keeps every message published on one topic and decodes them as product events.
// It serves as Fixture.Events for repositories that publish to a Watermill publisher.
type EventRecorder struct {
	mu   sync.Mutex
	msgs []*message.Message
}

// RecordEvents subscribes to topic on sub for the rest of the test and acks every message after
// keeping it. With a publisher that blocks until its subscribers ack (GoChannel with
// BlockPublishUntilSubscriberAck), a message is recorded before the Publish that sent it
// returns, so Events never races with the write that emitted them.
func RecordEvents(t *testing.T, sub message.Subscriber, topic string) *EventRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		t.Fatalf("repotest: subscribe to %s: %v", topic, err)
	}
	r := &EventRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range msgs {
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
			m.Ack()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// Messages returns the messages recorded so far, in arrival order.
func (r *EventRecorder) Messages() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*message.Message(nil), r.msgs...)
}

// Events decodes the messages recorded so far with envelope.Unmarshal. It fails t when a
// message is not a valid envelope or its UUID and metadata disagree with the envelope.
func (r *EventRecorder) Events(t *testing.T) []product.Event {
	t.Helper()
	msgs := r.Messages()
	out := make([]product.Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := envelope.Unmarshal(m.Payload)
		if err != nil {
			t.Fatalf("repotest: message %s: %v", m.UUID, err)
		}
		if m.UUID != e.ID.String() || m.Metadata.Get(envelope.MetaEventID) != e.ID.String() ||
			m.Metadata.Get(envelope.MetaEventType) != string(e.Type) ||
			m.Metadata.Get(envelope.MetaAggregateID) != e.AggregateID.String() {
			t.Fatalf("repotest: message %s: uuid and metadata %v disagree with the event %s (%s of %s)", m.UUID, m.Metadata, e.ID, e.Type, e.AggregateID)
		}
		out = append(out, e)
	}
	return out
}
