package product

import "time"

// EventType names a domain event on product.events.
type EventType string

// The product event types (docs/ARCHITECTURE.md, "Public contract").
const (
	EventCreated      EventType = "product.created"
	EventUpdated      EventType = "product.updated"
	EventPriceChanged EventType = "product.price_changed"
	EventStockChanged EventType = "product.stock_changed"
	EventDeleted      EventType = "product.deleted"
)

// EventTypes returns every event type, in the order of a product's life.
func EventTypes() []EventType {
	return []EventType{EventCreated, EventUpdated, EventPriceChanged, EventStockChanged, EventDeleted}
}

// Valid reports whether t is one of the known event types.
func (t EventType) Valid() bool {
	switch t {
	case EventCreated, EventUpdated, EventPriceChanged, EventStockChanged, EventDeleted:
		return true
	}
	return false
}

// Event is a domain event: one per aggregate version, carrying the full state after the change
// so that projections need no earlier event and never depend on order.
type Event struct {
	ID               ID
	Type             EventType
	AggregateID      ID
	AggregateVersion int64
	OccurredAt       time.Time
	State            Snapshot
}

// Snapshot is the full state of a product at one version.
type Snapshot struct {
	ID        ID
	Details   Details
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt *time.Time
}

// Deleted reports whether the snapshot is a tombstone.
func (s Snapshot) Deleted() bool { return s.DeletedAt != nil }
