package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
)

// statusRPCTimeout bounds GetStatus: the server bounds each source by ops.DefaultSourceTimeout
// and reads them concurrently, so anything much longer is a hung server.
const statusRPCTimeout = 3 * ops.DefaultSourceTimeout

func newStatusCmd(cfg *service.Config) *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [--json] [--max-outbox-age=D] [--max-lag=N] [--max-stall=D] [--max-count-drift=R%,N] [--max-tx-age=D]",
		Short: "Show the pipeline's health: outbox backlog, projector lag, alias, counts, DLQ, rebuilds, long transactions, cluster replication",
		Long: `Asks the service on GRPC_ADDR for one look at the whole pipeline and judges it:

  outbox        events not yet relayed (per lane, with the relay's position), the age of the
                oldest, the table's size
  projector     lag of the projector's consumer group (PROJECTOR_GROUP) per partition, and
                how long a partition's committed offset has stood still while events wait
  read model    where the alias points, that index's mapping version against the code's,
                whether it is behind the event log (a rollback's or rebuild's catch-up has
                not finished), live documents against live products in the database
  dlq           dead letters nobody has replayed or resolved, and all retained ones
  last rebuild  id, phase, when it finished, why it failed
  transactions  database transactions open for long in the catalog's database, and prepared
                ones: one that holds a transaction id (it has written, or it is prepared)
                holds back the relay, which cannot pass it; the statement text is never shown
  kafka         live brokers, and per topic (events, dead letters) the replication factor,
                min.insync.replicas, and the partitions under-replicated, below
                min.insync.replicas (acks=all writes refused) or without a leader
  search        the search cluster's nodes, and the health of the read model's indices:
                green, yellow (a replica is missing), red (a primary is missing)

Unhealthy (exit code 1, the reasons on stderr) when the oldest unrelayed event is older than
--max-outbox-age, the projector lags by more than --max-lag or has committed nothing on a
topic with records, a partition's committed offset has stood still for longer than
--max-stall while events wait behind it (a projector stuck on a message, or a partition
without a live owner; the answering process watches the offsets every few seconds from its
start), the alias is missing, its index's mapping is older than the code's or it is behind
the event log (alias_index_behind), live documents and live products differ by more than
--max-count-drift, the DLQ holds unhandled messages (replayed and resolved ones are handled:
see 'catalog dlq'), a transaction holding the relay back is older than --max-outbox-age
(relay_held_back), a read-only one is open for longer than --max-tx-age, or a part cannot be
read, or partitions of the topics are below min.insync.replicas or without a leader
(kafka_below_min_isr, kafka_partition_offline), or the read model's indices are red
(search_cluster_health). A failed last rebuild, an empty projector group, under-replicated
partitions (kafka_under_replicated: a broker is down or catching up) and yellow indices are
warnings. Exit code 0 when healthy, 2 on bad flags.

--max-count-drift takes a percentage of live products, a number of documents, or both
separated by a comma; the larger applies (default 0.1%,10, since live writes make exact
equality flaky).

--json prints the status as one JSON object (field names are stable; see below) instead of
the table. Durations are in seconds (fields ending in _seconds), times in RFC 3339 (UTC),
absent values null:

  healthy, checked_at, problems[{severity: "error"|"warning", check, message}],
  thresholds{max_outbox_age_seconds, max_lag, max_count_drift_ratio, max_count_drift_docs,
    max_tx_age_seconds, max_stall_seconds},
  outbox{read_error?, backlog, oldest_age_seconds, oldest_created_at, table_bytes,
    lanes[{lane, backlog, oldest_age_seconds, relay_started, relayed_transaction_id,
    relayed_offset, relayed_at}]},
  projector{read_error?, group, topic, state, members, total_lag, has_committed_offsets,
    records, partitions[{partition, start_offset, end_offset, committed_offset (-1: none), lag,
    stalled_seconds}]},
  read_model{read_error?, alias, alias_exists, index, index_known, index_mapping_version,
    code_mapping_version, live_documents, tombstones, indices, count_compared, count_drift,
    allowed_count_drift, index_behind, index_complete_before{"<partition>": offset},
    index_behind_events (-1: unknown)},
  products{read_error?, live, total}, dlq{read_error?, topic, depth, unhandled, handled},
  last_rebuild{read_error?, found, id, phase, started_at, finished_at, error, from_index,
    to_index},
  transactions{read_error?, long[{pid, database, user, application, backend_type,
    prepared_gid, state, started_at, query_started_at, age_seconds, holds_back_outbox}]},
  kafka{read_error?, reported, brokers, topics[{topic, partitions, replication_factor,
    min_insync_replicas, under_replicated[], below_min_isr[], offline[]}]},
  search_cluster{read_error?, reported (false: embedded engine), status, nodes, data_nodes,
    active_shards, relocating_shards, initializing_shards, unassigned_shards,
    delayed_unassigned_shards}`,
		Example: `  catalog status
  catalog status --json | jq '.projector.total_lag'
  catalog status --max-lag=0 --max-count-drift=0 || page-someone`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(cmd.Flags())
			if err != nil {
				return err
			}
			client, closeConn, err := dialOperations(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), statusRPCTimeout)
			defer cancel()
			st, err := client.GetStatus(ctx, req)
			if err != nil {
				return adminError(cfg.GRPCAddr, "status", err)
			}
			if f.asJSON {
				err = writeStatusJSON(cmd.OutOrStdout(), st)
			} else {
				err = writeStatusTable(cmd.OutOrStdout(), st)
			}
			if err != nil {
				return err
			}
			return unhealthyError(st)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.asJSON, "json", false, "print the status as JSON (stable field names) instead of a table")
	fs.DurationVar(&f.maxOutboxAge, "max-outbox-age", ops.DefaultMaxOutboxAge, "unhealthy when the oldest unrelayed outbox event is older")
	fs.Int64Var(&f.maxLag, "max-lag", ops.DefaultMaxLag, "unhealthy when the projector group's total lag is larger")
	fs.StringVar(&f.maxDrift, "max-count-drift", formatCountDrift(ops.DefaultMaxCountDriftRatio, ops.DefaultMaxCountDriftDocs), "allowed |live documents - live products|: a percentage, a count, or both (the larger applies)")
	fs.DurationVar(&f.maxTxAge, "max-tx-age", ops.DefaultMaxTxAge, "unhealthy when a read-only database transaction is open for longer (one holding the relay back: --max-outbox-age)")
	fs.DurationVar(&f.maxStall, "max-stall", ops.DefaultMaxStall, "unhealthy when a partition's committed offset stands still for longer while events wait")
	return cmd
}

// statusFlags are the flags of 'catalog status'.
type statusFlags struct {
	asJSON       bool
	maxOutboxAge time.Duration
	maxLag       int64
	maxDrift     string
	maxTxAge     time.Duration
	maxStall     time.Duration
}

// request is the GetStatus request of the flags: a threshold given on the command line
// replaces the server's default, one not given is left out; a bad value is a usage error.
func (f *statusFlags) request(fs *pflag.FlagSet) (*operationsv1.GetStatusRequest, error) {
	req := &operationsv1.GetStatusRequest{}
	var err error
	if req.MaxOutboxAge, err = nonNegativeDuration(fs, "max-outbox-age", f.maxOutboxAge); err != nil {
		return nil, err
	}
	if fs.Changed("max-lag") {
		if f.maxLag < 0 {
			return nil, usageError{fmt.Errorf("--max-lag must not be negative, got %d", f.maxLag)}
		}
		req.MaxLag = &f.maxLag
	}
	if fs.Changed("max-count-drift") {
		ratio, docs, err := parseCountDrift(f.maxDrift)
		if err != nil {
			return nil, usageError{fmt.Errorf("--max-count-drift: %w", err)}
		}
		req.MaxCountDriftRatio, req.MaxCountDriftDocs = &ratio, &docs
	}
	if req.MaxStall, err = nonNegativeDuration(fs, "max-stall", f.maxStall); err != nil {
		return nil, err
	}
	if req.MaxTxAge, err = nonNegativeDuration(fs, "max-tx-age", f.maxTxAge); err != nil {
		return nil, err
	}
	return req, nil
}

// nonNegativeDuration is the value d of the duration flag name for a request: nil when the
// flag was not given, a usage error when it is negative.
func nonNegativeDuration(fs *pflag.FlagSet, name string, d time.Duration) (*durationpb.Duration, error) {
	if !fs.Changed(name) {
		return nil, nil
	}
	if d < 0 {
		return nil, usageError{fmt.Errorf("--%s must not be negative, got %s", name, d)}
	}
	return durationpb.New(d), nil
}

// parseCountDrift reads "0.1%", "10" or "0.1%,10": a percentage of live products and/or an
// absolute number of documents. A part that is not given is 0, so "1%" alone means 1 %.
func parseCountDrift(s string) (ratio float64, docs int64, err error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return 0, 0, fmt.Errorf("%q: want a percentage, a count, or both separated by a comma", s)
	}
	seenRatio, seenDocs := false, false
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if pct, ok := strings.CutSuffix(p, "%"); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
			if err != nil || v < 0 || v > 100 || seenRatio {
				return 0, 0, fmt.Errorf("%q: %q is not one percentage between 0%% and 100%%", s, p)
			}
			ratio, seenRatio = v/100, true
			continue
		}
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 || seenDocs {
			return 0, 0, fmt.Errorf("%q: %q is not one non-negative number of documents", s, p)
		}
		docs, seenDocs = v, true
	}
	return ratio, docs, nil
}

// formatCountDrift writes a drift limit the way parseCountDrift reads it: "0.1%,10".
func formatCountDrift(ratio float64, docs int64) string {
	return strconv.FormatFloat(ratio*100, 'g', -1, 64) + "%," + strconv.FormatInt(docs, 10)
}

// unhealthyError is nil for a healthy status; otherwise it lists the error-severity
// problems, one per line, which main prints on stderr before exiting with code 1.
func unhealthyError(st *operationsv1.GetStatusResponse) error {
	if st.GetHealthy() {
		return nil
	}
	var b strings.Builder
	n := 0
	for _, p := range st.GetProblems() {
		if p.GetSeverity() != operationsv1.Severity_SEVERITY_ERROR {
			continue
		}
		n++
		fmt.Fprintf(&b, "\n  %s: %s", p.GetCheck(), p.GetMessage())
	}
	return fmt.Errorf("unhealthy (%d %s):%s", n, plural(n, "problem", "problems"), b.String())
}

// partitionOffsetsJSON keys a position by partition number as a string (JSON object keys
// are strings); never nil, so the field is {} rather than null when there is no position.
func partitionOffsetsJSON(pos map[int32]int64) map[string]int64 {
	out := make(map[string]int64, len(pos))
	for p, o := range pos {
		out[strconv.Itoa(int(p))] = o
	}
	return out
}

// The JSON form of a status. Its field names are part of the CLI's contract (documented in
// the command's help): scripts and alerts read them, so they never change once published.
type (
	statusJSON struct {
		Healthy      bool             `json:"healthy"`
		CheckedAt    *time.Time       `json:"checked_at"`
		Problems     []problemJSON    `json:"problems"`
		Thresholds   thresholdsJSON   `json:"thresholds"`
		Outbox       outboxJSON       `json:"outbox"`
		Projector    projectorJSON    `json:"projector"`
		ReadModel    readModelJSON    `json:"read_model"`
		Products     productsJSON     `json:"products"`
		DLQ          dlqJSON          `json:"dlq"`
		LastRebuild  lastRebuildJSON  `json:"last_rebuild"`
		Transactions transactionsJSON `json:"transactions"`
		Kafka        kafkaJSON        `json:"kafka"`
		Search       searchJSON       `json:"search_cluster"`
	}
	problemJSON struct {
		Severity string `json:"severity"`
		Check    string `json:"check"`
		Message  string `json:"message"`
	}
	thresholdsJSON struct {
		MaxOutboxAgeSeconds float64 `json:"max_outbox_age_seconds"`
		MaxLag              int64   `json:"max_lag"`
		MaxCountDriftRatio  float64 `json:"max_count_drift_ratio"`
		MaxCountDriftDocs   int64   `json:"max_count_drift_docs"`
		MaxTxAgeSeconds     float64 `json:"max_tx_age_seconds"`
		MaxStallSeconds     float64 `json:"max_stall_seconds"`
	}
	outboxJSON struct {
		ReadError        string           `json:"read_error,omitempty"`
		Backlog          int64            `json:"backlog"`
		OldestAgeSeconds *float64         `json:"oldest_age_seconds"`
		OldestCreatedAt  *time.Time       `json:"oldest_created_at"`
		TableBytes       int64            `json:"table_bytes"`
		Lanes            []outboxLaneJSON `json:"lanes"`
	}
	outboxLaneJSON struct {
		Lane                 int32      `json:"lane"`
		Backlog              int64      `json:"backlog"`
		OldestAgeSeconds     *float64   `json:"oldest_age_seconds"`
		RelayStarted         bool       `json:"relay_started"`
		RelayedTransactionID string     `json:"relayed_transaction_id"`
		RelayedOffset        int64      `json:"relayed_offset"`
		RelayedAt            *time.Time `json:"relayed_at"`
	}
	projectorJSON struct {
		ReadError           string          `json:"read_error,omitempty"`
		Group               string          `json:"group"`
		Topic               string          `json:"topic"`
		State               string          `json:"state"`
		Members             int32           `json:"members"`
		TotalLag            int64           `json:"total_lag"`
		HasCommittedOffsets bool            `json:"has_committed_offsets"`
		Records             int64           `json:"records"`
		Partitions          []partitionJSON `json:"partitions"`
	}
	partitionJSON struct {
		Partition       int32   `json:"partition"`
		StartOffset     int64   `json:"start_offset"`
		EndOffset       int64   `json:"end_offset"`
		CommittedOffset int64   `json:"committed_offset"`
		Lag             int64   `json:"lag"`
		StalledSeconds  float64 `json:"stalled_seconds"`
	}
	readModelJSON struct {
		ReadError           string `json:"read_error,omitempty"`
		Alias               string `json:"alias"`
		AliasExists         bool   `json:"alias_exists"`
		Index               string `json:"index"`
		IndexKnown          bool   `json:"index_known"`
		IndexMappingVersion int32  `json:"index_mapping_version"`
		CodeMappingVersion  int32  `json:"code_mapping_version"`
		LiveDocuments       int64  `json:"live_documents"`
		Tombstones          int64  `json:"tombstones"`
		Indices             int32  `json:"indices"`
		CountCompared       bool   `json:"count_compared"`
		CountDrift          int64  `json:"count_drift"`
		AllowedCountDrift   int64  `json:"allowed_count_drift"`
		// IndexBehind and the two fields after it say whether the live index misses
		// events of the log, and from where.
		IndexBehind         bool             `json:"index_behind"`
		IndexCompleteBefore map[string]int64 `json:"index_complete_before"`
		IndexBehindEvents   int64            `json:"index_behind_events"`
	}
	productsJSON struct {
		ReadError string `json:"read_error,omitempty"`
		Live      int64  `json:"live"`
		Total     int64  `json:"total"`
	}
	dlqJSON struct {
		ReadError string `json:"read_error,omitempty"`
		Topic     string `json:"topic"`
		Depth     int64  `json:"depth"`
		Unhandled int64  `json:"unhandled"`
		Handled   int64  `json:"handled"`
	}
	lastRebuildJSON struct {
		ReadError  string     `json:"read_error,omitempty"`
		Found      bool       `json:"found"`
		ID         string     `json:"id"`
		Phase      string     `json:"phase"`
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		Error      string     `json:"error"`
		FromIndex  string     `json:"from_index"`
		ToIndex    string     `json:"to_index"`
	}
	kafkaJSON struct {
		ReadError string                 `json:"read_error,omitempty"`
		Reported  bool                   `json:"reported"`
		Brokers   int32                  `json:"brokers"`
		Topics    []topicReplicationJSON `json:"topics"`
	}
	topicReplicationJSON struct {
		Topic             string  `json:"topic"`
		Partitions        int32   `json:"partitions"`
		ReplicationFactor int32   `json:"replication_factor"`
		MinInsyncReplicas int32   `json:"min_insync_replicas"`
		UnderReplicated   []int32 `json:"under_replicated"`
		BelowMinISR       []int32 `json:"below_min_isr"`
		Offline           []int32 `json:"offline"`
	}
	searchJSON struct {
		ReadError               string `json:"read_error,omitempty"`
		Reported                bool   `json:"reported"`
		Status                  string `json:"status"`
		Nodes                   int32  `json:"nodes"`
		DataNodes               int32  `json:"data_nodes"`
		ActiveShards            int32  `json:"active_shards"`
		RelocatingShards        int32  `json:"relocating_shards"`
		InitializingShards      int32  `json:"initializing_shards"`
		UnassignedShards        int32  `json:"unassigned_shards"`
		DelayedUnassignedShards int32  `json:"delayed_unassigned_shards"`
	}
	transactionsJSON struct {
		ReadError string       `json:"read_error,omitempty"`
		Long      []longTxJSON `json:"long"`
	}
	longTxJSON struct {
		PID             int32      `json:"pid"`
		Database        string     `json:"database"`
		User            string     `json:"user"`
		Application     string     `json:"application"`
		BackendType     string     `json:"backend_type"`
		PreparedGID     string     `json:"prepared_gid"`
		State           string     `json:"state"`
		StartedAt       *time.Time `json:"started_at"`
		QueryStartedAt  *time.Time `json:"query_started_at"`
		AgeSeconds      float64    `json:"age_seconds"`
		HoldsBackOutbox bool       `json:"holds_back_outbox"`
	}
)

func timeOrNil(t *timestamppb.Timestamp) *time.Time {
	if t == nil {
		return nil
	}
	v := t.AsTime().UTC()
	return &v
}

func secondsOrNil(d *durationpb.Duration) *float64 {
	if d == nil {
		return nil
	}
	v := d.AsDuration().Seconds()
	return &v
}

func severityLabel(s operationsv1.Severity) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SEVERITY_"))
}

func statusToJSON(st *operationsv1.GetStatusResponse) statusJSON {
	th := st.GetThresholds()
	out := statusJSON{
		Healthy: st.GetHealthy(), CheckedAt: timeOrNil(st.GetCheckedAt()), Problems: []problemJSON{},
		Thresholds: thresholdsJSON{MaxOutboxAgeSeconds: th.GetMaxOutboxAge().AsDuration().Seconds(), MaxLag: th.GetMaxLag(),
			MaxCountDriftRatio: th.GetMaxCountDriftRatio(), MaxCountDriftDocs: th.GetMaxCountDriftDocs(),
			MaxTxAgeSeconds: th.GetMaxTxAge().AsDuration().Seconds(), MaxStallSeconds: th.GetMaxStall().AsDuration().Seconds()},
	}
	for _, p := range st.GetProblems() {
		out.Problems = append(out.Problems, problemJSON{Severity: severityLabel(p.GetSeverity()), Check: p.GetCheck(), Message: p.GetMessage()})
	}
	o := st.GetOutbox()
	out.Outbox = outboxJSON{ReadError: o.GetReadError(), Backlog: o.GetBacklog(), OldestAgeSeconds: secondsOrNil(o.GetOldestAge()),
		OldestCreatedAt: timeOrNil(o.GetOldestCreatedAt()), TableBytes: o.GetTableBytes(), Lanes: []outboxLaneJSON{}}
	for _, l := range o.GetLanes() {
		out.Outbox.Lanes = append(out.Outbox.Lanes, outboxLaneJSON{Lane: l.GetLane(), Backlog: l.GetBacklog(),
			OldestAgeSeconds: secondsOrNil(l.GetOldestAge()), RelayStarted: l.GetRelayStarted(),
			RelayedTransactionID: l.GetRelayedTransactionId(), RelayedOffset: l.GetRelayedOffset(), RelayedAt: timeOrNil(l.GetRelayedAt())})
	}
	p := st.GetProjector()
	out.Projector = projectorJSON{ReadError: p.GetReadError(), Group: p.GetGroup(), Topic: p.GetTopic(), State: p.GetState(),
		Members: p.GetMembers(), TotalLag: p.GetTotalLag(), HasCommittedOffsets: p.GetHasCommittedOffsets(), Records: p.GetRecords(),
		Partitions: []partitionJSON{}}
	for _, pl := range p.GetPartitions() {
		out.Projector.Partitions = append(out.Projector.Partitions, partitionJSON{Partition: pl.GetPartition(),
			StartOffset: pl.GetStartOffset(), EndOffset: pl.GetEndOffset(), CommittedOffset: pl.GetCommittedOffset(), Lag: pl.GetLag(),
			StalledSeconds: pl.GetStalledFor().AsDuration().Seconds()})
	}
	rm := st.GetReadModel()
	out.ReadModel = readModelJSON{ReadError: rm.GetReadError(), Alias: rm.GetAlias(), AliasExists: rm.GetAliasExists(), Index: rm.GetIndex(),
		IndexKnown: rm.GetIndexKnown(), IndexMappingVersion: rm.GetIndexMappingVersion(), CodeMappingVersion: rm.GetCodeMappingVersion(),
		LiveDocuments: rm.GetLiveDocuments(), Tombstones: rm.GetTombstones(), Indices: rm.GetIndices(), CountCompared: rm.GetCountCompared(),
		CountDrift: rm.GetCountDrift(), AllowedCountDrift: rm.GetAllowedCountDrift(), IndexBehind: rm.GetIndexBehind(),
		IndexCompleteBefore: partitionOffsetsJSON(rm.GetIndexCompleteBefore()), IndexBehindEvents: rm.GetIndexBehindEvents()}
	out.Products = productsJSON{ReadError: st.GetProducts().GetReadError(), Live: st.GetProducts().GetLive(), Total: st.GetProducts().GetTotal()}
	d := st.GetDlq()
	out.DLQ = dlqJSON{ReadError: d.GetReadError(), Topic: d.GetTopic(), Depth: d.GetDepth(), Unhandled: d.GetUnhandled(), Handled: d.GetHandled()}
	lr := st.GetLastRebuild()
	out.LastRebuild = lastRebuildJSON{ReadError: lr.GetReadError(), Found: lr.GetFound(), ID: lr.GetId(), Phase: lr.GetPhase(),
		StartedAt: timeOrNil(lr.GetStartedAt()), FinishedAt: timeOrNil(lr.GetFinishedAt()), Error: lr.GetError(),
		FromIndex: lr.GetFromIndex(), ToIndex: lr.GetToIndex()}
	out.Transactions = transactionsJSON{ReadError: st.GetTransactions().GetReadError(), Long: []longTxJSON{}}
	for _, tx := range st.GetTransactions().GetLong() {
		out.Transactions.Long = append(out.Transactions.Long, longTxJSON{PID: tx.GetPid(), Database: tx.GetDatabase(), User: tx.GetUser(),
			Application: tx.GetApplication(), BackendType: tx.GetBackendType(), PreparedGID: tx.GetPreparedGid(), State: tx.GetState(),
			StartedAt: timeOrNil(tx.GetStartedAt()), QueryStartedAt: timeOrNil(tx.GetQueryStartedAt()),
			AgeSeconds: tx.GetAge().AsDuration().Seconds(), HoldsBackOutbox: tx.GetHoldsBackOutbox()})
	}
	k := st.GetKafka()
	out.Kafka = kafkaJSON{ReadError: k.GetReadError(), Reported: k.GetReported(), Brokers: k.GetBrokers(), Topics: []topicReplicationJSON{}}
	for _, t := range k.GetTopics() {
		out.Kafka.Topics = append(out.Kafka.Topics, topicReplicationJSON{Topic: t.GetTopic(), Partitions: t.GetPartitions(),
			ReplicationFactor: t.GetReplicationFactor(), MinInsyncReplicas: t.GetMinInsyncReplicas(),
			UnderReplicated: orEmpty(t.GetUnderReplicated()), BelowMinISR: orEmpty(t.GetBelowMinIsr()), Offline: orEmpty(t.GetOffline())})
	}
	sc := st.GetSearchCluster()
	out.Search = searchJSON{ReadError: sc.GetReadError(), Reported: sc.GetReported(), Status: sc.GetStatus(), Nodes: sc.GetNodes(),
		DataNodes: sc.GetDataNodes(), ActiveShards: sc.GetActiveShards(), RelocatingShards: sc.GetRelocatingShards(),
		InitializingShards: sc.GetInitializingShards(), UnassignedShards: sc.GetUnassignedShards(),
		DelayedUnassignedShards: sc.GetDelayedUnassignedShards()}
	return out
}

// orEmpty makes a nil list an empty one, so JSON shows [] rather than null.
func orEmpty(l []int32) []int32 {
	if l == nil {
		return []int32{}
	}
	return l
}

func writeStatusJSON(w io.Writer, st *operationsv1.GetStatusResponse) error {
	return writeJSON(w, statusToJSON(st))
}
