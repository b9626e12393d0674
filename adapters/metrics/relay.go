package metrics

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketplace/catalog/api/envelope"
)

// RelayMetrics observes the outbox relay.
type RelayMetrics struct {
	forwarded *prometheus.CounterVec
	latency   prometheus.Histogram
}

// NewRelayMetrics registers the relay's series on r.
func NewRelayMetrics(r *Registry) (*RelayMetrics, error) {
	m := &RelayMetrics{
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "catalog", Subsystem: "outbox_relay", Name: "events_total",
			Help: "Outbox events the relay tried to forward to Kafka, by result (ok, error).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "catalog", Subsystem: "outbox_relay", Name: "commit_to_kafka_seconds",
			Help:    "Time from the event's occurred_at (its commit) to Kafka's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	// Both results exist from the start, so that rate() and increase() see the first error
	// instead of a series that appears with its first sample.
	m.forwarded.WithLabelValues("ok")
	m.forwarded.WithLabelValues("error")
	if err := r.Register(m.forwarded, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

// WrapPublisher returns pub observed: every event the relay hands to Kafka is counted, and
// its latency from occurred_at (the commit) to Kafka's acknowledgement recorded. Wrapping the
// publisher rather than the forwarder's handler sees the unwrapped event with its metadata.
func (m *RelayMetrics) WrapPublisher(pub message.Publisher) message.Publisher {
	return observedPublisher{Publisher: pub, m: m}
}

type observedPublisher struct {
	message.Publisher
	m *RelayMetrics
}

func (p observedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		p.m.forwarded.WithLabelValues("error").Add(float64(len(msgs)))
		return err
	}
	p.m.forwarded.WithLabelValues("ok").Add(float64(len(msgs)))
	for _, msg := range msgs {
		if t, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(envelope.MetaOccurredAt)); err == nil {
			p.m.latency.Observe(time.Since(t).Seconds())
		}
	}
	return nil
}
