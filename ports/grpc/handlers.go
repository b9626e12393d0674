package grpcport

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Handlers return the application's errors as they are; the interceptor maps them
// (mapError). Errors a handler makes itself are status errors already.

// watchErrorBudget is how long WatchRebuild rides out failing reads of the record (a
// database failover, say) before it gives up: long enough for a failover, short enough that
// a watcher does not hang on a broken replica.
const watchErrorBudget = 15 * time.Second

// StartRebuild implements ProjectionAdmin.StartRebuild.
func (s *Server) StartRebuild(ctx context.Context, req *projectionv1.StartRebuildRequest) (*projectionv1.Rebuild, error) {
	src, err := sourceFromProto(req.GetSource())
	if err != nil {
		return nil, err
	}
	snap, err := s.svc.Start(ctx, src)
	if errors.Is(err, readmodel.ErrAlreadyRunning) {
		return nil, s.alreadyRunning(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	return s.rebuildToProto(snap), nil
}

// alreadyRunning names the running rebuild in the error's metadata when it can, so the
// operator can watch or cancel it without another lookup. The lookup is best effort: the
// lock may be held by a rollback or a prune, which leave no record.
func (s *Server) alreadyRunning(ctx context.Context, cause error) error {
	var meta map[string]string
	if cur, err := s.svc.Get(ctx, ""); err == nil && !cur.Phase.Terminal() {
		meta = map[string]string{"rebuild_id": cur.ID, "phase": string(cur.Phase)}
	}
	return withReason(codes.FailedPrecondition, cause.Error(), ReasonAlreadyRunning, meta)
}

// GetRebuild implements ProjectionAdmin.GetRebuild.
func (s *Server) GetRebuild(ctx context.Context, req *projectionv1.GetRebuildRequest) (*projectionv1.Rebuild, error) {
	snap, err := s.svc.Get(ctx, req.GetId())
	if errors.Is(err, readmodel.ErrNotFound) {
		return nil, rebuildNotFound(req.GetId())
	}
	if err != nil {
		return nil, err
	}
	return s.rebuildToProto(snap), nil
}

// WatchRebuild implements ProjectionAdmin.WatchRebuild by polling the record: it lives in
// the database, and the replica running the rebuild may not be the one being watched.
func (s *Server) WatchRebuild(req *projectionv1.WatchRebuildRequest, stream grpc.ServerStreamingServer[projectionv1.RebuildProgress]) error {
	ctx := stream.Context()
	snap, err := s.svc.Get(ctx, req.GetId())
	if errors.Is(err, readmodel.ErrNotFound) {
		return rebuildNotFound(req.GetId())
	}
	if err != nil {
		return err
	}
	id := snap.ID // an empty request id follows the rebuild that was newest now, not later ones
	ticker := time.NewTicker(s.cfg.WatchPollInterval)
	defer ticker.Stop()
	var last *projectionv1.Rebuild
	var failingSince time.Time
	for {
		if msg := s.progressToProto(snap); last == nil || !sameButHeartbeat(msg.GetRebuild(), last) {
			if err := stream.Send(msg); err != nil {
				if ctx.Err() != nil {
					return ctx.Err() // the client went away: not a server fault
				}
				return err
			}
			last = msg.GetRebuild()
		}
		if snap.Phase.Terminal() {
			return nil
		}
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.stopping:
				return status.Error(codes.Unavailable, "server is shutting down; watch again to resume")
			case <-ticker.C:
			}
			next, err := s.svc.Get(ctx, id)
			if err == nil {
				snap, failingSince = next, time.Time{}
				break
			}
			if ctx.Err() != nil || errors.Is(err, readmodel.ErrNotFound) {
				return err
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > watchErrorBudget {
				return err
			}
			s.log.WarnContext(ctx, "watch rebuild: reading the record failed; retrying", "rebuild", id, "err", err)
		}
	}
}

// sameButHeartbeat compares two records without their heartbeat, which moves every second
// while nothing else may: a watcher hears of progress, not of every beat.
func sameButHeartbeat(a, b *projectionv1.Rebuild) bool {
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	a.HeartbeatAt, b.HeartbeatAt = nil, nil
	return proto.Equal(a, b)
}

// CancelRebuild implements ProjectionAdmin.CancelRebuild.
func (s *Server) CancelRebuild(ctx context.Context, req *projectionv1.CancelRebuildRequest) (*projectionv1.Rebuild, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required: cancelling \"the newest\" could stop a rebuild nobody meant")
	}
	snap, err := s.svc.Cancel(ctx, req.GetId())
	if errors.Is(err, readmodel.ErrNotFound) {
		return nil, rebuildNotFound(req.GetId())
	}
	if err != nil {
		return nil, err
	}
	return s.rebuildToProto(snap), nil
}

// ListIndices implements ProjectionAdmin.ListIndices.
func (s *Server) ListIndices(ctx context.Context, _ *projectionv1.ListIndicesRequest) (*projectionv1.ListIndicesResponse, error) {
	list, err := s.svc.ListIndices(ctx)
	if err != nil {
		return nil, err
	}
	out := &projectionv1.ListIndicesResponse{Indices: make([]*projectionv1.Index, len(list))}
	for i, ix := range list {
		out.Indices[i] = indexToProto(ix)
	}
	return out, nil
}

// RollbackAlias implements ProjectionAdmin.RollbackAlias.
func (s *Server) RollbackAlias(ctx context.Context, _ *projectionv1.RollbackAliasRequest) (*projectionv1.RollbackAliasResponse, error) {
	rb, err := s.svc.RollbackAlias(ctx)
	if err != nil {
		return nil, err
	}
	return &projectionv1.RollbackAliasResponse{From: rb.From, To: rb.To, CaughtUp: rb.CaughtUp, Drained: rb.Drained, Since: rb.Since}, nil
}

// PruneIndices implements ProjectionAdmin.PruneIndices.
func (s *Server) PruneIndices(ctx context.Context, req *projectionv1.PruneIndicesRequest) (*projectionv1.PruneIndicesResponse, error) {
	if req.GetKeep() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "keep must not be negative, got %d", req.GetKeep())
	}
	deleted, err := s.svc.PruneIndices(ctx, int(req.GetKeep()))
	if err != nil {
		return nil, err
	}
	return &projectionv1.PruneIndicesResponse{Deleted: deleted}, nil
}
