package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/ops"
)

func tracingRig(t *testing.T) (*tracetest.SpanRecorder, trace.TracerProvider, message.HandlerMiddleware) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	mw := tracing.ConsumerMiddleware(tracing.ConsumerConfig{
		TracerProvider: tp,
		Propagator:     propagation.TraceContext{},
		Topic:          "product.events",
		ConsumerGroup:  "catalog-projector",
		Position:       func(context.Context) (int32, int64, bool) { return 3, 42, true },
		Classify:       func(error) ops.FailureClass { return ops.ClassTransient },
	})
	return rec, tp, mw
}

func eventMessage(ctx context.Context) *message.Message {
	msg := message.NewMessage("m-1", []byte("{}"))
	msg.Metadata.Set(envelope.MetaEventID, "e-1")
	msg.Metadata.Set(envelope.MetaEventType, "ProductCreated")
	msg.Metadata.Set(envelope.MetaAggregateID, "p-1")
	msg.Metadata.Set(envelope.MetaAggregateVersion, "7")
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(msg.Metadata))
	return msg
}

func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span %q", name)
	return nil
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.String()
		}
	}
	return ""
}

// TestTracingContinuesTheProducersTrace: the consumer span is a child of the span whose
// context the message carries, and the handler's own spans are children of the consumer span.
func TestConsumerMiddlewareContinuesTheProducersTrace(t *testing.T) {
	rec, tp, mw := tracingRig(t)
	producerCtx, producer := tp.Tracer("test").Start(context.Background(), "relay publish")
	producer.End()

	h := mw(func(msg *message.Message) ([]*message.Message, error) {
		_, child := tp.Tracer("test").Start(msg.Context(), "apply to read model")
		child.End()
		return nil, nil
	})
	if _, err := h(eventMessage(producerCtx)); err != nil {
		t.Fatal(err)
	}
	process := spanNamed(t, rec, "product.events process")
	if process.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind %v, want consumer", process.SpanKind())
	}
	if process.SpanContext().TraceID() != producer.SpanContext().TraceID() || process.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Error("the consumer span is not a child of the producer's span")
	}
	child := spanNamed(t, rec, "apply to read model")
	if child.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Error("the handler's span is not a child of the consumer span")
	}
	for k, want := range map[string]string{
		"messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "product.events",
		"messaging.consumer.group.name": "catalog-projector", "messaging.message.id": "m-1",
		"catalog.event.id": "e-1", "catalog.event.type": "ProductCreated", "catalog.aggregate.id": "p-1", "catalog.aggregate.version": "7",
		"messaging.destination.partition.id": "3", "messaging.kafka.offset": "42",
	} {
		if got := attrOf(process, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if process.Status().Code == codes.Error {
		t.Errorf("status %v for a success", process.Status())
	}
}

func TestConsumerMiddlewareWithoutContextStartsARootSpan(t *testing.T) {
	rec, _, mw := tracingRig(t)
	if _, err := mw(func(*message.Message) ([]*message.Message, error) { return nil, nil })(eventMessage(context.Background())); err != nil {
		t.Fatal(err)
	}
	if s := spanNamed(t, rec, "product.events process"); s.Parent().IsValid() {
		t.Errorf("parent %v for a message without trace context", s.Parent())
	}
}

func TestConsumerMiddlewareMarksFailuresAndDeadLetters(t *testing.T) {
	rec, _, mw := tracingRig(t)
	_, _ = mw(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("search cluster: connection refused")
	})(eventMessage(context.Background()))
	failed := rec.Ended()[0]
	if failed.Status().Code != codes.Error || attrOf(failed, "error.type") != string(ops.ClassTransient) {
		t.Errorf("failed span status %v error.type %q", failed.Status(), attrOf(failed, "error.type"))
	}

	// What annotate and the poison queue leave behind: DLQ headers on the message, error nil.
	_, _ = mw(func(msg *message.Message) ([]*message.Message, error) {
		msg.Metadata.Set(ops.DLQHeaderErrorClass, string(ops.ClassUndecodable))
		msg.Metadata.Set(ops.DLQHeaderReason, "not an event")
		return nil, nil
	})(eventMessage(context.Background()))
	dead := rec.Ended()[1]
	if dead.Status().Code != codes.Error || attrOf(dead, "error.type") != "undecodable" || attrOf(dead, "catalog.dead_lettered") != "true" {
		t.Errorf("dead-lettered span status %v attributes %v", dead.Status(), dead.Attributes())
	}
}

func TestConsumerMiddlewareIsAPassThroughWhenDisabled(t *testing.T) {
	_, tp, _ := tracingRig(t)
	producerCtx, producer := tp.Tracer("test").Start(context.Background(), "relay publish")
	producer.End()
	mw := tracing.ConsumerMiddleware(tracing.ConsumerConfig{TracerProvider: noop.NewTracerProvider()})
	_, _ = mw(func(msg *message.Message) ([]*message.Message, error) {
		if trace.SpanContextFromContext(msg.Context()).IsValid() {
			t.Error("a disabled tracer still extracted the trace context into the message")
		}
		return nil, nil
	})(eventMessage(producerCtx))
}
