package metrics

import (
	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
)

// InstrumentRouter adds Watermill's Prometheus router metrics to router, on this registry:
// catalog_watermill_handler_execution_time_seconds{handler_name,success} and
// catalog_watermill_subscriber_messages_received_total{handler_name,subscriber_name,acked}
// (plus publish times for handlers that publish). They show, per handler, how long messages
// take and how many are acked or nacked, which the catalog's own series do not.
//
// Call it right after message.NewRouter and before any handler middleware is added: Watermill
// runs middlewares in the order they were added, router-level ones included, so called first
// the timing covers retries and the dead-lettering. It may be called for several routers (one
// per relay lane, the projector's): they share the series, told apart by handler_name
// (events_forwarder for the relay, product_search_projector for the projector). Its signature
// fits a func(*message.Router) hook, so the method value can be passed as is.
func (r *Registry) InstrumentRouter(router *message.Router) {
	wmetrics.NewPrometheusMetricsBuilder(r.reg, "catalog", "watermill").AddPrometheusRouterMetrics(router)
}
