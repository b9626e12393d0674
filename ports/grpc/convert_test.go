package grpcport_test

import (
	"strings"
	"testing"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	grpcport "github.com/marketplace/catalog/ports/grpc"
)

// Clients of the admin API decide whether a rebuild has ended through PhaseFromProto and
// readmodel.Phase.Terminal, so every phase on the wire must map to its domain phase.
func TestPhaseFromProtoMapsEveryWirePhaseToItsDomainPhase(t *testing.T) {
	terminal := map[projectionv1.RebuildPhase]bool{
		projectionv1.RebuildPhase_REBUILD_PHASE_SUCCEEDED: true,
		projectionv1.RebuildPhase_REBUILD_PHASE_FAILED:    true,
		projectionv1.RebuildPhase_REBUILD_PHASE_CANCELLED: true,
	}
	for v, name := range projectionv1.RebuildPhase_name {
		wire := projectionv1.RebuildPhase(v)
		got := grpcport.PhaseFromProto(wire)
		if wire == projectionv1.RebuildPhase_REBUILD_PHASE_UNSPECIFIED {
			if got != "" {
				t.Errorf("PhaseFromProto(%s) = %q, want no phase", name, got)
			}
			continue
		}
		if want := strings.ToLower(strings.TrimPrefix(name, "REBUILD_PHASE_")); string(got) != want || !got.Valid() {
			t.Errorf("PhaseFromProto(%s) = %q (valid %v), want %q", name, got, got.Valid(), want)
		}
		if got.Terminal() != terminal[wire] {
			t.Errorf("PhaseFromProto(%s).Terminal() = %v, want %v", name, got.Terminal(), terminal[wire])
		}
	}
	if got := grpcport.PhaseFromProto(projectionv1.RebuildPhase(999)); got != "" {
		t.Errorf("PhaseFromProto(999) = %q, want no phase", got)
	}
}
