package grpcport

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
)

// OperationsErrorDomain is the google.rpc.ErrorInfo domain of the Operations service's own
// reasons; a missing alias keeps ProjectionAdmin's NO_ALIAS in ErrorDomain.
const OperationsErrorDomain = "catalog.operations.v1"

// ReasonVerifyRunning is the ErrorInfo reason when another Verify runs in the same process;
// retrying when it has finished is correct.
const ReasonVerifyRunning = "VERIFY_ALREADY_RUNNING"

// OperationsService is what the Operations service needs from the use cases; *ops.Service
// (application/ops) satisfies it. Declared here, where it is used, so tests drive the
// handlers with a fake.
type OperationsService interface {
	// Status reads the pipeline and judges it against the thresholds.
	Status(ctx context.Context, th ops.Thresholds) (ops.Status, error)
	// Verify compares the database with the read model, reporting progress to progress.
	Verify(ctx context.Context, req ops.VerifyRequest, progress func(ops.VerifyProgress)) (ops.VerifyReport, error)
}

// Operations serves catalog.operations.v1.Operations (GetStatus, Verify) on the admin
// server: pass its Register in Deps.Register, so it shares the server's listener,
// interceptors (recovery, error mapping, logging, metrics) and shutdown.
type Operations struct {
	operationsv1.UnimplementedOperationsServer
	svc OperationsService
}

// NewOperations returns the Operations service over svc.
func NewOperations(svc OperationsService) (*Operations, error) {
	if svc == nil {
		return nil, errors.New("grpc operations: nil operations service")
	}
	return &Operations{svc: svc}, nil
}

// Register adds the service to a gRPC server; it is the Deps.Register hook.
func (o *Operations) Register(r grpc.ServiceRegistrar) {
	operationsv1.RegisterOperationsServer(r, o)
}

// GetStatus implements operationsv1.OperationsServer.
func (o *Operations) GetStatus(ctx context.Context, req *operationsv1.GetStatusRequest) (*operationsv1.GetStatusResponse, error) {
	st, err := o.svc.Status(ctx, thresholdsFromProto(req))
	if err != nil {
		return nil, operationsError(err)
	}
	return statusToProto(st), nil
}

// Verify implements operationsv1.OperationsServer: progress messages while the comparison
// runs, then the report. The use case calls progress on the calling goroutine, so Send is
// never called concurrently.
func (o *Operations) Verify(req *operationsv1.VerifyRequest, stream grpc.ServerStreamingServer[operationsv1.VerifyResponse]) error {
	vr := ops.DefaultVerifyRequest()
	if req.Settle != nil {
		if err := req.GetSettle().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "settle: %v", err)
		}
		vr.Settle = req.GetSettle().AsDuration()
	}
	if req.Samples != nil {
		vr.Samples = int(req.GetSamples())
	}
	progress := func(p ops.VerifyProgress) {
		// A failed send means the client has gone; the stream's context is cancelled then
		// and the verify stops on its own.
		_ = stream.Send(&operationsv1.VerifyResponse{Event: &operationsv1.VerifyResponse_Progress{Progress: verifyProgressToProto(p)}})
	}
	rep, err := o.svc.Verify(stream.Context(), vr, progress)
	if err != nil {
		return operationsError(err)
	}
	return stream.Send(&operationsv1.VerifyResponse{Event: &operationsv1.VerifyResponse_Report{Report: verifyReportToProto(rep)}})
}

// operationsError maps the use cases' own sentinels; everything else goes back unchanged to
// the interceptor, whose mapError maps it (NO_ALIAS, cancellation, INTERNAL with the cause
// logged) like every other call of the admin port.
func operationsError(err error) error {
	switch {
	case errors.Is(err, ops.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ops.ErrVerifyRunning):
		st := status.New(codes.FailedPrecondition, err.Error())
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonVerifyRunning, Domain: OperationsErrorDomain}); derr == nil {
			return withInfo.Err()
		}
		return st.Err()
	}
	return err
}

func thresholdsFromProto(req *operationsv1.GetStatusRequest) ops.Thresholds {
	th := ops.DefaultThresholds()
	if req.MaxOutboxAge != nil {
		th.MaxOutboxAge = durationOrInvalid(req.GetMaxOutboxAge())
	}
	if req.MaxLag != nil {
		th.MaxLag = req.GetMaxLag()
	}
	if req.MaxCountDriftRatio != nil {
		th.MaxCountDriftRatio = req.GetMaxCountDriftRatio()
	}
	if req.MaxCountDriftDocs != nil {
		th.MaxCountDriftDocs = req.GetMaxCountDriftDocs()
	}
	if req.MaxTxAge != nil {
		th.MaxTxAge = durationOrInvalid(req.GetMaxTxAge())
	}
	if req.MaxStall != nil {
		th.MaxStall = durationOrInvalid(req.GetMaxStall())
	}
	return th
}

// durationOrInvalid turns a malformed duration into a negative one, which the use case
// refuses with INVALID_ARGUMENT, instead of silently clamping it.
func durationOrInvalid(d *durationpb.Duration) time.Duration {
	if d.CheckValid() != nil {
		return -1
	}
	return d.AsDuration()
}

func dur(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func statusToProto(st ops.Status) *operationsv1.GetStatusResponse {
	th := st.Thresholds
	out := &operationsv1.GetStatusResponse{
		CheckedAt: ts(st.CheckedAt),
		Healthy:   st.Healthy,
		Thresholds: &operationsv1.Thresholds{MaxOutboxAge: durationpb.New(th.MaxOutboxAge), MaxLag: th.MaxLag,
			MaxCountDriftRatio: th.MaxCountDriftRatio, MaxCountDriftDocs: th.MaxCountDriftDocs, MaxTxAge: durationpb.New(th.MaxTxAge),
			MaxStall: durationpb.New(th.MaxStall)},
	}
	for _, p := range st.Problems {
		sev := operationsv1.Severity_SEVERITY_WARNING
		if p.Severity >= ops.SeverityError {
			sev = operationsv1.Severity_SEVERITY_ERROR
		}
		out.Problems = append(out.Problems, &operationsv1.Problem{Severity: sev, Check: p.Check, Message: p.Message})
	}

	o := st.Outbox
	out.Outbox = &operationsv1.OutboxStatus{ReadError: errString(o.Err), Backlog: o.Backlog, OldestAge: dur(o.OldestAge),
		OldestCreatedAt: ts(o.OldestCreatedAt), TableBytes: o.TableBytes}
	for _, l := range o.Lanes {
		out.Outbox.Lanes = append(out.Outbox.Lanes, &operationsv1.OutboxLane{Lane: clampInt32(l.Lane), Backlog: l.Backlog,
			OldestAge: dur(l.OldestAge), RelayStarted: l.RelayStarted, RelayedTransactionId: l.RelayedTransactionID,
			RelayedOffset: l.RelayedOffset, RelayedAt: ts(l.RelayedAt)})
	}

	p := st.Projector
	out.Projector = &operationsv1.ProjectorStatus{ReadError: errString(p.Err), Group: p.Group, Topic: p.Topic, State: p.State,
		Members: clampInt32(p.Members), TotalLag: p.Lag, HasCommittedOffsets: p.Committed, Records: p.Records}
	for _, pl := range p.Partitions {
		out.Projector.Partitions = append(out.Projector.Partitions, &operationsv1.PartitionLag{Partition: pl.Partition,
			StartOffset: pl.Start, EndOffset: pl.End, CommittedOffset: pl.Committed, Lag: pl.Lag, StalledFor: dur(pl.StalledFor)})
	}

	rm := st.ReadModel
	out.ReadModel = &operationsv1.ReadModelStatus{ReadError: errString(rm.Err), Alias: rm.Alias, AliasExists: rm.AliasExists,
		Index: rm.Index, IndexKnown: rm.IndexKnown, IndexMappingVersion: clampInt32(rm.IndexMappingVersion),
		CodeMappingVersion: clampInt32(rm.CodeMappingVersion), LiveDocuments: rm.LiveDocuments, Tombstones: rm.Tombstones,
		Indices: clampInt32(rm.Indices), CountCompared: st.Counts.Compared, CountDrift: st.Counts.Drift, AllowedCountDrift: st.Counts.Allowed,
		IndexBehind: rm.Behind, IndexCompleteBefore: rm.CompleteBefore, IndexBehindEvents: rm.BehindEvents}

	out.Products = &operationsv1.ProductsStatus{ReadError: errString(st.Products.Err), Live: st.Products.Live, Total: st.Products.Total}
	out.Dlq = &operationsv1.DeadLetterStatus{ReadError: errString(st.DLQ.Err), Topic: st.DLQ.Topic, Depth: st.DLQ.Depth,
		Unhandled: st.DLQ.Unhandled, Handled: st.DLQ.Handled}

	out.LastRebuild = &operationsv1.LastRebuildStatus{ReadError: errString(st.Rebuild.Err)}
	if r := st.Rebuild.Last; r != nil {
		lr := out.LastRebuild
		lr.Found, lr.Id, lr.Phase, lr.StartedAt, lr.Error = true, r.ID, string(r.Phase), ts(r.StartedAt), r.Error
		lr.FromIndex, lr.ToIndex = r.FromIndex, r.ToIndex
		if r.FinishedAt != nil {
			lr.FinishedAt = ts(*r.FinishedAt)
		}
	}

	out.Transactions = &operationsv1.TransactionsStatus{ReadError: errString(st.Transactions.Err)}
	for _, tx := range st.Transactions.Long {
		out.Transactions.Long = append(out.Transactions.Long, &operationsv1.LongTransaction{Pid: tx.PID, Database: tx.Database,
			User: tx.User, Application: tx.Application, State: tx.State, StartedAt: ts(tx.Started),
			Age: durationpb.New(tx.Age), HoldsBackOutbox: tx.HoldsBackOutbox, QueryStartedAt: ts(tx.QueryStarted),
			BackendType: tx.BackendType, PreparedGid: tx.PreparedGID})
	}
	out.Kafka, out.SearchCluster = clustersToProto(st)
	return out
}

// clustersToProto is the replication of the topics and the search cluster's health.
func clustersToProto(st ops.Status) (*operationsv1.KafkaStatus, *operationsv1.SearchClusterStatus) {
	k := &operationsv1.KafkaStatus{ReadError: errString(st.Kafka.Err), Reported: st.Kafka.Reported, Brokers: clampInt32(st.Kafka.Brokers)}
	for _, t := range st.Kafka.Topics {
		k.Topics = append(k.Topics, &operationsv1.TopicReplication{Topic: t.Topic, Partitions: clampInt32(t.Partitions),
			ReplicationFactor: clampInt32(t.ReplicationFactor), MinInsyncReplicas: clampInt32(t.MinInsyncReplicas),
			UnderReplicated: t.UnderReplicated, BelowMinIsr: t.BelowMinISR, Offline: t.Offline})
	}
	h := st.Search
	sc := &operationsv1.SearchClusterStatus{ReadError: errString(h.Err), Reported: h.Reported, Status: h.Status,
		Nodes: clampInt32(h.Nodes), DataNodes: clampInt32(h.DataNodes), ActiveShards: clampInt32(h.ActiveShards),
		RelocatingShards: clampInt32(h.RelocatingShards), InitializingShards: clampInt32(h.InitializingShards),
		UnassignedShards: clampInt32(h.UnassignedShards), DelayedUnassignedShards: clampInt32(h.DelayedUnassignedShards)}
	return k, sc
}

var verifyPhaseToProto = map[ops.VerifyPhase]operationsv1.VerifyPhase{
	ops.PhaseScan:    operationsv1.VerifyPhase_VERIFY_PHASE_SCAN,
	ops.PhaseSettle:  operationsv1.VerifyPhase_VERIFY_PHASE_SETTLE,
	ops.PhaseRecheck: operationsv1.VerifyPhase_VERIFY_PHASE_RECHECK,
}

var categoryToProto = map[ops.Category]operationsv1.DifferenceCategory{
	ops.CategoryMissing:     operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_MISSING,
	ops.CategoryStale:       operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_STALE,
	ops.CategoryPhantom:     operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_PHANTOM,
	ops.CategoryResurrected: operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_RESURRECTED,
	ops.CategoryAhead:       operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_AHEAD,
}

func verifyProgressToProto(p ops.VerifyProgress) *operationsv1.VerifyProgress {
	return &operationsv1.VerifyProgress{Phase: verifyPhaseToProto[p.Phase], Products: p.Products, Documents: p.Documents,
		ProductsTotal: p.ProductsTotal, Candidates: p.Candidates, Elapsed: durationpb.New(p.Elapsed)}
}

func verifyReportToProto(r ops.VerifyReport) *operationsv1.VerifyReport {
	out := &operationsv1.VerifyReport{Alias: r.Alias, Index: r.Index, StartedAt: ts(r.StartedAt), Duration: durationpb.New(r.Duration),
		Settle: durationpb.New(r.Settle), Products: r.Products, Documents: r.Documents, Candidates: r.Candidates, Consistent: r.Consistent()}
	for _, c := range r.Categories {
		cr := &operationsv1.CategoryReport{Category: categoryToProto[c.Category], Count: c.Count}
		for _, d := range c.Samples {
			cr.Samples = append(cr.Samples, &operationsv1.Difference{Id: d.ID, InDatabase: d.InDatabase, DatabaseVersion: d.DatabaseVersion,
				DatabaseDeleted: d.DatabaseDeleted, InIndex: d.InIndex, IndexVersion: d.IndexVersion, IndexDeleted: d.IndexDeleted})
		}
		out.Categories = append(out.Categories, cr)
	}
	return out
}
