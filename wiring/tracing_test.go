package wiring_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/tracing"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/ports/projector"
)

// traceRecorder installs, for the test, a real SDK tracer provider that records every span in
// memory, and the W3C propagator, as the OpenTelemetry globals: what tracing.Setup installs
// in production, with an in-memory exporter instead of OTLP. The globals are put back to a
// no-op provider afterwards, which keeps tracing off for the tests that follow.
func traceRecorder(t *testing.T) (*tracetest.SpanRecorder, trace.TracerProvider) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		_ = tp.Shutdown(context.Background())
	})
	return rec, tp
}

// traceSpans returns the ended spans of one trace, by span id.
func traceSpans(rec *tracetest.SpanRecorder, id trace.TraceID) map[trace.SpanID]sdktrace.ReadOnlySpan {
	out := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out[s.SpanContext().SpanID()] = s
		}
	}
	return out
}

// traceAncestry lists the names of s's ancestors within spans, parent first.
func traceAncestry(spans map[trace.SpanID]sdktrace.ReadOnlySpan, s sdktrace.ReadOnlySpan) []string {
	var out []string
	for p, ok := spans[s.Parent().SpanID()]; ok; p, ok = spans[p.Parent().SpanID()] {
		out = append(out, p.Name())
	}
	return out
}

func traceAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func traceCreatedEvent(t *testing.T, sku string) *message.Message {
	t.Helper()
	now := time.Now()
	d, err := product.NewDetails(sku, "Traced lamp", "", "tracing", "Acme", 1999, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := envelope.Marshal(p.PopEvents()[0])
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestTraceCrossesKafkaFromRequestToProjector: a trace started by an HTTP request reaches the
// projector's span with the same trace id, through the message metadata and the Kafka headers
// only, with every piece of the production path except the database: the HTTP middleware, the
// Decorate hook (InjectIntoMessage), the relay's traced publisher, watermill-kafka over a real
// Kafka-protocol broker, and the projector's middleware on a Watermill router.
func TestTraceCrossesKafkaFromRequestToProjector(t *testing.T) {
	rec, tp := traceRecorder(t)
	cluster := testkafka.Embedded(t)
	topic := testkafka.CreateTopic(t, cluster, "traced", 3)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The API: the handler decorates the event message as ProductRepository does inside its
	// transaction, and "commits" it to an outbox.
	outbox := make(chan *message.Message, 1)
	api := chi.NewRouter()
	api.Post("/v1/products/{sku}", func(w http.ResponseWriter, r *http.Request) {
		msg := traceCreatedEvent(t, chi.URLParam(r, "sku"))
		tracing.InjectIntoMessage(r.Context(), msg)
		outbox <- msg
		w.WriteHeader(http.StatusCreated)
	})
	srv := httptest.NewServer(tracing.HTTPMiddleware(tp)(api))
	defer srv.Close()

	// The projector: a consumer group on the topic, the tracing middleware, a handler that
	// makes a downstream call of its own.
	sub, err := kafka.NewSubscriber(kafka.Config{Brokers: cluster.Brokers}, kafka.SubscriberConfig{ConsumerGroup: topic + "-projector", FromOldest: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	projected := make(chan *message.Message, 1)
	router.AddConsumerHandler(projector.HandlerName, topic, sub, func(msg *message.Message) error {
		_, span := otel.Tracer("test").Start(msg.Context(), "apply to read model")
		span.End()
		projected <- msg
		return nil
	}).AddMiddleware(tracing.ConsumerMiddleware(tracing.ConsumerConfig{TracerProvider: tp, Topic: topic, ConsumerGroup: topic + "-projector",
		Position: projector.WatermillKafkaPosition, Classify: projector.Classify}))
	ctx, cancel := context.WithCancel(context.Background())
	routerDone := make(chan struct{})
	go func() { defer close(routerDone); _ = router.Run(ctx) }()
	defer func() { cancel(); <-routerDone; _ = sub.Close() }()
	<-router.Running()

	res, err := http.Post(srv.URL+"/v1/products/TRACE-1", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", res.StatusCode)
	}

	// The relay: it sees only the stored row (payload and metadata, no request context) and
	// publishes through the traced (and, in production, metered) Kafka publisher.
	kpub, err := kafka.NewPublisher(kafka.Config{Brokers: cluster.Brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer kpub.Close()
	stored := <-outbox
	row := message.NewMessage(stored.UUID, stored.Payload)
	for k, v := range stored.Metadata {
		row.Metadata.Set(k, v)
	}
	if err := tracing.WrapPublisher(tp, kpub).Publish(topic, row); err != nil {
		t.Fatal(err)
	}

	var got *message.Message
	select {
	case got = <-projected:
	case <-time.After(30 * time.Second):
		t.Fatal("the projector did not receive the event within 30 s")
	}

	var server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			server = s
		}
	}
	if server == nil || server.Name() != "POST /v1/products/{sku}" {
		t.Fatalf("no server span POST /v1/products/{sku} among %d spans", len(rec.Ended()))
	}
	// The consumer span ends when the handler returns, a moment after it signalled.
	processName := topic + " process"
	var process sdktrace.ReadOnlySpan
	eventuallyT(t, 5*time.Second, "the projector span to end", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == processName {
				process = s
				return true
			}
		}
		return false
	})
	if process.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Fatalf("projector span in trace %s, request in trace %s", process.SpanContext().TraceID(), server.SpanContext().TraceID())
	}
	spans := traceSpans(rec, server.SpanContext().TraceID())
	if got, want := strings.Join(traceAncestry(spans, process), " < "), topic+" publish < POST /v1/products/{sku}"; got != want {
		t.Errorf("projector span ancestry %q, want %q", got, want)
	}
	if process.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("projector span kind %v", process.SpanKind())
	}
	var apply sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "apply to read model" {
			apply = s
		}
	}
	if apply == nil || apply.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Error("the handler's downstream span is not a child of the projector span")
	}
	for k, want := range map[string]string{
		"messaging.system": "kafka", "messaging.destination.name": topic, "messaging.consumer.group.name": topic + "-projector",
		"catalog.event.type": got.Metadata.Get(envelope.MetaEventType), "catalog.aggregate.id": got.Metadata.Get(envelope.MetaAggregateID),
		"catalog.aggregate.version": "1",
	} {
		if v := traceAttr(process, k); v != want {
			t.Errorf("projector span %s = %q, want %q", k, v, want)
		}
	}
	for _, k := range []string{"messaging.destination.partition.id", "messaging.kafka.offset"} {
		if traceAttr(process, k) == "" {
			t.Errorf("projector span lacks %s (from watermill-kafka's context)", k)
		}
	}

	// And it really travelled as a Kafka header.
	records := testkafka.ReadUntil(t, cluster, topic, 10*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 })
	if len(records) != 1 || !strings.Contains(records[0].Headers["traceparent"], server.SpanContext().TraceID().String()) {
		t.Fatalf("Kafka record headers %v, want a traceparent of trace %s", records, server.SpanContext().TraceID())
	}
}

// TestTraceFromRequestReachesProjectorThroughTheService: the same through `catalog serve`
// on the real servers: a request carrying a caller's traceparent creates a product, and the
// projector's span for that event belongs to the caller's trace, below the API's server span.
func TestTraceFromRequestReachesProjectorThroughTheService(t *testing.T) {
	rec, _ := traceRecorder(t) // before the service starts: unconfigured, tracing.Setup adopts it
	rp := startReadPath(t)

	const callerTrace, callerSpan = "5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8"
	created := rp.do(t, "POST", "/v1/products", `{"sku":"TRACE-SVC-1","name":"Traced lamp","description":"d","category":"tracing","brand":"Acme","price":{"amount":1999,"currency":"EUR"},"stock":1,"attributes":{}}`,
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %v", created.status, created.body)
	}
	id := created.body["id"].(string)
	tid, err := trace.TraceIDFromHex(callerTrace)
	if err != nil {
		t.Fatal(err)
	}
	processName := rp.cfg.ProductEventsTopic + " process"
	var process sdktrace.ReadOnlySpan
	eventuallyT(t, 30*time.Second, "the projector span of the request's trace", func() bool {
		for _, s := range traceSpans(rec, tid) {
			if s.Name() == processName && traceAttr(s, "catalog.aggregate.id") == id {
				process = s
				return true
			}
		}
		return false
	})
	spans := traceSpans(rec, tid)
	ancestry := traceAncestry(spans, process)
	if len(ancestry) == 0 || ancestry[len(ancestry)-1] != "POST /v1/products" {
		t.Fatalf("projector span ancestry %v does not lead up to the API's server span POST /v1/products", ancestry)
	}
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "POST /v1/products" {
			root = s
		}
	}
	if root.Parent().SpanID().String() != callerSpan || !root.Parent().IsRemote() {
		t.Errorf("server span parent %v, want the caller's span %s", root.Parent(), callerSpan)
	}
	if traceAttr(process, "messaging.destination.partition.id") == "" || traceAttr(process, "messaging.kafka.offset") == "" {
		t.Errorf("projector span lacks partition/offset: %v", process.Attributes())
	}
	t.Logf("trace %s: %s < %s", callerTrace, processName, strings.Join(ancestry, " < "))
}
