package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketplace/catalog/adapters/tracing"
)

var otelEnv = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

// env clears every OTEL_* variable Setup reads, then sets kv.
func env(t *testing.T, kv ...string) {
	t.Helper()
	for _, k := range otelEnv {
		t.Setenv(k, "")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// TestSetup runs in one function because Setup installs process globals: the cases that must
// see no installed provider run first.
func TestSetup(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"nothing set", nil},
		{"exporter none", []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"}},
		{"SDK disabled", []string{"OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "otlp"}},
		{"only a service name", []string{"OTEL_SERVICE_NAME", "catalog-eu"}},
	} {
		t.Run("off/"+c.name, func(t *testing.T) {
			env(t, c.env...)
			if tracing.Configured() {
				t.Fatal("Configured() is true")
			}
			tp, shutdown, err := tracing.Setup(ctx, "catalog")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(noop.TracerProvider); !ok {
				t.Fatalf("provider %T, want the no-op provider", tp)
			}
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("bad exporter name fails", func(t *testing.T) {
		env(t, "OTEL_TRACES_EXPORTER", "carrier-pigeon")
		if _, _, err := tracing.Setup(ctx, "catalog"); err == nil {
			t.Fatal("no error for an unknown exporter")
		}
	})

	for _, c := range []struct {
		name, service string
		env           []string
	}{
		{"OTLP endpoint over HTTP", "catalog", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}},
		{"OTLP traces endpoint over gRPC", "catalog", []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}},
		{"console exporter and service name", "catalog-eu", []string{"OTEL_TRACES_EXPORTER", "console", "OTEL_SERVICE_NAME", "catalog-eu", "OTEL_TRACES_SAMPLER", "always_off"}},
	} {
		t.Run("on/"+c.name, func(t *testing.T) {
			env(t, c.env...)
			tp, shutdown, err := tracing.Setup(ctx, "catalog")
			if err != nil {
				t.Fatal(err)
			}
			sdk, ok := tp.(*sdktrace.TracerProvider)
			if !ok {
				t.Fatalf("provider %T, want the SDK's", tp)
			}
			if otel.GetTracerProvider() != trace.TracerProvider(sdk) {
				t.Error("the provider is not installed as the global")
			}
			if fields := strings.Join(otel.GetTextMapPropagator().Fields(), ","); !strings.Contains(fields, "traceparent") || !strings.Contains(fields, "baggage") {
				t.Errorf("global propagator fields %v, want W3C traceparent", otel.GetTextMapPropagator().Fields())
			}
			_, span := tp.Tracer("test").Start(ctx, "probe")
			span.End()
			if ro, ok := span.(sdktrace.ReadOnlySpan); ok {
				got, _ := ro.Resource().Set().Value("service.name")
				if got.AsString() != c.service {
					t.Errorf("service.name %q, want %q", got.AsString(), c.service)
				}
			} else if c.name != "console exporter and service name" { // always_off samples nothing
				t.Errorf("span %T is not an SDK span", span)
			}
			sctx, cancel := context.WithTimeout(ctx, 0)
			defer cancel()
			_ = shutdown(sctx) // nothing listens on 127.0.0.1:1; only the call matters
		})
	}

	t.Run("unconfigured but a provider installed by the embedding program", func(t *testing.T) {
		env(t)
		mine := sdktrace.NewTracerProvider()
		otel.SetTracerProvider(mine)
		t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
		tp, shutdown, err := tracing.Setup(ctx, "catalog")
		if err != nil {
			t.Fatal(err)
		}
		if tp != trace.TracerProvider(mine) {
			t.Fatalf("provider %T, want the installed one", tp)
		}
		if err := shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if _, span := mine.Tracer("t").Start(ctx, "x"); !span.IsRecording() {
			t.Fatal("Setup's shutdown shut down a provider it does not own")
		}
	})
}

func recorder(t *testing.T) (*tracetest.SpanRecorder, trace.TracerProvider) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return rec, tp
}

func TestInjectIntoMessage(t *testing.T) {
	_, tp := recorder(t)
	ctx, span := tp.Tracer("t").Start(context.Background(), "request")
	defer span.End()

	msg := message.NewMessage("1", nil)
	msg.Metadata = nil
	tracing.InjectIntoMessage(ctx, msg)
	tp0 := msg.Metadata.Get("traceparent")
	if !strings.Contains(tp0, span.SpanContext().TraceID().String()) || !strings.Contains(tp0, span.SpanContext().SpanID().String()) {
		t.Fatalf("traceparent %q does not name span %s", tp0, span.SpanContext().SpanID())
	}

	untraced := message.NewMessage("2", nil)
	untraced.Metadata.Set("event_type", "ProductCreated")
	tracing.InjectIntoMessage(context.Background(), untraced)
	if len(untraced.Metadata) != 1 {
		t.Fatalf("metadata %v: nothing should be added without a trace", untraced.Metadata)
	}
	tracing.InjectIntoMessage(ctx, nil) // must not panic
}

func TestHTTPMiddlewareNamesSpansByChiRoute(t *testing.T) {
	rec, tp := recorder(t)
	var inHandler trace.SpanContext
	mux := chi.NewRouter()
	mux.Get("/v1/products/{id}", func(w http.ResponseWriter, r *http.Request) {
		inHandler = trace.SpanContextFromContext(r.Context())
		if chi.URLParam(r, "id") != "42" {
			t.Errorf("id %q: routing broken by the middleware", chi.URLParam(r, "id"))
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Get("/healthz", func(http.ResponseWriter, *http.Request) {})
	h := tracing.HTTPMiddleware(tp)(mux)

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := httptest.NewRequest("GET", "/v1/products/42", nil)
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	res := httptest.NewRecorder()
	h.ServeHTTP(res, req)
	if res.Code != http.StatusNoContent {
		t.Fatalf("status %d", res.Code)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nowhere", nil))

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (the probe is not traced): %v", len(spans), names(spans))
	}
	s := spans[0]
	if s.Name() != "GET /v1/products/{id}" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v, want server span GET /v1/products/{id}", s.Name(), s.SpanKind())
	}
	if s.SpanContext().TraceID().String() != callerTrace || s.Parent().SpanID().String() != callerSpan {
		t.Errorf("span trace %s parent %s, want the caller's %s/%s", s.SpanContext().TraceID(), s.Parent().SpanID(), callerTrace, callerSpan)
	}
	if inHandler.SpanID() != s.SpanContext().SpanID() {
		t.Error("the handler's context does not carry the server span")
	}
	if v := attr(s.Attributes(), "http.route"); v != "/v1/products/{id}" {
		t.Errorf("http.route %q", v)
	}
	if spans[1].Name() != "GET" {
		t.Errorf("unmatched request span %q, want the bare method", spans[1].Name())
	}

	if got := tracing.HTTPMiddleware(noop.NewTracerProvider())(mux); got != http.Handler(mux) {
		t.Error("a disabled provider still wraps the handler")
	}
}

type capturePublisher struct {
	got []*message.Message
	err error
}

func (p *capturePublisher) Publish(_ string, msgs ...*message.Message) error {
	p.got = append(p.got, msgs...)
	return p.err
}
func (p *capturePublisher) Close() error { return nil }

func TestWrapPublisherAddsAProducerSpanBetweenWriterAndConsumer(t *testing.T) {
	rec, tp := recorder(t)
	ctx, writer := tp.Tracer("t").Start(context.Background(), "request")
	writer.End()
	traced := message.NewMessage("1", []byte("{}"))
	traced.Metadata.Set("event_type", "ProductCreated")
	traced.Metadata.Set("aggregate_id", "p-1")
	traced.Metadata.Set("aggregate_version", "3")
	tracing.InjectIntoMessage(ctx, traced)
	untraced := message.NewMessage("2", []byte("{}"))

	inner := &capturePublisher{}
	if err := tracing.WrapPublisher(tp, inner).Publish("product.events", traced, untraced); err != nil {
		t.Fatal(err)
	}
	var producer sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			if producer != nil {
				t.Fatal("more than one producer span: the untraced message got one")
			}
			producer = s
		}
	}
	if producer == nil || producer.Name() != "product.events publish" {
		t.Fatalf("no producer span product.events publish: %v", names(rec.Ended()))
	}
	if producer.Parent().SpanID() != writer.SpanContext().SpanID() || producer.SpanContext().TraceID() != writer.SpanContext().TraceID() {
		t.Error("the producer span is not a child of the writer's span")
	}
	if !strings.Contains(inner.got[0].Metadata.Get("traceparent"), producer.SpanContext().SpanID().String()) {
		t.Errorf("traceparent %q does not name the producer span", inner.got[0].Metadata.Get("traceparent"))
	}
	if inner.got[1].Metadata.Get("traceparent") != "" {
		t.Error("a traceparent was invented for an untraced message")
	}
	for k, want := range map[string]string{"messaging.system": "kafka", "messaging.destination.name": "product.events", "catalog.event.type": "ProductCreated", "catalog.aggregate.id": "p-1"} {
		if got := attr(producer.Attributes(), k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	failing := message.NewMessage("3", nil)
	tracing.InjectIntoMessage(ctx, failing)
	if err := tracing.WrapPublisher(tp, &capturePublisher{err: errors.New("kafka down")}).Publish("product.events", failing); err == nil {
		t.Fatal("the publisher's error was swallowed")
	}
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Status().Code != codes.Error {
		t.Errorf("failed publish span status %v", last.Status())
	}

	pub := &capturePublisher{}
	if got := tracing.WrapPublisher(noop.NewTracerProvider(), pub); got != message.Publisher(pub) {
		t.Error("a disabled provider still wraps the publisher")
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
