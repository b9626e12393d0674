package ops

import (
	"time"
)

// OutboxLane is one outbox lane as the relay sees it.
type OutboxLane struct {
	// Lane is the lane number.
	Lane int
	// Backlog counts committed events of the lane after the relay's position: not yet relayed.
	Backlog int64
	// OldestAge is how long the oldest of them has waited (by the database's clock); zero
	// when the backlog is empty.
	OldestAge time.Duration
	// OldestCreatedAt is when the oldest of them was written; zero when the backlog is empty.
	OldestCreatedAt time.Time
	// RelayStarted is false until a relay has polled the lane once (it has no position yet).
	RelayStarted bool
	// RelayedTransactionID and RelayedOffset are the relay's position: the last relayed
	// event's writing transaction and outbox offset.
	RelayedTransactionID string
	// RelayedOffset is the outbox offset of the last relayed event of the lane.
	RelayedOffset int64
	// RelayedAt is when the relay last moved the position.
	RelayedAt time.Time
}

// OutboxStats is the outbox's backlog, lane by lane.
type OutboxStats struct {
	// Lanes lists the configured lanes and any other lane that holds events, by number.
	Lanes []OutboxLane
	// Backlog is the sum of the lanes' backlogs.
	Backlog int64
	// OldestAge is the largest OldestAge of the lanes.
	OldestAge time.Duration
	// OldestCreatedAt is the earliest OldestCreatedAt of the lanes.
	OldestCreatedAt time.Time
	// TableBytes is the outbox table's size on disk, indexes and TOAST included.
	TableBytes int64
	// HeldBack counts the events of the backlog that are committed but that the relay
	// cannot pass yet, because a transaction that began before them is still open.
	HeldBack int64
	// HeldBackAge is how long the oldest of them has waited; zero when none does.
	HeldBackAge time.Duration
	// OldestRunningTransactionID is the oldest transaction id still running in the cluster
	// (pg_snapshot_xmin), the one the relay cannot pass.
	OldestRunningTransactionID string
	// BlockingTransactionAge is the age of the oldest open transaction that holds a
	// transaction id anywhere in the cluster (every database, prepared transactions
	// included): the relay cannot pass it, so events committed after it began wait. Zero when
	// none is open; a few milliseconds under normal writes.
	BlockingTransactionAge time.Duration
}

// LongTransaction is an open database transaction older than a threshold. Its statement
// text is deliberately not part of it: the transaction may belong to any application using
// the database, and its SQL can carry secrets (a password in ALTER ROLE, an
// encryption key, personal data in literals) that must not reach status output, tickets or
// chat. The pid is enough to look it up in pg_stat_activity with one's own privileges.
type LongTransaction struct {
	// PID is the backend's process id (pg_terminate_backend takes it); 0 for a prepared
	// transaction, which belongs to no session.
	PID int32
	// Database, User and Application say whose it is.
	Database string
	// User is the role of the session.
	User string
	// Application is the session's application_name.
	Application string
	// BackendType is the kind of backend ("client backend", "autovacuum worker", ...; "prepared
	// transaction" for one that is prepared).
	BackendType string
	// PreparedGID is the global id of a prepared transaction (COMMIT PREPARED or ROLLBACK
	// PREPARED take it); empty otherwise.
	PreparedGID string
	// State is the backend state, such as "idle in transaction".
	State string
	// Started is when the transaction began (when it was prepared, for a prepared one).
	Started time.Time
	// QueryStarted is when its current or last statement began; zero when unknown.
	QueryStarted time.Time
	// Age is how long it has been open.
	Age time.Duration
	// HoldsBackOutbox is true when the transaction holds a transaction id (it has written,
	// or it is prepared) and could write to the catalog's outbox: the relay forwards only
	// events of transactions older than every such transaction, so events committed after
	// it began wait until it ends.
	HoldsBackOutbox bool
}

// ProductCounts counts the products of the system of record.
type ProductCounts struct {
	// Live counts products that are not deleted.
	Live int64
	// Total counts every product row, tombstones included.
	Total int64
}

// PartitionLag is a consumer group's position on one partition.
type PartitionLag struct {
	// Partition is the partition number.
	Partition int32
	// Start is the log start offset (the oldest retained record).
	Start int64
	// End is the high watermark (the offset the next record gets).
	End int64
	// Committed is the group's committed offset (the next record it reads), -1 when it has
	// committed none.
	Committed int64
	// Lag is the number of records the group has still to read.
	Lag int64
	// StalledFor is how long the committed offset has not moved while records waited
	// behind it, as far as this process has watched (see CommitProgress); zero when it
	// moved at the last look or nothing waits.
	StalledFor time.Duration
}

// GroupLag is a consumer group's lag on one topic.
type GroupLag struct {
	// Group and Topic name what was measured.
	Group string
	// Topic is the consumed topic.
	Topic string
	// State is the group's state as the coordinator reports it (Stable, Empty, Dead, ...).
	State string
	// Members counts the group's members: 0 means no projector is consuming.
	Members int
	// Partitions lists every partition of the topic, by number.
	Partitions []PartitionLag
	// Lag is the sum of the partitions' lags.
	Lag int64
	// Records is the number of retained records (end - start, summed).
	Records int64
	// Committed is true when the group has committed an offset on any partition.
	Committed bool
}

// PartitionOffsets is the retained range of one partition: offsets Start (the oldest
// retained record) to End (the next record's offset), End excluded.
type PartitionOffsets struct {
	// Partition is the partition number.
	Partition int32
	// Start is the log start offset.
	Start int64
	// End is the high watermark.
	End int64
}

// TopicOffsets are the retained ranges of a topic's partitions.
type TopicOffsets []PartitionOffsets

// Depth is the number of retained records (end - start, summed over the partitions).
// Transaction markers take offsets too, so a transactional topic reads slightly deeper.
func (t TopicOffsets) Depth() int64 {
	var n int64
	for _, p := range t {
		n += max(p.End-p.Start, 0)
	}
	return n
}
