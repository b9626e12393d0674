package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// ErrInvalid marks a request the use cases refuse (a negative threshold, say).
var ErrInvalid = errors.New("invalid operations request")

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

// Database is what Status reads from the system of record.
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

// EventStats is what Status and the metrics sampler read from Kafka.
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

// DLQCounts is the dead-letter topic in numbers.
type DLQCounts struct {
	// Depth is the number of retained messages, handled or not.
	Depth int64
	// Handled counts retained messages an operator replayed or resolved.
	Handled int64
	// Unhandled counts retained messages nobody has dealt with yet: the health signal.
	Unhandled int64
}

// CountDeadLetters measures the dead-letter topic: its depth from Kafka, and how much of it
// is still unhandled according to the audit log. It is the one definition of an unhandled
// dead letter, for the status and the metrics alike.
func CountDeadLetters(ctx context.Context, events EventStats, ledger DLQLedger, topic string) (DLQCounts, error) {
	offsets, err := events.TopicOffsets(ctx, topic)
	if err != nil {
		return DLQCounts{}, err
	}
	c := DLQCounts{Depth: offsets.Depth()}
	if c.Depth == 0 {
		return c, nil
	}
	if c.Handled, err = ledger.HandledDLQMessages(ctx, topic, offsets); err != nil {
		return DLQCounts{Depth: c.Depth}, fmt.Errorf("audit log: %w", err)
	}
	c.Handled = min(c.Handled, c.Depth)
	c.Unhandled = c.Depth - c.Handled
	return c, nil
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

// Severity says whether a problem makes the service unhealthy.
type Severity int

// Severities, in increasing order.
const (
	// SeverityWarning needs attention but does not make the service unhealthy.
	SeverityWarning Severity = iota + 1
	// SeverityError makes the service unhealthy.
	SeverityError
)

// String returns "warning" or "error".
func (s Severity) String() string {
	switch s {
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Checks: stable names of the health rules, which alerts and scripts match.
const (
	// CheckOutboxAge: the oldest unrelayed event is older than the limit.
	CheckOutboxAge = "outbox_age"
	// CheckProjectorLag: the projector's group is further behind than the limit.
	CheckProjectorLag = "projector_lag"
	// CheckProjectorNoOffsets: the group committed nothing although the topic has records.
	CheckProjectorNoOffsets = "projector_no_offsets"
	// CheckProjectorNoMembers: no projector is in the group (warning).
	CheckProjectorNoMembers = "projector_no_members"
	// CheckProjectorStalled: a partition's committed offset has not moved for longer than
	// the limit while records wait behind it.
	CheckProjectorStalled = "projector_partition_stalled"
	// CheckAliasMissing: the alias does not exist; searches fail.
	CheckAliasMissing = "alias_missing"
	// CheckAliasForeign: the alias points at an index that is not one of its versioned
	// indices (warning).
	CheckAliasForeign = "alias_foreign_index"
	// CheckAliasBehind: the alias points at an index that misses events of the event log
	// (a rollback's or rebuild's catch-up after the switch has not finished), so searches
	// may serve stale or deleted products.
	CheckAliasBehind = "alias_index_behind"
	// CheckMappingOutdated: the live index's mapping is older than the code's; rebuild.
	CheckMappingOutdated = "mapping_outdated"
	// CheckMappingAhead: the live index's mapping is newer than the code's (an older binary
	// runs; warning).
	CheckMappingAhead = "mapping_ahead"
	// CheckCountDrift: live documents and live products differ by more than allowed.
	CheckCountDrift = "count_drift"
	// CheckDLQ: the dead-letter topic holds messages nobody has replayed or resolved.
	CheckDLQ = "dlq_unhandled"
	// CheckLongTransaction: a database transaction is open for longer than the limit.
	CheckLongTransaction = "long_transaction"
	// CheckRelayHeldBack: a transaction holding a transaction id (in the catalog's database,
	// or a prepared one) is older than the outbox age limit, so every event committed since
	// it began waits for it: the relay's latency budget is already spent.
	CheckRelayHeldBack = "relay_held_back"
	// CheckRebuildFailed: the last rebuild failed (warning).
	CheckRebuildFailed = "rebuild_failed"
	// CheckUnavailable: a source could not be read, so its health is unknown.
	CheckUnavailable = "unavailable"
)

// Problem is one finding of Status.
type Problem struct {
	// Severity says whether it makes the service unhealthy.
	Severity Severity
	// Check is the rule's stable name (Check* constants).
	Check string
	// Message says what is wrong and what to do, in one line.
	Message string
}

// Thresholds are the limits of the health rules.
type Thresholds struct {
	// MaxOutboxAge is the oldest an unrelayed event may be.
	MaxOutboxAge time.Duration
	// MaxLag is the projector group's largest allowed total lag.
	MaxLag int64
	// MaxCountDriftRatio and MaxCountDriftDocs bound the difference between live documents
	// and live products: the larger of MaxCountDriftRatio * live products and
	// MaxCountDriftDocs. Live writes make exact equality flaky.
	MaxCountDriftRatio float64
	// MaxCountDriftDocs is the absolute floor of the allowed count drift.
	MaxCountDriftDocs int64
	// MaxTxAge is the longest a read-only database transaction may stay open (it holds back
	// vacuum). A transaction that holds back the relay is judged by MaxOutboxAge instead,
	// the relay's latency budget.
	MaxTxAge time.Duration
	// MaxStall is the longest a partition's committed offset may stand still while records
	// wait behind it.
	MaxStall time.Duration
}

// Defaults of Thresholds.
const (
	DefaultMaxOutboxAge       = 60 * time.Second
	DefaultMaxLag             = 10_000
	DefaultMaxCountDriftRatio = 0.001
	DefaultMaxCountDriftDocs  = 10
	DefaultMaxTxAge           = 5 * time.Minute
	// DefaultMaxStall is well above what a healthy partition goes without a commit: the
	// projector commits every 200 ms, a failover takes under 10 s, and transient retries
	// back off to at most 5 s.
	DefaultMaxStall = 30 * time.Second
)

// DefaultThresholds returns the default limits.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxOutboxAge: DefaultMaxOutboxAge, MaxLag: DefaultMaxLag, MaxCountDriftRatio: DefaultMaxCountDriftRatio,
		MaxCountDriftDocs: DefaultMaxCountDriftDocs, MaxTxAge: DefaultMaxTxAge, MaxStall: DefaultMaxStall}
}

// Validate reports every negative limit.
func (t Thresholds) Validate() error {
	var errs []error
	if t.MaxOutboxAge < 0 {
		errs = append(errs, fmt.Errorf("max outbox age %s is negative", t.MaxOutboxAge))
	}
	if t.MaxLag < 0 {
		errs = append(errs, fmt.Errorf("max lag %d is negative", t.MaxLag))
	}
	if t.MaxCountDriftRatio < 0 || math.IsNaN(t.MaxCountDriftRatio) || math.IsInf(t.MaxCountDriftRatio, 0) {
		errs = append(errs, fmt.Errorf("max count drift ratio %v is not a non-negative number", t.MaxCountDriftRatio))
	}
	if t.MaxCountDriftDocs < 0 {
		errs = append(errs, fmt.Errorf("max count drift %d is negative", t.MaxCountDriftDocs))
	}
	if t.MaxTxAge < 0 {
		errs = append(errs, fmt.Errorf("max transaction age %s is negative", t.MaxTxAge))
	}
	if t.MaxStall < 0 {
		errs = append(errs, fmt.Errorf("max stall %s is negative", t.MaxStall))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// AllowedDrift is the largest allowed difference between live documents and liveProducts.
func (t Thresholds) AllowedDrift(liveProducts int64) int64 {
	return max(int64(math.Floor(t.MaxCountDriftRatio*float64(liveProducts))), t.MaxCountDriftDocs)
}

// OutboxSection is the outbox part of a Status.
type OutboxSection struct {
	OutboxStats
	// Err is why the outbox could not be read; the stats are zero then.
	Err error
}

// ProjectorSection is the projector's consumer group on the events topic.
type ProjectorSection struct {
	GroupLag
	// Err is why the lag could not be measured.
	Err error
}

// ReadModelSection is where the alias points and what that index holds.
type ReadModelSection struct {
	// Alias is the read model's alias.
	Alias string
	// AliasExists is false when the alias is missing (searches fail).
	AliasExists bool
	// Index is the index the alias points at.
	Index string
	// IndexKnown is false when Index is not one of the alias's versioned indices, so its
	// mapping version and counts are unknown.
	IndexKnown bool
	// IndexMappingVersion is the mapping version of Index.
	IndexMappingVersion int
	// CodeMappingVersion is the mapping version of the running code.
	CodeMappingVersion int
	// LiveDocuments and Tombstones count Index's documents.
	LiveDocuments int64
	// Tombstones counts Index's documents of deleted products.
	Tombstones int64
	// Indices counts the alias's versioned indices (rollback targets included).
	Indices int
	// Behind is true when Index misses events of the event log.
	Behind bool
	// CompleteBefore is where Index stands when it is behind: it holds every event before
	// these offsets (partition -> offset).
	CompleteBefore map[int32]int64
	// BehindEvents counts the events from CompleteBefore to the end of the log when Index is
	// behind; -1 when the log's end could not be read.
	BehindEvents int64
	// Err is why the read model could not be read.
	Err error
}

// ProductsSection counts the products of the system of record.
type ProductsSection struct {
	ProductCounts
	// Err is why they could not be counted.
	Err error
}

// CountComparison compares live documents with live products.
type CountComparison struct {
	// Compared is false when either count is unknown.
	Compared bool
	// Drift is |live documents - live products|.
	Drift int64
	// Allowed is the largest drift the thresholds allow.
	Allowed int64
}

// DLQSection is the dead-letter topic: how much it holds and how much of it is unhandled.
type DLQSection struct {
	// Topic is the dead-letter topic.
	Topic string
	DLQCounts
	// Err is why the topic or the audit log could not be read.
	Err error
}

// RebuildSection is the newest rebuild.
type RebuildSection struct {
	// Last is the newest rebuild's record, nil when none ever ran.
	Last *readmodel.Snapshot
	// Err is why the record could not be read.
	Err error
}

// TransactionsSection lists long transactions.
type TransactionsSection struct {
	// Long lists transactions older than MaxTxAge and those holding the relay back for
	// longer than MaxOutboxAge, oldest first.
	Long []LongTransaction
	// Err is why they could not be listed.
	Err error
}

// Status is one look at the pipeline, judged against thresholds. A source that cannot be
// read does not fail the whole status: its section carries the error and a problem says so.
type Status struct {
	// CheckedAt is when the status was taken.
	CheckedAt time.Time
	// Thresholds are the limits it was judged against.
	Thresholds Thresholds
	// Healthy is true when no problem has SeverityError.
	Healthy bool
	// Problems lists the findings, errors first.
	Problems []Problem
	// Outbox is the backlog the relay has still to forward.
	Outbox OutboxSection
	// Projector is the projector group's lag on the events topic.
	Projector ProjectorSection
	// ReadModel is where the alias points and what that index holds.
	ReadModel ReadModelSection
	// Products counts the system of record's products.
	Products ProductsSection
	// Counts compares live documents with live products.
	Counts CountComparison
	// DLQ is the dead-letter topic: depth and unhandled messages.
	DLQ DLQSection
	// Rebuild is the newest rebuild.
	Rebuild RebuildSection
	// Transactions lists long database transactions.
	Transactions TransactionsSection
	// Kafka is the replication of the events and dead-letter topics.
	Kafka KafkaSection
	// Search is the search cluster's health.
	Search SearchSection
}

// Config configures the operations use cases.
type Config struct {
	// Alias is the read model's alias (SEARCH_ALIAS), for display.
	Alias string
	// EventsTopic is the product events topic the projector consumes.
	EventsTopic string
	// DLQTopic is the dead-letter topic.
	DLQTopic string
	// ProjectorGroup is the projector's consumer group.
	ProjectorGroup string
	// SourceTimeout bounds the reading of each source of a Status.
	SourceTimeout time.Duration
	// VerifyPageSize is the page size of Verify's merge of products with documents.
	VerifyPageSize int
	// VerifyMaxPending bounds the differences Verify holds for their re-check; when it is
	// reached, the scan waits for them to settle and re-checks them before it goes on, so
	// memory stays bounded however many documents differ.
	VerifyMaxPending int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultSourceTimeout    = 10 * time.Second
	DefaultVerifyPageSize   = 10_000
	DefaultVerifyMaxPending = 50_000
)

func (c *Config) setDefaults() {
	if c.SourceTimeout == 0 {
		c.SourceTimeout = DefaultSourceTimeout
	}
	if c.VerifyPageSize == 0 {
		c.VerifyPageSize = DefaultVerifyPageSize
	}
	if c.VerifyMaxPending == 0 {
		c.VerifyMaxPending = DefaultVerifyMaxPending
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"alias": c.Alias, "events topic": c.EventsTopic, "DLQ topic": c.DLQTopic, "projector group": c.ProjectorGroup} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	if c.SourceTimeout <= 0 || c.VerifyPageSize < 1 || c.VerifyMaxPending < 1 {
		errs = append(errs, errors.New("source timeout, verify page size and verify max pending must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	return nil
}

// Deps are the ports of the operations use cases; all are required unless marked optional.
type Deps struct {
	// Database reads the outbox, transactions and product counts.
	Database Database
	// Products pages through the products for Verify.
	Products Products
	// Events reads consumer-group lag and topic depths.
	Events EventStats
	// ReadModel reads the alias, its indices and their documents.
	ReadModel ReadModel
	// Rebuilds lists rebuild records.
	Rebuilds RebuildHistory
	// DeadLetters tells which dead letters were replayed or resolved.
	DeadLetters DLQLedger
	// Replication reads the replication of the topics; nil leaves it out of the status.
	Replication Replication
	// Search reads the search cluster's health; nil (the embedded engine) leaves it out.
	Search SearchCluster
	// Progress remembers when each partition's committed offset last moved; the metrics
	// sampler should feed the same one, so a stall is known before anyone asks. Nil gives
	// the service one of its own, fed only by Status.
	Progress *CommitProgress
	// Log receives Verify's summary lines; nil discards them.
	Log *slog.Logger
}

// Service answers Status and Verify.
type Service struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	verifying atomic.Bool
}

// NewService returns the operations use cases over their ports.
func NewService(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Database == nil || deps.Products == nil || deps.Events == nil || deps.ReadModel == nil || deps.Rebuilds == nil || deps.DeadLetters == nil {
		return nil, errors.New("ops: nil dependency")
	}
	if deps.Progress == nil {
		deps.Progress = NewCommitProgress(cfg.Now)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, deps: deps, log: log}, nil
}

// Status reads every source concurrently, each bounded by Config.SourceTimeout, and judges
// the result against th. It fails only for invalid thresholds or a cancelled ctx; a source
// that cannot be read is reported in its section and as a problem.
func (s *Service) Status(ctx context.Context, th Thresholds) (Status, error) {
	if err := th.Validate(); err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	st := Status{CheckedAt: s.cfg.Now().UTC(), Thresholds: th}
	var wg sync.WaitGroup
	source := func(read func(ctx context.Context)) {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, s.cfg.SourceTimeout)
			defer cancel()
			read(sctx)
		})
	}
	source(func(ctx context.Context) {
		st.Outbox.OutboxStats, st.Outbox.Err = s.deps.Database.OutboxStats(ctx)
	})
	source(func(ctx context.Context) {
		// Younger transactions are listed too when they hold the outbox back longer than
		// its limit: they name the cause of an outbox_age problem.
		st.Transactions.Long, st.Transactions.Err = s.deps.Database.LongTransactions(ctx, min(th.MaxTxAge, th.MaxOutboxAge))
	})
	source(func(ctx context.Context) {
		st.Products.ProductCounts, st.Products.Err = s.deps.Database.ProductCounts(ctx)
	})
	source(func(ctx context.Context) {
		st.Projector.GroupLag, st.Projector.Err = s.deps.Events.GroupLag(ctx, s.cfg.ProjectorGroup, s.cfg.EventsTopic)
		if st.Projector.Err == nil {
			st.Projector.GroupLag = s.deps.Progress.Observe(st.Projector.GroupLag)
		}
		st.Projector.Group, st.Projector.Topic = s.cfg.ProjectorGroup, s.cfg.EventsTopic
	})
	source(func(ctx context.Context) {
		st.DLQ.Topic = s.cfg.DLQTopic
		st.DLQ.DLQCounts, st.DLQ.Err = CountDeadLetters(ctx, s.deps.Events, s.deps.DeadLetters, s.cfg.DLQTopic)
	})
	source(func(ctx context.Context) { st.ReadModel = s.readModel(ctx) })
	source(func(ctx context.Context) { st.Kafka = s.readKafka(ctx) })
	source(func(ctx context.Context) { st.Search = s.readSearch(ctx) })
	source(func(ctx context.Context) {
		list, err := s.deps.Rebuilds.List(ctx, 1)
		if err != nil {
			st.Rebuild.Err = err
			return
		}
		if len(list) > 0 {
			snap := list[0].Snapshot()
			st.Rebuild.Last = &snap
		}
	})
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	st.Transactions.Long = slices.DeleteFunc(st.Transactions.Long, func(tx LongTransaction) bool {
		return tx.Age < th.MaxTxAge && !tx.HoldsBackOutbox
	})
	evaluate(&st)
	return st, nil
}

func (s *Service) readModel(ctx context.Context) ReadModelSection {
	rm := ReadModelSection{Alias: s.cfg.Alias, CodeMappingVersion: s.deps.ReadModel.MappingVersion()}
	index, err := s.deps.ReadModel.AliasTarget(ctx)
	switch {
	case errors.Is(err, rebuild.ErrNoAlias):
	case err != nil:
		rm.Err = err
		return rm
	default:
		rm.AliasExists, rm.Index = true, index
	}
	list, err := s.deps.ReadModel.ListIndices(ctx)
	if err != nil {
		rm.Err = err
		return rm
	}
	rm.Indices = len(list)
	for _, ix := range list {
		if rm.AliasExists && ix.Name == rm.Index {
			rm.IndexKnown = true
			rm.IndexMappingVersion, rm.LiveDocuments, rm.Tombstones = ix.MappingVersion, ix.Live, ix.Tombstones
		}
	}
	if rm.AliasExists {
		pos, behind, err := s.deps.Rebuilds.IndexPosition(ctx, rm.Index)
		if err != nil {
			rm.Err = err
			return rm
		}
		rm.Behind, rm.CompleteBefore = behind, pos
	}
	return rm
}

// evaluate applies the health rules to st, filling Counts, Problems and Healthy.
func evaluate(st *Status) {
	th := st.Thresholds
	add := func(sev Severity, check, format string, args ...any) {
		st.Problems = append(st.Problems, Problem{Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	unavailable := func(what string, err error) {
		add(SeverityError, CheckUnavailable, "%s: cannot be read, so its health is unknown: %v", what, err)
	}

	if o := st.Outbox; o.Err != nil {
		unavailable("outbox", o.Err)
	} else if o.Backlog > 0 && o.OldestAge > th.MaxOutboxAge {
		cause := "; is a relay running ('catalog relay' or 'catalog serve')?"
		if o.HeldBack > 0 && o.HeldBackAge > th.MaxOutboxAge {
			// Something older is open; if no listed transaction is, this role cannot see it.
			cause = fmt.Sprintf("; %d of them wait behind open transaction id %s, which this database role cannot see: "+
				"grant it pg_read_all_stats to name it, or look it up as a superuser in pg_stat_activity (backend_xid) or pg_prepared_xacts",
				o.HeldBack, orUnknown(o.OldestRunningTransactionID))
		}
		for _, tx := range st.Transactions.Long {
			if tx.HoldsBackOutbox && tx.Age >= o.OldestAge {
				who := fmt.Sprintf("the open transaction of pid %d", tx.PID)
				if tx.PreparedGID != "" {
					who = fmt.Sprintf("prepared transaction %q", tx.PreparedGID)
				}
				cause = fmt.Sprintf("; held back by %s (open for %s): the relay cannot pass it", who, round(tx.Age))
				break
			}
		}
		add(SeverityError, CheckOutboxAge, "outbox: %d events not relayed, the oldest waiting for %s (limit %s)%s",
			o.Backlog, round(o.OldestAge), round(th.MaxOutboxAge), cause)
	}

	if p := st.Projector; p.Err != nil {
		unavailable("projector lag of group "+p.Group, p.Err)
	} else {
		switch {
		case !p.Committed && p.Records > 0:
			add(SeverityError, CheckProjectorNoOffsets, "projector: group %s has committed no offsets on %s, which holds %d records: the projector never ran or cannot commit",
				p.Group, p.Topic, p.Records)
		case p.Lag > th.MaxLag:
			add(SeverityError, CheckProjectorLag, "projector: group %s is %d events behind on %s (limit %d)", p.Group, p.Lag, p.Topic, th.MaxLag)
		}
		var stalled []string
		for _, pl := range p.Partitions {
			if pl.StalledFor > th.MaxStall {
				committed := "none"
				if pl.Committed >= 0 {
					committed = strconv.FormatInt(pl.Committed, 10)
				}
				stalled = append(stalled, fmt.Sprintf("partition %d for %s (committed %s, end %d, %d waiting)",
					pl.Partition, round(pl.StalledFor), committed, pl.End, pl.Lag))
			}
		}
		if len(stalled) > 0 {
			add(SeverityError, CheckProjectorStalled, "projector: group %s has not moved its committed offset on %s %s (limit %s) while events wait: "+
				"a projector is stuck on a message (its log says why: search unreachable, a dead letter that cannot be published) or the partition has no live owner",
				p.Group, p.Topic, strings.Join(stalled, "; "), round(th.MaxStall))
		}
		if p.Members == 0 {
			add(SeverityWarning, CheckProjectorNoMembers, "projector: no consumer is in group %s (state %s); events are not being projected", p.Group, orUnknown(p.State))
		}
	}

	rm := st.ReadModel
	switch {
	case rm.Err != nil:
		unavailable("read model", rm.Err)
	case !rm.AliasExists:
		add(SeverityError, CheckAliasMissing, "read model: alias %s does not exist, so searches fail; run 'catalog rebuild'", rm.Alias)
	case !rm.IndexKnown:
		add(SeverityWarning, CheckAliasForeign, "read model: alias %s points at %s, which is not one of its versioned indices; its mapping and counts are unknown", rm.Alias, rm.Index)
	case rm.IndexMappingVersion < rm.CodeMappingVersion:
		add(SeverityError, CheckMappingOutdated, "read model: index %s has mapping v%d but the code has v%d; run 'catalog rebuild'", rm.Index, rm.IndexMappingVersion, rm.CodeMappingVersion)
	case rm.IndexMappingVersion > rm.CodeMappingVersion:
		add(SeverityWarning, CheckMappingAhead, "read model: index %s has mapping v%d, newer than the code's v%d (an older binary is running?)", rm.Index, rm.IndexMappingVersion, rm.CodeMappingVersion)
	}

	if rm.Err == nil && rm.Behind {
		missing := ""
		st.ReadModel.BehindEvents = -1
		if n, ok := eventsAfter(rm.CompleteBefore, st.Projector); ok {
			missing = fmt.Sprintf(" (%d events)", n)
			st.ReadModel.BehindEvents = n
		}
		add(SeverityError, CheckAliasBehind, "read model: alias %s points at %s, which misses the events after offsets %s%s: searches may return stale or deleted products. "+
			"A rollback or rebuild did not finish catching it up; recovery on a serving replica retries it within seconds ('catalog rebuild status' and the logs say why it cannot); if it stays behind, run 'catalog rebuild'",
			rm.Alias, rm.Index, rebuild.Offsets(rm.CompleteBefore), missing)
	}

	if st.Products.Err != nil {
		unavailable("product counts", st.Products.Err)
	} else if rm.Err == nil && rm.AliasExists && rm.IndexKnown {
		drift := rm.LiveDocuments - st.Products.Live
		if drift < 0 {
			drift = -drift
		}
		st.Counts = CountComparison{Compared: true, Drift: drift, Allowed: th.AllowedDrift(st.Products.Live)}
		if drift > st.Counts.Allowed {
			add(SeverityError, CheckCountDrift, "read model: %s holds %d live documents but the database %d live products (drift %d, allowed %d); 'catalog verify' lists the differences",
				rm.Index, rm.LiveDocuments, st.Products.Live, drift, st.Counts.Allowed)
		}
	}

	if d := st.DLQ; d.Err != nil {
		unavailable("dead-letter topic "+d.Topic, d.Err)
	} else if d.Unhandled > 0 {
		add(SeverityError, CheckDLQ, "dlq: %d of the %d messages in %s are unhandled: replay them once the cause is fixed, or resolve those to drop ('catalog dlq list', 'catalog dlq replay', 'catalog dlq resolve'); nothing is replayed automatically",
			d.Unhandled, d.Depth, d.Topic)
	}

	if st.Transactions.Err != nil {
		unavailable("database transactions", st.Transactions.Err)
	}
	for _, tx := range st.Transactions.Long {
		switch {
		case tx.HoldsBackOutbox && tx.Age >= th.MaxOutboxAge:
			add(SeverityError, CheckRelayHeldBack, "database: %s has been open for %s (outbox age limit %s) and holds a transaction id, "+
				"so the relay cannot pass it: every event committed since it began waits, whichever database of the cluster it runs in; %s",
				describeTx(tx), round(tx.Age), round(th.MaxOutboxAge), endTx(tx))
		case tx.Age >= th.MaxTxAge:
			effect := "it holds back vacuum"
			if tx.HoldsBackOutbox {
				effect = "it holds a transaction id, so the relay cannot pass it: events committed since it began wait"
			}
			add(SeverityError, CheckLongTransaction, "database: %s open for %s (limit %s); %s; %s",
				describeTx(tx), round(tx.Age), round(th.MaxTxAge), effect, endTx(tx))
		}
	}

	evaluateClusters(st, add, unavailable)

	if r := st.Rebuild; r.Err != nil {
		add(SeverityWarning, CheckUnavailable, "rebuilds: the last rebuild cannot be read: %v", r.Err)
	} else if r.Last != nil && r.Last.Phase == readmodel.PhaseFailed {
		add(SeverityWarning, CheckRebuildFailed, "rebuild: the last rebuild %s failed: %s", r.Last.ID, r.Last.Error)
	}

	slices.SortStableFunc(st.Problems, func(a, b Problem) int { return cmp.Compare(b.Severity, a.Severity) })
	st.Healthy = !slices.ContainsFunc(st.Problems, func(p Problem) bool { return p.Severity >= SeverityError })
}

// eventsAfter counts the events of the projector's partitions from pos to their end; ok is
// false when the partitions could not be read.
func eventsAfter(pos map[int32]int64, p ProjectorSection) (n int64, ok bool) {
	if p.Err != nil || len(p.Partitions) == 0 {
		return 0, false
	}
	for _, pl := range p.Partitions {
		n += max(pl.End-max(pos[pl.Partition], pl.Start), 0)
	}
	return n, true
}

// describeTx names a transaction for a message: who, where, since when; never its SQL.
func describeTx(tx LongTransaction) string {
	started := "started " + tx.Started.UTC().Format(time.RFC3339)
	if tx.PreparedGID != "" {
		return fmt.Sprintf("prepared transaction %q (%s@%s, prepared %s)", tx.PreparedGID, orUnknown(tx.User), orUnknown(tx.Database),
			tx.Started.UTC().Format(time.RFC3339))
	}
	last := ""
	if !tx.QueryStarted.IsZero() {
		last = ", last statement " + tx.QueryStarted.UTC().Format(time.RFC3339)
	}
	app := ""
	if tx.Application != "" {
		app = fmt.Sprintf(", application %q", tx.Application)
	}
	return fmt.Sprintf("transaction of pid %d (%s@%s%s, %s, %s%s)", tx.PID, orUnknown(tx.User), orUnknown(tx.Database), app,
		orUnknown(tx.State), started, last)
}

// endTx says how an operator ends tx.
func endTx(tx LongTransaction) string {
	if tx.PreparedGID != "" {
		return fmt.Sprintf("finish it with COMMIT PREPARED or ROLLBACK PREPARED '%s' once its coordinator is known to be gone", tx.PreparedGID)
	}
	return fmt.Sprintf("end it (SELECT pg_terminate_backend(%d)) or fix its client", tx.PID)
}

// round shortens a duration for a message: whole seconds from a second on, milliseconds below.
func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
