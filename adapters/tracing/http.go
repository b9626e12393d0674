package tracing

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// untracedPaths are probes and scrapes: hit every few seconds by machines, they would make
// most of the traces and tell nothing.
var untracedPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// HTTPMiddleware returns the server-side tracing middleware for the REST port (its
// Deps.Middleware): it continues a caller's W3C trace (traceparent header) or starts one,
// puts the server span into the request context, where the repository's Decorate hook
// (InjectIntoMessage) finds it, and names the span "METHOD /route/{pattern}" after chi's
// route, so span names stay few however many products there are. Probes and /metrics are not
// traced. With a disabled provider it returns the handler unchanged.
//
// HTTP metrics are not recorded here (the Prometheus histogram of the metrics adapter does
// that), so otelhttp gets a no-op meter whatever global meter provider is installed.
func HTTPMiddleware(tp trace.TracerProvider) func(http.Handler) http.Handler {
	if !enabled(tp) {
		return func(next http.Handler) http.Handler { return next }
	}
	return func(next http.Handler) http.Handler {
		return otelhttp.NewHandler(nameByRoute(next), "http.server",
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelhttp.WithFilter(func(r *http.Request) bool { return !untracedPaths[r.URL.Path] }),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		)
	}
}

// nameByRoute renames the server span after the chi route that served the request. The
// middleware sits outside the router, where the route is unknown until the router is done and
// chi recycles its routing context on the way out; so it hands chi a routing context of its
// own (chi uses one it finds in the request, as it does for sub-routers) and reads the
// pattern from it afterwards.
func nameByRoute(next http.Handler) http.Handler {
	routes, _ := next.(chi.Routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx := chi.RouteContext(r.Context()) // set when mounted under another chi router
		if rctx == nil {
			rctx = chi.NewRouteContext()
			rctx.Routes = routes
			r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		}
		defer func() {
			if pattern := rctx.RoutePattern(); pattern != "" {
				span := trace.SpanFromContext(r.Context())
				span.SetName(r.Method + " " + pattern)
				span.SetAttributes(semconv.HTTPRoute(pattern))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
