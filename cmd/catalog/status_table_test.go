package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
)

// updateStatusGolden rewrites the fixtures of TestStatusTableText from the current code
// (go test ./cmd/catalog -run TestStatusTableText -update-status-golden): only for a
// deliberate change of the table, reviewed in the diff of testdata/status.
var updateStatusGolden = flag.Bool("update-status-golden", false, "rewrite cmd/catalog/testdata/status/*.txt")

// statusTableCases are fixed statuses that together take every branch of the status table:
// each part available, missing, unreadable, and the lines that show only sometimes.
func statusTableCases() map[string]*operationsv1.GetStatusResponse {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	dur := durationpb.New
	th := &operationsv1.Thresholds{MaxOutboxAge: dur(time.Minute), MaxLag: 10_000, MaxCountDriftRatio: 0.001,
		MaxCountDriftDocs: 10, MaxTxAge: dur(5 * time.Minute), MaxStall: dur(time.Minute)}
	return map[string]*operationsv1.GetStatusResponse{
		"healthy": {
			CheckedAt: ts(0), Healthy: true, Thresholds: th,
			Outbox: &operationsv1.OutboxStatus{TableBytes: 3 << 20, Lanes: []*operationsv1.OutboxLane{
				{Lane: 0, RelayStarted: true, RelayedTransactionId: "991", RelayedOffset: 1234, RelayedAt: ts(-time.Second)},
				{Lane: 1, RelayStarted: true, RelayedTransactionId: "7", RelayedOffset: 0},
				{Lane: 2},
			}},
			Projector: &operationsv1.ProjectorStatus{Group: "catalog-projector", Topic: "product.events", State: "Stable", Members: 1,
				HasCommittedOffsets: true, Records: 1500, Partitions: []*operationsv1.PartitionLag{
					{Partition: 0, EndOffset: 1500, CommittedOffset: 1500},
					{Partition: 1, StartOffset: 12, EndOffset: 12_345, CommittedOffset: 12_340, Lag: 5, StalledFor: dur(30 * time.Second)},
				}},
			ReadModel: &operationsv1.ReadModelStatus{Alias: "product_search", AliasExists: true, Index: "product_search_v1_20260301_110000",
				IndexKnown: true, IndexMappingVersion: 1, CodeMappingVersion: 1, LiveDocuments: 1_000_000, Tombstones: 12, Indices: 2,
				CountCompared: true, CountDrift: 3, AllowedCountDrift: 1000},
			Products: &operationsv1.ProductsStatus{Live: 1_000_003, Total: 1_000_015},
			Dlq:      &operationsv1.DeadLetterStatus{Topic: "dlq.product.events"},
			LastRebuild: &operationsv1.LastRebuildStatus{Found: true, Id: "20260301T100000Z-abc", Phase: "succeeded",
				StartedAt: ts(-time.Hour - time.Minute), FinishedAt: ts(-time.Hour),
				FromIndex: "product_search_v1_20260201_000000", ToIndex: "product_search_v1_20260301_110000"},
			Transactions:  &operationsv1.TransactionsStatus{},
			Kafka:         &operationsv1.KafkaStatus{},
			SearchCluster: &operationsv1.SearchClusterStatus{},
		},
		"unhealthy": {
			CheckedAt: ts(0), Thresholds: th,
			Outbox: &operationsv1.OutboxStatus{Backlog: 17_001, OldestAge: dur(3*time.Minute + 400*time.Millisecond), TableBytes: 900,
				Lanes: []*operationsv1.OutboxLane{
					{Lane: 0, Backlog: 17_000, OldestAge: dur(3 * time.Minute), RelayStarted: true, RelayedTransactionId: "88", RelayedOffset: 9, RelayedAt: ts(-4 * time.Minute)},
					{Lane: 1, Backlog: 1, OldestAge: dur(250 * time.Millisecond)},
				}},
			Projector: &operationsv1.ProjectorStatus{Group: "catalog-projector", Topic: "product.events", Members: 2, TotalLag: 50,
				Partitions: []*operationsv1.PartitionLag{
					{Partition: 0, EndOffset: 90, CommittedOffset: -1, Lag: 90},
					{Partition: 1, EndOffset: 90, CommittedOffset: 40, Lag: 50, StalledFor: dur(95 * time.Second)},
				}},
			ReadModel: &operationsv1.ReadModelStatus{Alias: "product_search", Indices: 1, IndexBehind: true, IndexBehindEvents: -1},
			Products:  &operationsv1.ProductsStatus{Live: 5, Total: 6},
			Dlq:       &operationsv1.DeadLetterStatus{Topic: "dlq.product.events", Depth: 1, Unhandled: 1},
			LastRebuild: &operationsv1.LastRebuildStatus{Found: true, Id: "20260301T115000Z-def", Phase: "filling",
				StartedAt: ts(-10 * time.Minute), FromIndex: "product_search_v1_20260301_110000",
				Error: "bulk index:\n  429 too many requests"},
			Transactions: &operationsv1.TransactionsStatus{Long: []*operationsv1.LongTransaction{
				{Pid: 4242, Database: "catalog", User: "app", State: "idle in transaction", Application: "psql",
					Age: dur(6 * time.Minute), HoldsBackOutbox: true, QueryStartedAt: ts(-5 * time.Minute)},
				{Pid: 0, Database: "catalog", User: "app", PreparedGid: "tx-1", Age: dur(20 * time.Minute), HoldsBackOutbox: true},
				{Pid: 77, Database: "catalog", User: "report", State: "active",
					Application: "a reporting tool with a name far longer than forty characters", Age: dur(7 * time.Minute)},
			}},
			Kafka: &operationsv1.KafkaStatus{Reported: true, Brokers: 1, Topics: []*operationsv1.TopicReplication{
				{Topic: "product.events", Partitions: 12, ReplicationFactor: 3, MinInsyncReplicas: 2,
					UnderReplicated: []int32{0, 3, 6, 9, 11}, BelowMinIsr: []int32{3}, Offline: []int32{6, 9}},
				{Topic: "dlq.product.events", Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1},
			}},
			SearchCluster: &operationsv1.SearchClusterStatus{Reported: true, Status: "red", Nodes: 1, DataNodes: 1, ActiveShards: 1,
				RelocatingShards: 2, InitializingShards: 3, UnassignedShards: 4, DelayedUnassignedShards: 5},
			Problems: []*operationsv1.Problem{
				{Severity: operationsv1.Severity_SEVERITY_ERROR, Check: "outbox_age", Message: "outbox: 17,001 events not relayed"},
				{Severity: operationsv1.Severity_SEVERITY_WARNING, Check: "rebuild_failed", Message: "last rebuild failed"},
				{Severity: operationsv1.Severity_SEVERITY_WARNING, Check: "kafka_under_replicated", Message: "5 partitions"},
			},
		},
		"index_not_known": {
			CheckedAt: ts(0), Thresholds: th,
			Outbox:    &operationsv1.OutboxStatus{},
			Projector: &operationsv1.ProjectorStatus{Group: "g", Topic: "t", HasCommittedOffsets: true},
			ReadModel: &operationsv1.ReadModelStatus{Alias: "product_search", AliasExists: true, Index: "somebody_elses_index",
				CodeMappingVersion: 2, IndexBehind: true, IndexBehindEvents: 1},
			Products:     &operationsv1.ProductsStatus{},
			Dlq:          &operationsv1.DeadLetterStatus{Topic: "dlq", Depth: 1, Handled: 1},
			LastRebuild:  &operationsv1.LastRebuildStatus{},
			Transactions: &operationsv1.TransactionsStatus{},
			Kafka:        &operationsv1.KafkaStatus{Reported: true, Brokers: 3},
			SearchCluster: &operationsv1.SearchClusterStatus{Reported: true, Status: "green", Nodes: 3, DataNodes: 2,
				ActiveShards: 6},
			Problems: []*operationsv1.Problem{{Severity: operationsv1.Severity_SEVERITY_ERROR, Check: "alias_index_behind", Message: "behind"}},
		},
		"unreadable": {
			CheckedAt: ts(0), Thresholds: th,
			Outbox:        &operationsv1.OutboxStatus{ReadError: "connect:\n\tconnection refused"},
			Projector:     &operationsv1.ProjectorStatus{Group: "g", Topic: "t", ReadError: "kafka: no brokers"},
			ReadModel:     &operationsv1.ReadModelStatus{Alias: "product_search", ReadError: "search: timeout"},
			Products:      &operationsv1.ProductsStatus{ReadError: "postgres: timeout"},
			Dlq:           &operationsv1.DeadLetterStatus{Topic: "dlq", ReadError: "kafka: no brokers"},
			LastRebuild:   &operationsv1.LastRebuildStatus{ReadError: "postgres: timeout"},
			Transactions:  &operationsv1.TransactionsStatus{ReadError: "postgres: permission denied"},
			Kafka:         &operationsv1.KafkaStatus{ReadError: "kafka: describe cluster"},
			SearchCluster: &operationsv1.SearchClusterStatus{ReadError: "search:\n  cluster health"},
		},
		"empty": {},
	}
}

// TestStatusTableText pins the status table to the byte: operators read it and scripts grep
// it, so a refactoring of its code must print exactly what the fixtures hold.
func TestStatusTableText(t *testing.T) {
	for name, st := range statusTableCases() {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			if err := writeStatusTable(&b, st); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "status", name+".txt")
			if *updateStatusGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no fixture (run with -update-status-golden once): %v", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("status table of %q differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
			}
		})
	}
}
