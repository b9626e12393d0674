package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// GetStatus is one look at the pipeline's health (outbox backlog, relay positions,
// projector lag, alias and mapping, counts, DLQ depth, the last rebuild, long transactions,
// the clusters), judged against thresholds.
type GetStatus struct {
	// Thresholds are the limits of the health rules.
	Thresholds Thresholds
}

// GetStatusHandler answers GetStatus.
type GetStatusHandler decorator.Handler[GetStatus, Status]

type getStatusHandler struct {
	cfg  Config
	deps Deps
}

// NewGetStatusHandler returns the decorated handler over deps' Database, Events, ReadModel,
// Rebuilds and DeadLetters (required) and Replication, Search and Progress (optional).
func NewGetStatusHandler(cfg Config, deps Deps) (GetStatusHandler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Database == nil || deps.Events == nil || deps.ReadModel == nil || deps.Rebuilds == nil || deps.DeadLetters == nil {
		return nil, errors.New("ops status: nil dependency")
	}
	if deps.Progress == nil {
		deps.Progress = NewCommitProgress(cfg.Now)
	}
	return decorator.Apply[GetStatus, Status](getStatusHandler{cfg: cfg, deps: deps}, deps.Log, deps.Metrics), nil
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

// Handle reads every source concurrently, each bounded by Config.SourceTimeout, and judges
// the result against the thresholds. It fails only for invalid thresholds or a cancelled
// ctx; a source that cannot be read is reported in its section and as a problem.
func (s getStatusHandler) Handle(ctx context.Context, q GetStatus) (Status, error) {
	th := q.Thresholds
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

func (s getStatusHandler) readModel(ctx context.Context) ReadModelSection {
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
