// Package tracing is the catalog's OpenTelemetry adapter: it builds the tracer provider from
// the standard OTEL_* environment variables and carries the W3C trace context across the
// asynchronous hops of the write path (HTTP request -> outbox message metadata -> Kafka
// headers), so the projector's span joins the trace of the request that caused the event.
//
// Tracing is off unless configured: without OTEL_TRACES_EXPORTER or an OTLP endpoint (or with
// OTEL_SDK_DISABLED=true) Setup returns a no-op provider, and every wrapper in this package
// then hands back what it was given, so an unconfigured process pays nothing for it.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the spans this package starts, so a backend can
// tell the catalog's own spans from those of libraries.
const ScopeName = "github.com/marketplace/catalog/adapters/tracing"

// initialGlobal is the OpenTelemetry global provider as it is before anyone installs one (a
// delegating placeholder). Setup compares against it to notice a provider installed by an
// embedding program or a test.
var initialGlobal = otel.GetTracerProvider()

// Option tunes Setup.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger routes the SDK's own errors (an unreachable collector, dropped spans) into the
// process's structured log instead of the SDK's default unstructured stderr line.
func WithLogger(log *slog.Logger) Option {
	return func(o *options) { o.log = log }
}

// Configured reports whether the environment asks for traces: OTEL_TRACES_EXPORTER set to
// anything but "none", or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and OTEL_SDK_DISABLED not "true". The OpenTelemetry
// default would be to export OTLP to localhost when nothing is set; a catalog that nobody
// configured must not spend CPU on spans or log connection errors to a collector that does
// not exist, hence this stricter rule.
func Configured() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch exp := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false
	case "":
	default:
		return true
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup builds the process's tracer provider from the OTEL_* environment and installs it, with
// the W3C TraceContext+Baggage propagator, as the OpenTelemetry globals (libraries that trace
// through the globals then join the same traces). serviceName is the default service.name;
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it.
//
// The exporter comes from autoexport: OTEL_TRACES_EXPORTER=otlp (the default once tracing is
// configured) or console; OTEL_EXPORTER_OTLP_PROTOCOL (or ..._TRACES_PROTOCOL) picks
// http/protobuf (default) or grpc. Sampling follows OTEL_TRACES_SAMPLER/_ARG and batching
// OTEL_BSP_*, both read by the SDK.
//
// When tracing is not configured (see Configured) Setup returns a no-op provider, unless a
// program embedding the catalog (or a test) installed its own global provider first: that
// one is returned and left for its owner to shut down. shutdown flushes buffered spans; call
// it once, with a deadline, when the process stops.
func Setup(ctx context.Context, serviceName string, opts ...Option) (provider trace.TracerProvider, shutdown func(context.Context) error, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	nop := func(context.Context) error { return nil }
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !Configured() {
		if g := otel.GetTracerProvider(); installedByOthers(g) {
			return g, nop, nil
		}
		return noop.NewTracerProvider(), nop, nil
	}
	if o.log != nil {
		log := o.log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("opentelemetry", "err", err)
		}))
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: exporter from OTEL_TRACES_EXPORTER/OTEL_EXPORTER_OTLP_*: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return noop.NewTracerProvider(), nop, nil
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithFromEnv(), // last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	if o.log != nil {
		o.log.Info("tracing enabled", "exporter", exporterName(), "service", serviceName)
	}
	return tp, tp.Shutdown, nil
}

func exporterName() string {
	if e := os.Getenv("OTEL_TRACES_EXPORTER"); e != "" {
		return e
	}
	return "otlp"
}

// installedByOthers reports whether g is a provider someone installed with
// otel.SetTracerProvider rather than the placeholder the otel package starts with. The type
// check comes first because comparing interfaces of one non-comparable type would panic.
func installedByOthers(g trace.TracerProvider) bool {
	return reflect.TypeOf(g) != reflect.TypeOf(initialGlobal) || g != initialGlobal
}

// enabled reports whether tp records anything worth the wrappers' cost.
func enabled(tp trace.TracerProvider) bool {
	if tp == nil {
		return false
	}
	_, isNoop := tp.(noop.TracerProvider)
	return !isNoop
}
