package tracing

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

	"github.com/marketplace/catalog/application/ops"
)

// ConsumerConfig configures ConsumerMiddleware.
type ConsumerConfig struct {
	// TracerProvider starts the spans; nil means the OpenTelemetry global. A disabled provider
	// turns the middleware into a pass-through.
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context from the message metadata (Kafka headers); nil means
	// the OpenTelemetry global, which Setup sets to W3C TraceContext+Baggage.
	Propagator propagation.TextMapPropagator
	// Topic names the span ("<topic> process") and is its destination when the router's
	// context does not say; empty means product.events.
	Topic string
	// ConsumerGroup, when set, is recorded as messaging.consumer.group.name.
	ConsumerGroup string
	// Position reads the message's partition and offset from its context; nil records neither.
	Position func(ctx context.Context) (partition int32, offset int64, ok bool)
	// Classify names the failure class of a handler error, recorded as error.type; nil
	// records none. The consumer that owns the error taxonomy passes its classifier.
	Classify func(error) ops.FailureClass
}

// ConsumerMiddleware returns a Watermill handler middleware that continues, for each message,
// the trace its producer started: it reads traceparent/tracestate from the metadata (Kafka
// headers), starts a consumer span "<topic> process" below it and puts the span into the
// message's context, so that the handler and everything it calls with msg.Context() are
// children of it. Add it outside every other layer (before the poison queue) so one span covers
// the retries and the dead-lettering of the message: a message that goes to the DLQ ends its
// span with an error status and the failure class, although the poison queue acks it.
func ConsumerMiddleware(cfg ConsumerConfig) message.HandlerMiddleware {
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if !enabled(cfg.TracerProvider) {
		return func(h message.HandlerFunc) message.HandlerFunc { return h }
	}
	if cfg.Propagator == nil {
		cfg.Propagator = otel.GetTextMapPropagator()
	}
	if cfg.Topic == "" {
		cfg.Topic = "product.events"
	}
	tracer := cfg.TracerProvider.Tracer(ScopeName)
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
				if cfg.Classify != nil {
					span.SetAttributes(semconv.ErrorTypeKey.String(string(cfg.Classify(err))))
				}
			case msg.Metadata.Get(ops.DLQHeaderErrorClass) != "":
				// The poison queue acked the message after publishing it to the DLQ.
				span.SetStatus(codes.Error, "sent to the dead-letter queue: "+msg.Metadata.Get(ops.DLQHeaderReason))
				span.SetAttributes(
					semconv.ErrorTypeKey.String(msg.Metadata.Get(ops.DLQHeaderErrorClass)),
					attribute.Bool("catalog.dead_lettered", true),
				)
			}
			return out, err
		}
	}
}

// consumerAttributes adds where the message came from (topic, partition, offset, group) to the
// message's own attributes.
func consumerAttributes(cfg ConsumerConfig, msg *message.Message) []attribute.KeyValue {
	ctx := msg.Context()
	topic := message.SubscribeTopicFromCtx(ctx)
	if topic == "" {
		topic = cfg.Topic
	}
	attrs := messageAttributes(semconv.MessagingOperationTypeProcess, "process", topic, msg)
	if cfg.ConsumerGroup != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(cfg.ConsumerGroup))
	}
	if cfg.Position != nil {
		if p, o, ok := cfg.Position(ctx); ok {
			attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(p))),
				semconv.MessagingKafkaOffsetKey.Int64(o))
		}
	}
	return attrs
}
