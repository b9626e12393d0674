// Package rebuild is the use case that makes a projection rebuild a safe, observable,
// one-command operation (docs/ARCHITECTURE.md, "Rebuild"): a new index with the current mapping, filled from a
// consistent source, caught up with live events, validated against the system of record and
// made live by one atomic alias switch; one rebuild at a time across every replica.
//
// The ports it drives are declared here, next to their only user; the adapters (PostgreSQL,
// Kafka, Elasticsearch, Bleve) implement them.
package rebuild

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Lock is the cluster-wide single-flight lock, held by one operation (a rebuild, a rollback, a
// prune, a recovery) at a time.
type Lock interface {
	// Check reports whether the lock is still held: nil, or an error wrapping
	// readmodel.ErrLockLost when the session that held it is gone or no longer holds it.
	Check(ctx context.Context) error
	// Release frees the lock; it is safe to call more than once and after the lock was lost.
	Release()
}

// Store keeps rebuild records in the system of record, owns the single-flight lock and
// remembers where every index that stopped receiving live events stands in the event log.
type Store interface {
	// TryLock takes the cluster-wide rebuild lock without waiting, or fails with
	// readmodel.ErrAlreadyRunning. The lock belongs to a database session: Release frees it,
	// and so does the death of the process, so a crash never leaves it held.
	TryLock(ctx context.Context) (Lock, error)
	// Create stores a new record.
	Create(ctx context.Context, r *readmodel.Rebuild) error
	// Save stores the record's current state, only while r's owner still owns the stored
	// record (readmodel.ErrNotOwner otherwise: another runner took it over).
	Save(ctx context.Context, r *readmodel.Rebuild) error
	// Heartbeat records that owner, which runs rebuild id, is alive at at; it fails with
	// readmodel.ErrNotOwner when another runner owns the record now.
	Heartbeat(ctx context.Context, id, owner string, at time.Time) error
	// HandOff gives up owner's claim on the unfinished rebuild id without ending it: the
	// record keeps its state (and its index stays), and any replica's recovery takes it over
	// at once to resume it. readmodel.ErrNotOwner when owner does not own it.
	HandOff(ctx context.Context, id, owner string) error
	// TakeOver makes owner the runner of rebuild id, only if the record is unfinished and its
	// heartbeat is older than expiredBefore, and returns the record as taken over; ok is false
	// when the record finished or its runner beat in the meantime.
	TakeOver(ctx context.Context, id, owner string, now, expiredBefore time.Time) (r *readmodel.Rebuild, ok bool, err error)
	// Get returns a record or readmodel.ErrNotFound.
	Get(ctx context.Context, id string) (*readmodel.Rebuild, error)
	// List returns the newest records first, at most limit.
	List(ctx context.Context, limit int) ([]*readmodel.Rebuild, error)
	// RequestCancel flags a running rebuild for cancellation, so the replica that runs it
	// stops it even when the request reached another replica.
	RequestCancel(ctx context.Context, id string) error
	// CancelRequested reports whether RequestCancel was called for id.
	CancelRequested(ctx context.Context, id string) (bool, error)
	// IndexPosition returns the recorded position of index: it holds every event before
	// these offsets and may miss later ones. ok is false when nothing is recorded, which for
	// the live index means it is complete.
	IndexPosition(ctx context.Context, index string) (pos Offsets, ok bool, err error)
	// SetIndexPosition records (replaces) index's position.
	SetIndexPosition(ctx context.Context, index string, pos Offsets) error
	// ClearIndexPosition forgets index's position: it is live and complete, or deleted.
	ClearIndexPosition(ctx context.Context, index string) error
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

// ProductSource reads the system of record. Nothing of a rebuild holds a transaction longer
// than one chunk: every method is one short statement (or a few), however many products there
// are, so a fill of an hour holds back neither vacuum nor anything else.
type ProductSource interface {
	// Chunk returns the products (tombstones included) with id > afterID ("" starts at the
	// beginning) in ascending id order, at most limit, read in one statement: the state of
	// each as of that statement. A short chunk is the last one.
	Chunk(ctx context.Context, afterID string, limit int) ([]product.Snapshot, error)
	// Versions returns (id, version, deleted) of the products with id > afterID in ascending
	// id order, at most limit, read in one statement (a PageReader of the database for
	// Validate).
	Versions(ctx context.Context, afterID string, limit int) ([]DocVersion, error)
	// Known returns which of ids exist as products now (live or tombstone).
	Known(ctx context.Context, ids []string) (map[string]bool, error)
	// Count returns the number of products, tombstones included, for progress estimates.
	Count(ctx context.Context) (int64, error)
	// AwaitRelayed waits until every event committed before the call is in the event log
	// (the outbox relay forwarded it), or fails after timeout.
	AwaitRelayed(ctx context.Context, timeout time.Duration) error
}

// Offsets are Kafka positions by partition: the offset of the next record to read.
type Offsets map[int32]int64

// String writes the position as partition:offset pairs in partition order, as messages to
// operators show it: "0:1200 1:987".
func (o Offsets) String() string {
	parts := slices.Sorted(maps.Keys(o))
	if len(parts) == 0 {
		return "(none)"
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = strconv.Itoa(int(p)) + ":" + strconv.FormatInt(o[p], 10)
	}
	return strings.Join(out, " ")
}

// ErrNotRetained means part of a range to read has already been deleted from the event log
// (retention, DeleteRecords): what it held can no longer be applied.
var ErrNotRetained = errors.New("event log: records are no longer retained")

// EventLog reads product events from the log without a consumer group, so a rebuild never
// disturbs the live projector's committed positions.
type EventLog interface {
	// EndOffsets returns the current end (high watermark) of every partition.
	EndOffsets(ctx context.Context) (Offsets, error)
	// StartOffsets returns the oldest retained offset of every partition.
	StartOffsets(ctx context.Context) (Offsets, error)
	// Read reads every partition from from (inclusive; nil or a missing partition means the
	// earliest retained record) to to (exclusive), calling fn with batches of decoded events
	// and the position after each batch (every partition of to: the offset of its next record
	// not handed to fn yet), so a later Read from that position goes on exactly after the
	// batch. Records that are not product events are skipped and counted in skipped (the live
	// projector dead-letters them). It returns when every partition reached to. A from below
	// the log's start fails with an error wrapping ErrNotRetained.
	Read(ctx context.Context, from, to Offsets, fn func(events []product.Event, next Offsets) error) (read, skipped int64, err error)
	// Committed returns group's committed offsets on every partition (the next record the
	// group reads); a partition the group never committed has 0. Everything below them has
	// been applied by the group's consumers.
	Committed(ctx context.Context, group string) (Offsets, error)
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
	// it still points at from (readmodel.ErrAliasMoved otherwise); from == "" adds the alias
	// where none exists.
	SwitchAlias(ctx context.Context, from, to string) error
	// DeleteIndex deletes an index; it refuses the aliased one.
	DeleteIndex(ctx context.Context, index string) error
	// ListIndices lists the alias's indices, newest first.
	ListIndices(ctx context.Context) ([]IndexInfo, error)
}
