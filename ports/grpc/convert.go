package grpcport

import (
	"math"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

var phaseToProto = map[readmodel.Phase]projectionv1.RebuildPhase{
	readmodel.PhasePending:     projectionv1.RebuildPhase_REBUILD_PHASE_PENDING,
	readmodel.PhaseCreateIndex: projectionv1.RebuildPhase_REBUILD_PHASE_CREATE_INDEX,
	readmodel.PhaseCapture:     projectionv1.RebuildPhase_REBUILD_PHASE_CAPTURE_OFFSETS,
	readmodel.PhaseFill:        projectionv1.RebuildPhase_REBUILD_PHASE_FILL,
	readmodel.PhaseCatchUp:     projectionv1.RebuildPhase_REBUILD_PHASE_CATCH_UP,
	readmodel.PhaseValidate:    projectionv1.RebuildPhase_REBUILD_PHASE_VALIDATE,
	readmodel.PhaseSwitch:      projectionv1.RebuildPhase_REBUILD_PHASE_SWITCH_ALIAS,
	readmodel.PhaseDrain:       projectionv1.RebuildPhase_REBUILD_PHASE_DRAIN,
	readmodel.PhaseSucceeded:   projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED,
	readmodel.PhaseFailed:      projectionv1.RebuildPhase_REBUILD_PHASE_FAILED,
	readmodel.PhaseCancelled:   projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED,
}

// PhaseFromProto is the domain phase of a phase on the wire, so that clients of the admin API
// ask readmodel.Phase (Terminal, Before) instead of keeping their own lists of phases. A value
// this server does not know gives "", which is no phase (Valid reports false).
func PhaseFromProto(p projectionv1.RebuildPhase) readmodel.Phase {
	for domain, wire := range phaseToProto {
		if wire == p {
			return domain
		}
	}
	return ""
}

// sourceFromProto accepts UNSPECIFIED as the database (docs/ARCHITECTURE.md, "Rebuild": the database is the
// default) and refuses values this server does not know, instead of guessing.
func sourceFromProto(s projectionv1.RebuildSource) (readmodel.Source, error) {
	switch s {
	case projectionv1.RebuildSource_REBUILD_SOURCE_UNSPECIFIED, projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE:
		return readmodel.SourceDatabase, nil
	case projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA:
		return readmodel.SourceKafka, nil
	}
	return "", status.Errorf(codes.InvalidArgument, "unknown source %d (want DATABASE or KAFKA)", int32(s))
}

func sourceToProto(s readmodel.Source) projectionv1.RebuildSource {
	switch s {
	case readmodel.SourceKafka:
		return projectionv1.RebuildSource_REBUILD_SOURCE_KAFKA
	case readmodel.SourceDatabase, "":
		return projectionv1.RebuildSource_REBUILD_SOURCE_DATABASE
	}
	return projectionv1.RebuildSource_REBUILD_SOURCE_UNSPECIFIED
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// rebuildToProto converts a record and judges its runner's liveness by the service's clock
// and heartbeat timeout, so every replica reports a dead runner alike.
func (srv *Server) rebuildToProto(s readmodel.Snapshot) *projectionv1.Rebuild {
	out := &projectionv1.Rebuild{
		Id:           s.ID,
		Source:       sourceToProto(s.Source),
		Phase:        phaseToProto[s.Phase],
		FromIndex:    s.FromIndex,
		ToIndex:      s.ToIndex,
		DocsDone:     s.DocsDone,
		DocsTotal:    s.DocsTotal,
		StartedAt:    ts(s.StartedAt),
		UpdatedAt:    ts(s.UpdatedAt),
		Error:        s.Error,
		PhaseTimings: phaseTimings(s.PhaseStarts),
		Runner:       s.Owner,
		HeartbeatAt:  ts(s.HeartbeatAt),
		RunnerLost:   srv.svc.RunnerLost(s),
		EventsDone:   s.EventsDone,
		EventsTotal:  s.EventsTotal,
		Resumes:      clampInt32(s.Resumes),
	}
	if s.FinishedAt != nil {
		out.FinishedAt = ts(*s.FinishedAt)
	}
	if unit := s.WorkUnit(); unit != "" && s.Rate > 0 {
		out.RatePerSecond, out.RateUnit = s.Rate, string(unit)
	}
	if eta, ok := s.ETA(); ok {
		out.Eta = durationpb.New(eta)
		if at, ok := s.EstimatedCompletion(); ok {
			out.EstimatedCompletion = ts(at)
		}
	}
	return out
}

// phaseTimings orders the phases by when they began (by phase order on equal times, which
// a coarse clock can produce) and gives each the time until the next began.
func phaseTimings(starts map[readmodel.Phase]time.Time) []*projectionv1.PhaseTiming {
	type entry struct {
		phase projectionv1.RebuildPhase
		at    time.Time
	}
	list := make([]entry, 0, len(starts))
	for p, at := range starts {
		list = append(list, entry{phaseToProto[p], at})
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].at.Equal(list[j].at) {
			return list[i].at.Before(list[j].at)
		}
		return list[i].phase < list[j].phase
	})
	out := make([]*projectionv1.PhaseTiming, len(list))
	for i, e := range list {
		out[i] = &projectionv1.PhaseTiming{Phase: e.phase, StartedAt: ts(e.at)}
		if i+1 < len(list) {
			out[i].Duration = durationpb.New(list[i+1].at.Sub(e.at))
		}
	}
	return out
}

// progressToProto repeats the record's figures in the shape a progress bar needs. Rate and ETA
// come from the record (the runner measures the rate), not from the watcher's clock or
// history, so every watcher, on any replica, shows the same figures.
func (srv *Server) progressToProto(s readmodel.Snapshot) *projectionv1.RebuildProgress {
	r := srv.rebuildToProto(s)
	p := &projectionv1.RebuildProgress{Rebuild: r, Phase: r.Phase, DocsDone: s.DocsDone, DocsTotal: s.DocsTotal,
		EventsDone: s.EventsDone, EventsTotal: s.EventsTotal, Eta: r.Eta, EstimatedCompletion: r.EstimatedCompletion}
	switch readmodel.Unit(r.GetRateUnit()) {
	case readmodel.UnitDocuments:
		p.RateDocsPerSecond = r.GetRatePerSecond()
	case readmodel.UnitEvents:
		p.RateEventsPerSecond = r.GetRatePerSecond()
	}
	return p
}

func indexToProto(ix rebuild.IndexInfo) *projectionv1.Index {
	return &projectionv1.Index{
		Name:           ix.Name,
		MappingVersion: clampInt32(ix.MappingVersion),
		LiveDocs:       ix.Live,
		Tombstones:     ix.Tombstones,
		Created:        ts(ix.Created),
		Aliased:        ix.Aliased,
	}
}

func clampInt32(n int) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	if n < math.MinInt32 {
		return math.MinInt32
	}
	return int32(n)
}
