// Package rebuild is the use case that makes a projection rebuild a safe, observable,
// one-command operation (ARCHITECTURE §3): a new index with the current mapping, filled from a
// consistent source, caught up with live events, validated against the system of record and
// made live by one atomic alias switch; one rebuild at a time across every replica.
//
// The ports it drives are declared here, next to their only user; the adapters (PostgreSQL,
// Kafka, Elasticsearch, Bleve) implement them.
package rebuild

import (
	"context"
	"errors"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

// Store keeps rebuild records in the system of record and owns the single-flight lock.
type Store interface {
	// TryLock takes the cluster-wide rebuild lock without waiting, or fails with
	// rebuild.ErrAlreadyRunning. The lock belongs to a database session: release frees it,
	// and so does the death of the process, so a crash never leaves it held.
	TryLock(ctx context.Context) (release func(), err error)
	// Create stores a new record.
	Create(ctx context.Context, r *rebuild.Rebuild) error
	// Save stores the record's current state.
	Save(ctx context.Context, r *rebuild.Rebuild) error
	// Get returns a record or rebuild.ErrNotFound.
	Get(ctx context.Context, id string) (*rebuild.Rebuild, error)
	// List returns the newest records first, at most limit.
	List(ctx context.Context, limit int) ([]*rebuild.Rebuild, error)
	// RequestCancel flags a running rebuild for cancellation, so the replica that runs it
	// stops it even when the request reached another replica.
	RequestCancel(ctx context.Context, id string) error
	// CancelRequested reports whether RequestCancel was called for id.
	CancelRequested(ctx context.Context, id string) (bool, error)
}

// DocVersion is the identity of a document or row for validation.
type DocVersion struct {
	// ID is the product id in canonical form.
	ID string
	// Version is the aggregate version.
	Version int64
	// Deleted is true for tombstones.
	Deleted bool
}

// ProductSource reads the system of record.
type ProductSource interface {
	// Stream reads every product, tombstones included, from one consistent (REPEATABLE READ)
	// snapshot, calling fn with batches of at most batchSize in id order. In the same snapshot
	// it records (id, version, deleted) of every product under rebuildID, for Validate. It
	// returns the number of products read.
	Stream(ctx context.Context, rebuildID string, batchSize int, fn func([]product.Snapshot) error) (int64, error)
	// Record records (id, version, deleted) of every product under rebuildID from one
	// consistent snapshot, without streaming the products (for Kafka-sourced rebuilds).
	Record(ctx context.Context, rebuildID string) (int64, error)
	// Recorded returns a page of the recorded rows with id > afterID in id order.
	Recorded(ctx context.Context, rebuildID, afterID string, limit int) ([]DocVersion, error)
	// Known returns which of ids exist as products now (live or tombstone).
	Known(ctx context.Context, ids []string) (map[string]bool, error)
	// Forget drops what Record/Stream recorded for rebuildID.
	Forget(ctx context.Context, rebuildID string) error
	// Count returns the number of products, tombstones included, for progress estimates.
	Count(ctx context.Context) (int64, error)
	// AwaitRelayed waits until every event committed before the call is in the event log
	// (the outbox relay forwarded it), or fails after timeout.
	AwaitRelayed(ctx context.Context, timeout time.Duration) error
}

// Offsets are Kafka positions by partition: the offset of the next record to read.
type Offsets map[int32]int64

// EventLog reads product events from the log without a consumer group, so a rebuild never
// disturbs the live projector's committed positions.
type EventLog interface {
	// EndOffsets returns the current end (high watermark) of every partition.
	EndOffsets(ctx context.Context) (Offsets, error)
	// Read reads every partition from from (inclusive; nil means the earliest retained
	// record) to to (exclusive), calling fn with batches of decoded events. Records that are
	// not product events are skipped and counted in skipped (the live projector dead-letters
	// them). It returns when every partition reached to.
	Read(ctx context.Context, from, to Offsets, fn func([]product.Event) error) (read, skipped int64, err error)
}

// IndexInfo describes one versioned index behind the alias.
type IndexInfo struct {
	// Name is the index name, {alias}_v{M}_{YYYYMMDD}_{HHMMSS}.
	Name string
	// MappingVersion is M.
	MappingVersion int
	// Created is the creation time encoded in the name.
	Created time.Time
	// Live and Tombstones count documents.
	Live, Tombstones int64
	// Aliased is true for the index the alias points at.
	Aliased bool
}

// ErrNoAlias is returned by Target.AliasTarget when the alias does not exist (the live index
// was deleted, say); a rebuild then creates the alias at the switch.
var ErrNoAlias = errors.New("alias does not exist")

// Target manages the read model's indices. The rebuild writes only to the index it created,
// by name; it never writes through the alias or to the live index.
type Target interface {
	// MappingVersion is the mapping version of indices created now.
	MappingVersion() int
	// AliasTarget returns the index the alias points at, or ErrNoAlias.
	AliasTarget(ctx context.Context) (string, error)
	// CreateIndex creates an index with the current mapping and bulk-load settings
	// (refresh off, no replicas) and returns its name.
	CreateIndex(ctx context.Context) (string, error)
	// RestoreSettings puts the normal refresh interval and replicas back on index.
	RestoreSettings(ctx context.Context, index string) error
	// Write stores the snapshots in index with their versions as external versions
	// (external_gte): older versions lose, equal ones are no-ops.
	Write(ctx context.Context, index string, docs []product.Snapshot) error
	// Refresh makes everything written to index searchable.
	Refresh(ctx context.Context, index string) error
	// Documents returns a page of index's documents with id > afterID in id order.
	Documents(ctx context.Context, index, afterID string, limit int) ([]DocVersion, error)
	// SwitchAlias moves the alias from one index to another in one atomic request, only if
	// it still points at from (rebuild.ErrAliasMoved otherwise); from == "" adds the alias
	// where none exists.
	SwitchAlias(ctx context.Context, from, to string) error
	// DeleteIndex deletes an index; it refuses the aliased one.
	DeleteIndex(ctx context.Context, index string) error
	// ListIndices lists the alias's indices, newest first.
	ListIndices(ctx context.Context) ([]IndexInfo, error)
}
