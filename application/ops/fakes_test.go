package ops_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// world is the database, Kafka and the read model of one test.
type world struct {
	mu sync.Mutex

	// system of record
	products  map[string]rebuild.DocVersion
	outbox    ops.OutboxStats
	outboxErr error
	txs       []ops.LongTransaction
	txErr     error
	countErr  error
	txAsked   time.Duration

	// Kafka
	lag        ops.GroupLag
	lagErr     error
	dlq        int64 // retained dead letters, all on partition 0
	dlqErr     error
	dlqHandled int64 // of them, replayed or resolved
	ledgerErr  error

	// read model
	docs       map[string]rebuild.DocVersion
	alias      string // "" means no alias
	indices    []rebuild.IndexInfo
	listErr    error
	code       int
	docCalls   int
	docsErr    error
	docsBlock  chan struct{} // when set, Documents waits for it (a slow verify)
	docsCalled chan struct{} // when set, closed on the first Documents call

	// rebuilds
	rebuilds   []*readmodel.Rebuild
	rebuildErr error
	// positions of indices that are behind the event log
	positions map[string]rebuild.Offsets

	// onRecheck runs at the first re-read of products by id: the moment after the settle
	// delay, when a test lets events in flight arrive.
	onRecheck    func(w *world)
	byIDCalls    int
	maxByIDBatch int
}

func newWorld() *world {
	return &world{products: map[string]rebuild.DocVersion{}, docs: map[string]rebuild.DocVersion{},
		alias: "ps_v1_20260101_000000", code: 1,
		indices: []rebuild.IndexInfo{{Name: "ps_v1_20260101_000000", MappingVersion: 1, Aliased: true}},
		lag:     ops.GroupLag{State: "Stable", Members: 1, Committed: true}}
}

func (w *world) product(id string, version int64, deleted bool) {
	w.products[id] = rebuild.DocVersion{ID: id, Version: version, Deleted: deleted}
}

func (w *world) doc(id string, version int64, deleted bool) {
	w.docs[id] = rebuild.DocVersion{ID: id, Version: version, Deleted: deleted}
}

func page(m map[string]rebuild.DocVersion, after string, limit int) []rebuild.DocVersion {
	var out []rebuild.DocVersion
	for _, v := range m {
		if v.ID > after {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// ops.Database

func (w *world) OutboxStats(context.Context) (ops.OutboxStats, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outbox, w.outboxErr
}

func (w *world) LongTransactions(_ context.Context, olderThan time.Duration) ([]ops.LongTransaction, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.txAsked = olderThan
	var out []ops.LongTransaction
	for _, tx := range w.txs {
		if tx.Age >= olderThan {
			out = append(out, tx)
		}
	}
	return out, w.txErr
}

func (w *world) ProductCounts(context.Context) (ops.ProductCounts, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var c ops.ProductCounts
	for _, p := range w.products {
		c.Total++
		if !p.Deleted {
			c.Live++
		}
	}
	return c, w.countErr
}

// ops.Products

func (w *world) ProductVersions(_ context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return page(w.products, after, limit), nil
}

func (w *world) ProductVersionsByID(_ context.Context, ids []string) ([]rebuild.DocVersion, error) {
	w.mu.Lock()
	if w.byIDCalls == 0 && w.onRecheck != nil {
		w.onRecheck(w)
	}
	w.byIDCalls++
	w.maxByIDBatch = max(w.maxByIDBatch, len(ids))
	defer w.mu.Unlock()
	var out []rebuild.DocVersion
	for _, id := range ids {
		if p, ok := w.products[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// ops.EventStats

func (w *world) GroupLag(_ context.Context, group, topic string) (ops.GroupLag, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lag, w.lagErr
}

func (w *world) TopicOffsets(context.Context, string) (ops.TopicOffsets, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return ops.TopicOffsets{{Partition: 0, Start: 5, End: 5 + w.dlq}, {Partition: 1}}, w.dlqErr
}

// ops.DLQLedger

func (w *world) HandledDLQMessages(context.Context, string, ops.TopicOffsets) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dlqHandled, w.ledgerErr
}

// ops.ReadModel

func (w *world) MappingVersion() int { return w.code }

func (w *world) AliasTarget(context.Context) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.alias == "" {
		return "", errors.Join(rebuild.ErrNoAlias, errors.New("fake: no alias"))
	}
	return w.alias, nil
}

func (w *world) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]rebuild.IndexInfo(nil), w.indices...)
	for i := range out {
		if out[i].Aliased {
			out[i].Live, out[i].Tombstones = 0, 0
			for _, d := range w.docs {
				if d.Deleted {
					out[i].Tombstones++
				} else {
					out[i].Live++
				}
			}
		}
	}
	return out, w.listErr
}

func (w *world) Documents(ctx context.Context, index, after string, limit int) ([]rebuild.DocVersion, error) {
	w.mu.Lock()
	if w.docsCalled != nil {
		close(w.docsCalled)
		w.docsCalled = nil
	}
	block := w.docsBlock
	w.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.docCalls++
	if w.docsErr != nil {
		return nil, w.docsErr
	}
	if index != w.alias {
		return nil, errors.New("fake: documents of an index the alias does not point at")
	}
	return page(w.docs, after, limit), nil
}

// ops.RebuildHistory

func (w *world) List(context.Context, int) ([]*readmodel.Rebuild, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rebuilds, w.rebuildErr
}

func (w *world) IndexPosition(_ context.Context, index string) (rebuild.Offsets, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pos, ok := w.positions[index]
	return pos, ok, nil
}

func (w *world) service(cfg ops.Config) *ops.Service {
	cfg.Alias, cfg.EventsTopic, cfg.DLQTopic, cfg.ProjectorGroup = "ps", "product.events", "dlq.product.events", "catalog-projector"
	s, err := ops.NewService(cfg, ops.Deps{Database: w, Products: w, Events: w, ReadModel: w, Rebuilds: w, DeadLetters: w})
	if err != nil {
		panic(err)
	}
	return s
}
