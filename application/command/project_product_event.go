package command

import (
	"context"
	"errors"
	"fmt"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/domain/product"
)

// ErrProjectionRejected marks a document the read model refuses for good (a mapping
// rejection, for instance). Retrying cannot help; the event belongs in the dead-letter queue.
var ErrProjectionRejected = errors.New("read model rejected the document")

// ProductProjection is the search read model's write port. Apply stores the product state as
// the document of its id unless the document already has a newer version; an older or equal
// version is success with nothing to do, which makes replays and reordering harmless.
// Tombstones (deleted snapshots) are stored like any other state.
type ProductProjection interface {
	Apply(ctx context.Context, s product.Snapshot) error
}

// ProjectProductEvent applies one product event to the search read model.
type ProjectProductEvent struct {
	// Event is the decoded event.
	Event product.Event
}

// ProjectProductEventHandler projects product events.
type ProjectProductEventHandler decorator.Handler[ProjectProductEvent, struct{}]

type projectProductEventHandler struct {
	projection ProductProjection
}

// NewProjectProductEventHandler returns the decorated handler.
func NewProjectProductEventHandler(projection ProductProjection, deps decorator.Deps) (ProjectProductEventHandler, error) {
	if projection == nil {
		return nil, fmt.Errorf("project product event: nil projection")
	}
	return decorator.Apply[ProjectProductEvent, struct{}](projectProductEventHandler{projection: projection}, deps.Log, deps.Metrics), nil
}

func (h projectProductEventHandler) Handle(ctx context.Context, cmd ProjectProductEvent) (struct{}, error) {
	e := cmd.Event
	if e.State.ID != e.AggregateID || e.State.Version != e.AggregateVersion {
		return struct{}{}, fmt.Errorf("project %s v%d: state is %s v%d: %w", e.AggregateID, e.AggregateVersion,
			e.State.ID, e.State.Version, ErrProjectionRejected)
	}
	if err := h.projection.Apply(ctx, e.State); err != nil {
		return struct{}{}, fmt.Errorf("project %s v%d: %w", e.AggregateID, e.AggregateVersion, err)
	}
	return struct{}{}, nil
}
