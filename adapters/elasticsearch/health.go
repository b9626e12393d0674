package elasticsearch

import (
	"context"
	"fmt"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/application/ops"
)

var _ ops.SearchCluster = (*Target)(nil)

// clusterHealth is the answer of _cluster/health, for the whole cluster or some indices.
type clusterHealth struct {
	Status                  string `json:"status"`
	NumberOfNodes           int    `json:"number_of_nodes"`
	NumberOfDataNodes       int    `json:"number_of_data_nodes"`
	ActivePrimaryShards     int    `json:"active_primary_shards"`
	ActiveShards            int    `json:"active_shards"`
	RelocatingShards        int    `json:"relocating_shards"`
	InitializingShards      int    `json:"initializing_shards"`
	UnassignedShards        int    `json:"unassigned_shards"`
	DelayedUnassignedShards int    `json:"delayed_unassigned_shards"`
}

// health reads _cluster/health, of the given indices only when there are any.
func (ix *Indices) health(ctx context.Context, indices ...string) (clusterHealth, error) {
	var h clusterHealth
	err := do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.ClusterHealthRequest{Index: indices}, &h)
	if err != nil {
		return h, fmt.Errorf("cluster health: %w", notFound(err))
	}
	return h, nil
}

// ClusterHealth implements ops.SearchCluster: the cluster's nodes, and the status and shard
// copies of the read model's own indices (the alias's versioned indices, rollback targets
// included), so another application's index on a shared cluster does not make ours look
// degraded.
func (t *Target) ClusterHealth(ctx context.Context) (ops.SearchHealth, error) {
	h, err := t.indices.health(ctx, t.cfg.Alias+"_v*")
	if err != nil {
		return ops.SearchHealth{}, fmt.Errorf("search cluster: %w", err)
	}
	return ops.SearchHealth{
		Status: h.Status, Nodes: h.NumberOfNodes, DataNodes: h.NumberOfDataNodes, ActiveShards: h.ActiveShards,
		RelocatingShards: h.RelocatingShards, InitializingShards: h.InitializingShards,
		UnassignedShards: h.UnassignedShards, DelayedUnassignedShards: h.DelayedUnassignedShards,
	}, nil
}

// primaryWait bounds how long a new index's primary shards may take to start.
const primaryWait = 2 * time.Minute

// awaitPrimaries waits until the Config.Shards primary shards of index have started, at most
// primaryWait: writes to a shard that has not started wait in the cluster and time out on our
// side. (A new index whose primaries are still initializing is reported yellow, not red.)
func (ix *Indices) awaitPrimaries(ctx context.Context, index string) error {
	deadline := time.Now().Add(primaryWait)
	for {
		h, err := ix.health(ctx, index)
		if err == nil && h.ActivePrimaryShards >= ix.cfg.Shards {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d of %d started", h.ActivePrimaryShards, ix.cfg.Shards)
			}
			return fmt.Errorf("primary shards not started within %s: %w", primaryWait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(replicaPoll):
		}
	}
}

// replicaPoll is how often awaitReplicas looks at the index's health.
const replicaPoll = 250 * time.Millisecond

// awaitReplicas waits until every shard copy of index is allocated (the index is green), so
// that an index made live right after a bulk load without replicas has its replicas before
// readers depend on it: a node lost just after the switch must not take the only copy of a
// shard with it. It waits as long as copies are being built (a large index's replicas take
// a while to copy) and gives up once no copy has been initializing for Config.ReplicaWait,
// which means the cluster cannot place them (fewer data nodes than SEARCH_REPLICAS + 1).
func (ix *Indices) awaitReplicas(ctx context.Context, index string) error {
	idleSince := time.Now()
	for {
		h, err := ix.health(ctx, index)
		if err != nil {
			return fmt.Errorf("replicas of %s: %w", index, err)
		}
		if h.Status == ops.SearchGreen {
			return nil
		}
		if h.InitializingShards > 0 || h.RelocatingShards > 0 {
			idleSince = time.Now()
		}
		if time.Since(idleSince) > ix.cfg.ReplicaWait {
			return fmt.Errorf("replicas of %s: the index is %s with %d shard copies unassigned and none being built for %s: "+
				"the cluster (%d data nodes) cannot place the configured replicas; lower SEARCH_REPLICAS or add data nodes",
				index, h.Status, h.UnassignedShards, ix.cfg.ReplicaWait, h.NumberOfDataNodes)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas of %s: %w", index, ctx.Err())
		case <-time.After(replicaPoll):
		}
	}
}
