package ops

import (
	"context"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Database is what GetStatus reads from the system of record (VerifyReadModel reads its
// product count for progress).
type Database interface {
	// OutboxStats returns the backlog of every lane after the relay's positions.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// LongTransactions returns the transactions open for longer than olderThan that can
	// matter to this database, oldest first: those holding a transaction id anywhere in the
	// cluster, which hold the relay back, and read-only ones in this database, which hold
	// back its vacuum.
	LongTransactions(ctx context.Context, olderThan time.Duration) ([]LongTransaction, error)
	// ProductCounts counts live products and all product rows.
	ProductCounts(ctx context.Context) (ProductCounts, error)
}

// EventStats is what GetStatus and the metrics sampler read from Kafka.
type EventStats interface {
	// GroupLag measures group's lag on topic.
	GroupLag(ctx context.Context, group, topic string) (GroupLag, error)
	// TopicOffsets returns the retained range of every partition of topic.
	TopicOffsets(ctx context.Context, topic string) (TopicOffsets, error)
}

// DLQLedger knows which dead letters an operator has dealt with; the DLQ audit log in the
// system of record satisfies it.
type DLQLedger interface {
	// HandledDLQMessages counts the messages of topic within the retained ranges that were
	// replayed successfully or resolved, each message once.
	HandledDLQMessages(ctx context.Context, topic string, retained TopicOffsets) (int64, error)
}

// ReadModel is the part of a rebuild target (application/rebuild.Target) the operations
// need; every rebuild target satisfies it.
type ReadModel interface {
	// MappingVersion is the mapping version of the code.
	MappingVersion() int
	// AliasTarget returns the index the alias points at, or an error wrapping
	// rebuild.ErrNoAlias.
	AliasTarget(ctx context.Context) (string, error)
	// ListIndices lists the alias's indices with their mapping versions and counts.
	ListIndices(ctx context.Context) ([]rebuild.IndexInfo, error)
	// Documents returns a page of index's documents with id > afterID in id order.
	Documents(ctx context.Context, index, afterID string, limit int) ([]rebuild.DocVersion, error)
}

// RebuildHistory lists rebuild records and the positions of indices that are behind the
// event log; the rebuild store satisfies it.
type RebuildHistory interface {
	// List returns the newest records first, at most limit.
	List(ctx context.Context, limit int) ([]*readmodel.Rebuild, error)
	// IndexPosition returns index's recorded position when it is behind the event log: it
	// holds every event before these offsets. ok is false for an index that is complete.
	IndexPosition(ctx context.Context, index string) (pos rebuild.Offsets, ok bool, err error)
}

// Products is what VerifyReadModel reads from the system of record.
type Products interface {
	// ProductVersions returns (id, version, deleted) of the products with id > afterID ("" is
	// the beginning), tombstones included, in id order, at most limit.
	ProductVersions(ctx context.Context, afterID string, limit int) ([]rebuild.DocVersion, error)
	// ProductVersionsByID returns (id, version, deleted) of those of ids that name a product,
	// in any order; ids that name none are left out.
	ProductVersionsByID(ctx context.Context, ids []string) ([]rebuild.DocVersion, error)
}

// Replication reads the replication state of topics; the Kafka adapter's ops reader
// satisfies it.
type Replication interface {
	// TopicReplication returns the replication of every partition of topic.
	TopicReplication(ctx context.Context, topic string) (TopicReplication, int, error)
}

// SearchCluster reads the search cluster's health; the Elasticsearch adapter satisfies it.
// The embedded engine has no cluster and no health to report.
type SearchCluster interface {
	// ClusterHealth returns the cluster's health.
	ClusterHealth(ctx context.Context) (SearchHealth, error)
}

// DLQReader reads the DLQ topic. Reads are bounded: they end at the topic's end offsets
// captured when the call starts, so messages dead-lettered meanwhile (a replay failing again,
// say) are not seen by that call and a read never waits for new messages.
type DLQReader interface {
	// DLQTopic names the topic read.
	DLQTopic() string
	// ScanDLQ calls fn with every message of the topic, in offset order within a partition.
	// A non-zero since is a hint: messages written well before it may be skipped; the caller
	// still filters. An error from fn stops the scan and is returned wrapped.
	ScanDLQ(ctx context.Context, since time.Time, fn func(DLQMessage) error) error
	// GetDLQ returns one message, or an error wrapping ErrDLQMessageNotFound.
	GetDLQ(ctx context.Context, ref DLQRef) (DLQMessage, error)
}

// ReplayPublisher writes replayed events to the events topic.
type ReplayPublisher interface {
	// TargetTopic names the events topic.
	TargetTopic() string
	// PublishReplay writes msg and returns once the cluster acknowledged it (acks=all).
	PublishReplay(ctx context.Context, msg ReplayMessage) (ReplayTarget, error)
}

// ReplayAudit is the audit log of the DLQ, in the system of record: every replay and every
// resolution. A replay's entry is recorded before the publish and completed after it, so
// every publish attempt leaves a trace even if the process dies in between.
type ReplayAudit interface {
	// BeginReplay records a pending replay entry and returns its id.
	BeginReplay(ctx context.Context, e ReplayAuditEntry) (int64, error)
	// FinishReplay records the result of entry id: ReplayResultOK with target, or
	// ReplayResultError with errText.
	FinishReplay(ctx context.Context, id int64, result string, target *ReplayTarget, errText string) error
	// RecordResolution records a resolution (result ok) and returns its id.
	RecordResolution(ctx context.Context, e ReplayAuditEntry) (int64, error)
	// HandledDLQRefs returns, for those of refs that were handled before (replayed with
	// result ok, or resolved), the latest such entry.
	HandledDLQRefs(ctx context.Context, dlqTopic string, refs []DLQRef) (map[DLQRef]ReplayAuditEntry, error)
	// ListAudit returns the entries f selects, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]ReplayAuditEntry, error)
}
