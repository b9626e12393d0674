package tracing

import (
	"context"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketplace/catalog/api/envelope"
)

// InjectIntoMessage writes the trace context of ctx (traceparent, tracestate, baggage) into
// msg's metadata, which the outbox stores with the event and watermill-kafka turns into Kafka
// headers. The relay and the projector have no request context, only the message, so this is
// how they find the trace the event belongs to. Its signature is that of
// postgres.ProductRepositoryConfig.Decorate; it writes nothing when ctx carries no trace, so it
// costs next to nothing when tracing is off.
func InjectIntoMessage(ctx context.Context, msg *message.Message) {
	if msg == nil || (!trace.SpanContextFromContext(ctx).IsValid() && baggage.FromContext(ctx).Len() == 0) {
		return
	}
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(msg.Metadata))
}

// WrapPublisher returns pub traced: each message that carries a trace context gets a producer
// span "<topic> publish" (a child of the span that wrote the event), and the message's
// traceparent is replaced by that span's, so the consumer's span hangs below the hop that
// actually delivered it. Messages without a trace context pass untouched: the relay forwards
// every event, and starting a root trace for each would flood the backend with one-span
// traces. With a disabled provider pub itself is returned.
//
// Wrap the Kafka publisher the relay uses (the forwarder hands it the unwrapped event with its
// metadata), inside or outside metrics.RelayMetrics.WrapPublisher: they do not interact.
func WrapPublisher(tp trace.TracerProvider, pub message.Publisher) message.Publisher {
	if !enabled(tp) {
		return pub
	}
	return tracedPublisher{Publisher: pub, tracer: tp.Tracer(ScopeName)}
}

type tracedPublisher struct {
	message.Publisher
	tracer trace.Tracer
}

func (p tracedPublisher) Publish(topic string, msgs ...*message.Message) error {
	prop := otel.GetTextMapPropagator()
	spans := make([]trace.Span, 0, len(msgs))
	for _, msg := range msgs {
		if msg == nil || msg.Metadata == nil {
			continue
		}
		carrier := propagation.MapCarrier(msg.Metadata)
		parent := prop.Extract(context.Background(), carrier)
		if !trace.SpanContextFromContext(parent).IsValid() {
			continue
		}
		ctx, span := p.tracer.Start(parent, topic+" publish",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(messageAttributes(semconv.MessagingOperationTypeSend, "send", topic, msg)...),
		)
		prop.Inject(ctx, carrier)
		spans = append(spans, span)
	}
	err := p.Publisher.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
		}
		span.End()
	}
	return err
}

// messageAttributes describes an event message for a producer or consumer span: the OTel
// messaging conventions plus the event's identity from the envelope metadata. Both sides of
// the broker describe a message through this one function, so their spans always agree.
func messageAttributes(op attribute.KeyValue, opName, topic string, msg *message.Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		op,
		semconv.MessagingOperationName(opName),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingMessageID(msg.UUID),
	}
	if v := msg.Metadata.Get(envelope.MetaEventID); v != "" {
		attrs = append(attrs, attribute.String("catalog.event.id", v))
	}
	if v := msg.Metadata.Get(envelope.MetaEventType); v != "" {
		attrs = append(attrs, attribute.String("catalog.event.type", v))
	}
	if v := msg.Metadata.Get(envelope.MetaAggregateID); v != "" {
		attrs = append(attrs, attribute.String("catalog.aggregate.id", v))
	}
	if v, err := strconv.ParseInt(msg.Metadata.Get(envelope.MetaAggregateVersion), 10, 64); err == nil {
		attrs = append(attrs, attribute.Int64("catalog.aggregate.version", v))
	}
	return attrs
}
