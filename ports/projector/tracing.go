package projector

import (
	"context"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketplace/catalog/api/envelope"
)

// TracingScope is the instrumentation scope of the projector's spans.
const TracingScope = "github.com/marketplace/catalog/ports/projector"

// TracingConfig configures Tracing.
type TracingConfig struct {
	// TracerProvider starts the spans; nil means the OpenTelemetry global. A no-op provider
	// turns the middleware into a pass-through.
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context from the message metadata (Kafka headers); nil means
	// the OpenTelemetry global, which the tracing adapter sets to W3C TraceContext+Baggage.
	Propagator propagation.TextMapPropagator
	// Topic names the span ("<topic> process") and is its destination when the router's
	// context does not say; empty means product.events.
	Topic string
	// ConsumerGroup, when set, is recorded as messaging.consumer.group.name.
	ConsumerGroup string
	// Position reads the message's partition and offset (see Config.Position); nil reads
	// watermill-kafka's context.
	Position func(ctx context.Context) (partition int32, offset int64, ok bool)
}

// Tracing returns a handler middleware that continues, for each message, the trace its
// producer started: it reads traceparent/tracestate from the metadata (which watermill-kafka
// filled from the Kafka headers), starts a consumer span "<topic> process" below it and puts
// the span into the message's context, so that the projection and everything it calls with
// msg.Context() are children of it. Add it outside every other layer (before the poison queue)
// so one span covers the retries and the dead-lettering of the message: a message that goes
// to the DLQ ends its span with an error status and the failure class, although the poison
// queue acks it.
func Tracing(cfg TracingConfig) message.HandlerMiddleware {
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if _, off := cfg.TracerProvider.(noop.TracerProvider); off {
		return func(h message.HandlerFunc) message.HandlerFunc { return h }
	}
	if cfg.Propagator == nil {
		cfg.Propagator = otel.GetTextMapPropagator()
	}
	if cfg.Topic == "" {
		cfg.Topic = "product.events"
	}
	tracer := cfg.TracerProvider.Tracer(TracingScope)
	name := cfg.Topic + " process"
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := cfg.Propagator.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
			ctx, span := tracer.Start(ctx, name,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(consumerAttributes(cfg, msg)...),
			)
			defer span.End()
			msg.SetContext(ctx)

			out, err := h(msg)
			switch {
			case err != nil:
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				span.SetAttributes(semconv.ErrorTypeKey.String(string(Classify(err))))
			case msg.Metadata.Get(HeaderErrorClass) != "":
				// The poison queue acked the message after publishing it to the DLQ.
				span.SetStatus(codes.Error, "sent to the dead-letter queue: "+msg.Metadata.Get(HeaderReason))
				span.SetAttributes(
					semconv.ErrorTypeKey.String(msg.Metadata.Get(HeaderErrorClass)),
					attribute.Bool("catalog.dead_lettered", true),
				)
			}
			return out, err
		}
	}
}

// consumerAttributes describes the consumed message: where it came from (topic, partition,
// offset from watermill-kafka's context) and which event it is (from the envelope metadata).
func consumerAttributes(cfg TracingConfig, msg *message.Message) []attribute.KeyValue {
	ctx := msg.Context()
	topic := message.SubscribeTopicFromCtx(ctx)
	if topic == "" {
		topic = cfg.Topic
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingMessageID(msg.UUID),
	}
	if cfg.ConsumerGroup != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(cfg.ConsumerGroup))
	}
	position := cfg.Position
	if position == nil {
		position = WatermillKafkaPosition
	}
	if p, o, ok := position(ctx); ok {
		attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(p))),
			semconv.MessagingKafkaOffsetKey.Int64(o))
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
