package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics observes the REST port.
type HTTPMetrics struct {
	requests *prometheus.HistogramVec
}

// NewHTTPMetrics registers catalog_http_request_duration_seconds{method,route,code} on r.
func NewHTTPMetrics(r *Registry) (*HTTPMetrics, error) {
	m := &HTTPMetrics{requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "catalog", Subsystem: "http", Name: "request_duration_seconds",
		Help:    "REST requests by method, chi route pattern and status code; count by code for error rates.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"method", "route", "code"})}
	if err := r.Register(m.requests); err != nil {
		return nil, err
	}
	return m, nil
}

// ObserveHTTP records one finished request. route must be the route pattern
// ("/v1/products/{id}"), never the raw path, or every product id would become a series; the
// REST port's RequestRecord gives exactly that. Methods outside the standard set are counted
// as "OTHER" for the same reason: a client choosing the method must not choose the series.
func (m *HTTPMetrics) ObserveHTTP(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(normalizeMethod(method), route, strconv.Itoa(status)).Observe(d.Seconds())
}

func normalizeMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}
