package metrics

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketplace/catalog/application/ops"
)

// clusterGauges are the replication of the topics and the search cluster's health, sampled
// with the other operational gauges.
type clusterGauges struct {
	brokers         prometheus.Gauge
	underReplicated *prometheus.GaugeVec
	belowMinISR     *prometheus.GaugeVec
	offline         *prometheus.GaugeVec
	searchStatus    prometheus.Gauge
	searchNodes     prometheus.Gauge
	unassigned      prometheus.Gauge
}

// searchStatusValue is catalog_search_cluster_status of a health status: what alert rules
// compare against.
var searchStatusValue = map[string]float64{ops.SearchGreen: 0, ops.SearchYellow: 1, ops.SearchRed: 2}

func newClusterGauges(r *Registry) (*clusterGauges, error) {
	g := &clusterGauges{
		brokers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "kafka", Name: "brokers",
			Help: "Live brokers in the Kafka cluster's metadata.",
		}),
		underReplicated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "kafka", Name: "under_replicated_partitions",
			Help: "Partitions of the topic with fewer in-sync replicas than replicas: a broker is down or catching up.",
		}, []string{"topic"}),
		belowMinISR: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "kafka", Name: "below_min_isr_partitions",
			Help: "Partitions of the topic with fewer in-sync replicas than min.insync.replicas: acks=all writes to them are refused.",
		}, []string{"topic"}),
		offline: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "kafka", Name: "offline_partitions",
			Help: "Partitions of the topic without a leader.",
		}, []string{"topic"}),
		searchStatus: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "search", Name: "cluster_status",
			Help: "Health of the read model's indices: 0 green, 1 yellow (a replica is missing), 2 red (a primary is missing).",
		}),
		searchNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "search", Name: "cluster_nodes",
			Help: "Nodes in the search cluster.",
		}),
		unassigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "catalog", Subsystem: "search", Name: "unassigned_shards",
			Help: "Shard copies of the read model's indices without a node.",
		}),
	}
	if err := r.Register(g.brokers, g.underReplicated, g.belowMinISR, g.offline, g.searchStatus, g.searchNodes, g.unassigned); err != nil {
		return nil, err
	}
	return g, nil
}

// sampleClusters adds the samples of the clusters' health to wg.
func (s *OpsSampler) sampleClusters(ctx context.Context, wg *sync.WaitGroup) {
	g := s.clusters
	if g == nil {
		return
	}
	if s.src.Replication != nil {
		wg.Go(func() {
			for _, topic := range []string{s.cfg.EventsTopic, s.cfg.DLQTopic} {
				tr, brokers, err := s.src.Replication.TopicReplication(ctx, topic)
				if s.failed(ctx, "kafka_replication", err) {
					return
				}
				g.brokers.Set(float64(brokers))
				g.underReplicated.WithLabelValues(topic).Set(float64(len(tr.UnderReplicated)))
				g.belowMinISR.WithLabelValues(topic).Set(float64(len(tr.BelowMinISR)))
				g.offline.WithLabelValues(topic).Set(float64(len(tr.Offline)))
			}
		})
	}
	if s.src.Search != nil {
		wg.Go(func() {
			h, err := s.src.Search.ClusterHealth(ctx)
			if s.failed(ctx, "search_health", err) {
				return
			}
			v, ok := searchStatusValue[h.Status]
			if !ok {
				v = searchStatusValue[ops.SearchRed]
			}
			g.searchStatus.Set(v)
			g.searchNodes.Set(float64(h.Nodes))
			g.unassigned.Set(float64(h.UnassignedShards))
		})
	}
}
