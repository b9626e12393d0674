package wiring_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
)

// metricsText reads a replica's /metrics.
func metricsText(t *testing.T, c *component) string {
	t.Helper()
	res, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return string(raw)
}

// TestServeRunsOnlyItsRoles: one deployment as four replicas of `catalog serve`, one role
// each. The API replica starts and takes writes with Kafka unreachable (it never talks to
// Kafka); the relay replica starts with the search cluster unreachable and forwards the
// API's outbox; the projector replica makes the write searchable through the API replica;
// the admin replica answers status with the clusters' replication and health, and is the
// only one that samples the pipeline's gauges. A replica without a role does not serve it.
func TestServeRunsOnlyItsRoles(t *testing.T) {
	cluster := testkafka.Real(t)
	esURL, compat := testenv.ElasticsearchURL(t)
	name := strings.ToLower(testenv.Name("roles"))
	testkafka.DropOnCleanup(t, cluster, name+".events", "dlq."+name+".events")
	cfg, db := freshDeployment(t, func(c *service.Config) {
		c.KafkaBrokers = cluster.Brokers
		c.ElasticsearchURL, c.ElasticsearchCompat = esURL, compat
		c.SearchAlias, c.ProjectorGroup = name, name+"-projector"
		c.ProductEventsTopic, c.DLQTopic = name+".events", "dlq."+name+".events"
		c.TopicPartitions = 3
	})
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", esURL+"/"+name+"_v*", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	})
	replica := func(roles ...string) service.Config {
		c := siblingConfig(t, cfg)
		c.Roles = roles
		return c
	}

	apiCfg := replica(service.RoleAPI)
	apiCfg.KafkaBrokers = []string{testenv.Addr(t)}
	api := serveInProcess(t, apiCfg)
	if r := api.do(t, "GET", "/readyz", ""); r.status != 200 || r.body["role"] != "api" {
		t.Fatalf("API replica readiness: %d %v", r.status, r.body)
	}
	if r := api.do(t, "GET", "/readyz?role=relay", ""); r.status != 400 {
		t.Errorf("the API replica answers the relay's readiness: %d %v", r.status, r.body)
	}
	w := api.do(t, "POST", "/v1/products", validBody)
	if w.status != 201 {
		t.Fatalf("write through the API replica: %d %v", w.status, w.body)
	}
	id := w.body["id"].(string)
	if conn, err := net.DialTimeout("tcp", apiCfg.GRPCAddr, time.Second); err == nil {
		conn.Close()
		t.Errorf("the API replica serves the admin port %s", apiCfg.GRPCAddr)
	}
	if m := metricsText(t, api); strings.Contains(m, "catalog_outbox_backlog_events") {
		t.Error("the API replica samples the pipeline's gauges; that is the admin role's job")
	}
	outbox, err := postgres.NewOpsStats(db, postgres.OpsStatsConfig{Lanes: cfg.OutboxLanes})
	if err != nil {
		t.Fatal(err)
	}
	backlog := func() ops.OutboxStats {
		st, err := outbox.OutboxStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	time.Sleep(time.Second)
	if st := backlog(); st.Backlog != 1 || slices.ContainsFunc(st.Lanes, func(l ops.OutboxLane) bool { return l.RelayStarted }) {
		t.Fatalf("outbox %+v, want the write waiting and no relay started", st)
	}

	relayCfg := replica(service.RoleRelay)
	relayCfg.ElasticsearchURL = "http://" + testenv.Addr(t)
	relay := serveInProcess(t, relayCfg)
	if r := relay.do(t, "GET", "/v1/products/"+id, ""); r.status != 404 || !strings.Contains(r.body["detail"].(string), "api role") {
		t.Errorf("the relay replica answers the API: %d %v", r.status, r.body)
	}
	if r := relay.do(t, "GET", "/readyz", ""); r.status != 200 || r.body["role"] != "relay" {
		t.Errorf("relay replica readiness: %d %v", r.status, r.body)
	}
	eventuallyT(t, 30*time.Second, "the relay replica to forward the API replica's write", func() bool { return backlog().Backlog == 0 })

	projector := serveInProcess(t, replica(service.RoleProjector))
	if r := projector.do(t, "GET", "/readyz", ""); r.status != 200 || r.body["role"] != "projector" {
		t.Errorf("projector replica readiness: %d %v", r.status, r.body)
	}
	eventuallyT(t, 60*time.Second, "the write to be searchable through the API replica", func() bool {
		r := api.do(t, "GET", "/v1/products/search?q=Lamp", "")
		items, _ := r.body["items"].([]any)
		return r.status == 200 && len(items) == 1
	})

	adminCfg := replica(service.RoleAdmin)
	admin := serveInProcess(t, adminCfg)
	st := awaitStatus(t, opsClient(t, adminCfg.GRPCAddr), &operationsv1.GetStatusRequest{}, 60*time.Second, "a status with the clusters",
		func(st *operationsv1.GetStatusResponse) bool {
			return st.GetKafka().GetReported() && st.GetSearchCluster().GetReported() && st.GetProjector().GetMembers() == 1
		})
	if k := st.GetKafka(); len(k.GetTopics()) != 2 || k.GetTopics()[0].GetTopic() != cfg.ProductEventsTopic || k.GetTopics()[0].GetPartitions() != 3 || k.GetBrokers() < 1 {
		t.Errorf("kafka section %v", k)
	}
	if sc := st.GetSearchCluster(); sc.GetStatus() != "green" || sc.GetNodes() < 1 || sc.GetActiveShards() < 1 {
		t.Errorf("search section %v", sc)
	}
	eventuallyT(t, 30*time.Second, "the admin replica to sample the gauges", func() bool {
		m := metricsText(t, admin)
		return strings.Contains(m, "catalog_outbox_backlog_events 0") && strings.Contains(m, "catalog_search_cluster_status 0") &&
			strings.Contains(m, `catalog_kafka_under_replicated_partitions{topic="`+cfg.ProductEventsTopic+`"} 0`)
	})
}
