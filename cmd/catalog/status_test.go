package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	"github.com/marketplace/catalog/service"
)

// opsFake is a scripted operations service behind a real gRPC port on loopback.
type opsFake struct {
	mu        sync.Mutex
	status    ops.Status
	gotTh     []ops.Thresholds
	progress  []ops.VerifyProgress
	report    ops.VerifyReport
	verifyErr error
	gotReq    []ops.VerifyRequest
}

func (f *opsFake) Status(_ context.Context, th ops.Thresholds) (ops.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gotTh = append(f.gotTh, th)
	st := f.status
	st.Thresholds = th
	return st, nil
}

func (f *opsFake) Verify(_ context.Context, req ops.VerifyRequest, progress func(ops.VerifyProgress)) (ops.VerifyReport, error) {
	f.mu.Lock()
	f.gotReq = append(f.gotReq, req)
	f.mu.Unlock()
	for _, p := range f.progress {
		progress(p)
	}
	return f.report, f.verifyErr
}

func serveOps(t *testing.T, f *opsFake) *service.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	operations, err := grpcport.NewOperations(f)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcport.NewServer(grpcport.Config{}, &adminFake{}, grpcport.Deps{Register: []func(grpc.ServiceRegistrar){operations.Register}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &service.Config{GRPCAddr: ln.Addr().String()}
}

func healthyStatus() ops.Status {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fin := now.Add(-time.Hour)
	return ops.Status{
		CheckedAt: now,
		Healthy:   true,
		Outbox: ops.OutboxSection{OutboxStats: ops.OutboxStats{TableBytes: 3 << 20, Lanes: []ops.OutboxLane{
			{Lane: 0, RelayStarted: true, RelayedTransactionID: "991", RelayedOffset: 1234, RelayedAt: now.Add(-time.Second)},
			{Lane: 1},
		}}},
		Projector: ops.ProjectorSection{GroupLag: ops.GroupLag{Group: "catalog-projector", Topic: "product.events", State: "Stable",
			Members: 1, Committed: true, Records: 1500, Partitions: []ops.PartitionLag{{Partition: 0, End: 1500, Committed: 1500}}}},
		ReadModel: ops.ReadModelSection{Alias: "product_search", AliasExists: true, Index: "product_search_v1_20260301_110000", IndexKnown: true,
			IndexMappingVersion: 1, CodeMappingVersion: 1, LiveDocuments: 1_000_000, Tombstones: 12, Indices: 2},
		Products: ops.ProductsSection{ProductCounts: ops.ProductCounts{Live: 1_000_003, Total: 1_000_015}},
		Counts:   ops.CountComparison{Compared: true, Drift: 3, Allowed: 1000},
		DLQ:      ops.DLQSection{Topic: "dlq.product.events"},
		Rebuild: ops.RebuildSection{Last: &readmodel.Snapshot{ID: "20260301T100000Z-abc", Phase: readmodel.PhaseSucceeded, StartedAt: fin.Add(-time.Minute),
			FinishedAt: &fin, FromIndex: "product_search_v1_20260201_000000", ToIndex: "product_search_v1_20260301_110000"}},
	}
}

func unhealthyStatus() ops.Status {
	st := healthyStatus()
	st.Healthy = false
	st.Outbox.Backlog, st.Outbox.OldestAge = 17, 3*time.Minute
	st.Outbox.Lanes[1].Backlog, st.Outbox.Lanes[1].OldestAge = 17, 3*time.Minute
	st.DLQ.DLQCounts = ops.DLQCounts{Depth: 3, Handled: 1, Unhandled: 2}
	st.Projector.Partitions = append(st.Projector.Partitions, ops.PartitionLag{Partition: 1, End: 90, Committed: 40, Lag: 50, StalledFor: 95 * time.Second})
	st.Transactions.Long = []ops.LongTransaction{{PID: 4242, Database: "catalog", User: "app", State: "idle in transaction",
		Application: "psql", BackendType: "client backend", Started: st.CheckedAt.Add(-6 * time.Minute),
		QueryStarted: st.CheckedAt.Add(-5 * time.Minute), Age: 6 * time.Minute, HoldsBackOutbox: true}}
	st.Kafka = ops.KafkaSection{Reported: true, KafkaReplication: ops.KafkaReplication{Brokers: 2, Topics: []ops.TopicReplication{
		{Topic: "product.events", Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2, UnderReplicated: []int32{0, 3, 6, 9, 11}},
		{Topic: "dlq.product.events", Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2}}}}
	st.Search = ops.SearchSection{Reported: true, SearchHealth: ops.SearchHealth{Status: ops.SearchYellow, Nodes: 2, DataNodes: 2,
		ActiveShards: 2, UnassignedShards: 2, DelayedUnassignedShards: 2}}
	st.Problems = []ops.Problem{
		{Severity: ops.SeverityError, Check: ops.CheckOutboxAge, Message: "outbox: 17 events not relayed; held back by pid 4242"},
		{Severity: ops.SeverityError, Check: ops.CheckDLQ, Message: "dlq: 2 of the 3 messages in dlq.product.events are unhandled"},
		{Severity: ops.SeverityWarning, Check: ops.CheckProjectorNoMembers, Message: "projector: no consumer"},
	}
	return st
}

func TestStatusHealthyTable(t *testing.T) {
	cfg := serveOps(t, &opsFake{status: healthyStatus()})
	out, errOut, err := runCmd(t, newStatusCmd, cfg)
	if err != nil {
		t.Fatalf("healthy status is an error: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"catalog status at 2026-03-01 12:00:00 UTC: HEALTHY (0 errors, 0 warnings)",
		"OUTBOX        0 events not relayed, none waiting (limit 1m0s); table 3.0 MiB",
		"991", "1234",
		"PROJECTOR     group catalog-projector on product.events: lag 0 (limit 10,000), 1 member, state Stable",
		"READ MODEL    alias product_search -> product_search_v1_20260301_110000 (mapping v1, code v1; 2 indices)",
		"1,000,000 live documents, 12 tombstones",
		"PRODUCTS      1,000,003 live, 1,000,015 with tombstones; drift 3 (allowed 1,000)",
		"DLQ           dlq.product.events: 0 unhandled of 0 retained messages (0 replayed or resolved)",
		"PARTITION  START    END  COMMITTED  LAG  STALLED",
		"LAST REBUILD  20260301T100000Z-abc succeeded, finished 2026-03-01 11:00:00 UTC",
		"TRANSACTIONS  none holding the relay back for longer than 1m0s, none open longer than 5m0s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PROBLEMS") {
		t.Errorf("a healthy status lists problems:\n%s", out)
	}
}

// Unhealthy: the table still goes to stdout, the error (stderr, exit 1) lists the errors
// but not the warnings.
func TestStatusUnhealthyExitsWithTheReasons(t *testing.T) {
	cfg := serveOps(t, &opsFake{status: unhealthyStatus()})
	out, _, err := runCmd(t, newStatusCmd, cfg)
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("err = %v, want a failure (exit 1)", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "unhealthy (2 problems):") || !strings.Contains(msg, "\n  outbox_age: outbox: 17 events") ||
		!strings.Contains(msg, "\n  dlq_unhandled: dlq: 2 of the 3 messages") || strings.Contains(msg, "no consumer") {
		t.Errorf("reasons:\n%s", msg)
	}
	for _, want := range []string{"UNHEALTHY (2 errors, 1 warning)", "oldest waiting 3m0s", "TRANSACTIONS  1 long-running", "4242", "YES", "psql", "5m0s ago",
		"PROBLEMS", "ERROR    outbox_age", "WARNING  projector_no_members", "dlq.product.events: 2 unhandled of 3 retained messages (1 replayed or resolved)",
		"1m35s (STALLED)", "KAFKA         2 live brokers", "5 (0,3,6,9,...)", "SEARCH        YELLOW, 2 nodes (2 data)", "2 unassigned (2 waiting for their node)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusShowsAnIndexBehind: a live index that misses events is shown with how many, in
// the table and in the JSON.
func TestStatusShowsAnIndexBehind(t *testing.T) {
	st := healthyStatus()
	st.Healthy = false
	st.ReadModel.Behind, st.ReadModel.CompleteBefore, st.ReadModel.BehindEvents = true, map[int32]int64{0: 1497}, 3
	st.Problems = []ops.Problem{{Severity: ops.SeverityError, Check: ops.CheckAliasBehind, Message: "read model: alias product_search points at x, which misses the events after offsets 0:1497 (3 events)"}}
	cfg := serveOps(t, &opsFake{status: st})
	out, _, err := runCmd(t, newStatusCmd, cfg)
	if err == nil || !strings.Contains(err.Error(), "alias_index_behind") {
		t.Fatalf("err = %v, want unhealthy naming alias_index_behind", err)
	}
	if !strings.Contains(out, "BEHIND the event log: it misses 3 events") {
		t.Errorf("table:\n%s", out)
	}
	out, _, _ = runCmd(t, newStatusCmd, cfg, "--json")
	var doc struct {
		ReadModel struct {
			Behind         bool             `json:"index_behind"`
			CompleteBefore map[string]int64 `json:"index_complete_before"`
			BehindEvents   int64            `json:"index_behind_events"`
		} `json:"read_model"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if rm := doc.ReadModel; !rm.Behind || rm.CompleteBefore["0"] != 1497 || rm.BehindEvents != 3 {
		t.Errorf("json read_model = %+v", rm)
	}
}

// The JSON keys are the documented contract: a renamed field breaks operators' scripts.
func TestStatusJSONFieldNamesAreStable(t *testing.T) {
	cfg := serveOps(t, &opsFake{status: unhealthyStatus()})
	out, _, err := runCmd(t, newStatusCmd, cfg, "--json")
	if err == nil {
		t.Fatal("unhealthy status with --json exited 0")
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	keys := func(v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("not an object: %v", v)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	first := func(v any) any { return v.([]any)[0] }
	want := map[string]string{
		"":                        "checked_at,dlq,healthy,kafka,last_rebuild,outbox,problems,products,projector,read_model,search_cluster,thresholds,transactions",
		"kafka":                   "brokers,reported,topics",
		"kafka.topics[0]":         "below_min_isr,min_insync_replicas,offline,partitions,replication_factor,topic,under_replicated",
		"search_cluster":          "active_shards,data_nodes,delayed_unassigned_shards,initializing_shards,nodes,relocating_shards,reported,status,unassigned_shards",
		"problems[0]":             "check,message,severity",
		"thresholds":              "max_count_drift_docs,max_count_drift_ratio,max_lag,max_outbox_age_seconds,max_stall_seconds,max_tx_age_seconds",
		"outbox":                  "backlog,lanes,oldest_age_seconds,oldest_created_at,table_bytes",
		"outbox.lanes[0]":         "backlog,lane,oldest_age_seconds,relay_started,relayed_at,relayed_offset,relayed_transaction_id",
		"projector":               "group,has_committed_offsets,members,partitions,records,state,topic,total_lag",
		"projector.partitions[0]": "committed_offset,end_offset,lag,partition,stalled_seconds,start_offset",
		"read_model":              "alias,alias_exists,allowed_count_drift,code_mapping_version,count_compared,count_drift,index,index_behind,index_behind_events,index_complete_before,index_known,index_mapping_version,indices,live_documents,tombstones",
		"products":                "live,total",
		"dlq":                     "depth,handled,topic,unhandled",
		"last_rebuild":            "error,finished_at,found,from_index,id,phase,started_at,to_index",
		"transactions":            "long",
		"transactions.long[0]":    "age_seconds,application,backend_type,database,holds_back_outbox,pid,prepared_gid,query_started_at,started_at,state,user",
	}
	got := map[string]any{
		"": doc, "problems[0]": first(doc["problems"]), "thresholds": doc["thresholds"], "outbox": doc["outbox"],
		"outbox.lanes[0]": first(doc["outbox"].(map[string]any)["lanes"]), "projector": doc["projector"],
		"projector.partitions[0]": first(doc["projector"].(map[string]any)["partitions"]), "read_model": doc["read_model"],
		"products": doc["products"], "dlq": doc["dlq"], "last_rebuild": doc["last_rebuild"], "transactions": doc["transactions"],
		"transactions.long[0]": first(doc["transactions"].(map[string]any)["long"]),
		"kafka":                doc["kafka"], "kafka.topics[0]": first(doc["kafka"].(map[string]any)["topics"]), "search_cluster": doc["search_cluster"],
	}
	for path, w := range want {
		if k := keys(got[path]); k != w {
			t.Errorf("%s keys:\n got %s\nwant %s", path, k, w)
		}
	}
	if doc["healthy"] != false || doc["outbox"].(map[string]any)["oldest_age_seconds"] != 180.0 ||
		doc["dlq"].(map[string]any)["depth"] != 3.0 || doc["dlq"].(map[string]any)["unhandled"] != 2.0 ||
		doc["projector"].(map[string]any)["partitions"].([]any)[1].(map[string]any)["stalled_seconds"] != 95.0 || first(doc["problems"]).(map[string]any)["severity"] != "error" {
		t.Errorf("values: %s", out)
	}
	if lane1 := doc["outbox"].(map[string]any)["lanes"].([]any)[1].(map[string]any); lane1["relayed_at"] != nil {
		t.Errorf("a lane the relay never moved has relayed_at %v, want null", lane1["relayed_at"])
	}
}

func TestStatusThresholdFlags(t *testing.T) {
	f := &opsFake{status: healthyStatus()}
	cfg := serveOps(t, f)
	if _, _, err := runCmd(t, newStatusCmd, cfg); err != nil {
		t.Fatal(err)
	}
	if f.gotTh[0] != ops.DefaultThresholds() {
		t.Errorf("no flags: %+v, want the defaults", f.gotTh[0])
	}
	if _, _, err := runCmd(t, newStatusCmd, cfg, "--max-lag=0", "--max-outbox-age=5s", "--max-count-drift=2%", "--max-tx-age=1m", "--max-stall=10s"); err != nil {
		t.Fatal(err)
	}
	want := ops.Thresholds{MaxOutboxAge: 5 * time.Second, MaxLag: 0, MaxCountDriftRatio: 0.02, MaxCountDriftDocs: 0, MaxTxAge: time.Minute, MaxStall: 10 * time.Second}
	if f.gotTh[1] != want {
		t.Errorf("flags: %+v, want %+v", f.gotTh[1], want)
	}

	var ue usageError
	for _, args := range [][]string{{"--max-lag=-1"}, {"--max-outbox-age=-1s"}, {"--max-count-drift=lots"}, {"--max-tx-age=-5m"}, {"--max-stall=-1s"}, {"extra-arg"}} {
		if _, _, err := runCmd(t, newStatusCmd, cfg, args...); !errors.As(err, &ue) && !isFlagError(err) && !strings.Contains(fmt.Sprint(err), "unknown command") {
			t.Errorf("%v: err = %v, want a usage error (exit 2)", args, err)
		}
	}
	if _, _, err := runCmd(t, newStatusCmd, cfg, "--max-lag=many"); err == nil || !isFlagError(err) {
		t.Errorf("--max-lag=many: err = %v, want a flag error (exit 2)", err)
	}
}

func TestParseCountDrift(t *testing.T) {
	for in, want := range map[string][2]float64{
		"0.1%,10": {0.001, 10}, "10,0.1%": {0.001, 10}, "1%": {0.01, 0}, "25": {0, 25}, "0": {0, 0}, " 5 % , 3 ": {0.05, 3},
	} {
		r, d, err := parseCountDrift(in)
		if err != nil || r != want[0] || float64(d) != want[1] {
			t.Errorf("parseCountDrift(%q) = %v, %v, %v; want %v", in, r, d, err, want)
		}
	}
	for _, in := range []string{"", "x", "1%,2%", "1,2", "-1", "150%", "1%,2,3", "-1%"} {
		if _, _, err := parseCountDrift(in); err == nil {
			t.Errorf("parseCountDrift(%q) accepted", in)
		}
	}
}

func TestStatusUnreachableServer(t *testing.T) {
	_, _, err := runCmd(t, newStatusCmd, &service.Config{GRPCAddr: "127.0.0.1:1"})
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "GRPC_ADDR=127.0.0.1:1") {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := runCmd(t, newStatusCmd, &service.Config{GRPCAddr: "no-port"}); !errors.As(err, &ue) {
		t.Fatalf("bad GRPC_ADDR: err = %v, want a usage error", err)
	}
}

// An old server without the Operations service says so instead of a bare UNIMPLEMENTED.
func TestStatusAgainstAServerWithoutOperations(t *testing.T) {
	cfg := serveFake(t, &adminFake{indices: []rebuild.IndexInfo{}})
	_, _, err := runCmd(t, newStatusCmd, cfg)
	if err == nil || !strings.Contains(err.Error(), "does not offer it") {
		t.Fatalf("err = %v", err)
	}
}
