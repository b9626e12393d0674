package ops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
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

// fakeDLQ is a DLQ topic in memory.
type fakeDLQ struct {
	topic string
	msgs  []ops.DLQMessage
	scans int
}

func (f *fakeDLQ) DLQTopic() string { return f.topic }

func (f *fakeDLQ) ScanDLQ(ctx context.Context, _ time.Time, fn func(ops.DLQMessage) error) error {
	f.scans++
	for _, m := range f.msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return fmt.Errorf("fake scan: %w", err)
		}
	}
	return nil
}

func (f *fakeDLQ) GetDLQ(_ context.Context, ref ops.DLQRef) (ops.DLQMessage, error) {
	for _, m := range f.msgs {
		if m.Ref == ref {
			return m, nil
		}
	}
	return ops.DLQMessage{}, fmt.Errorf("fake: %s: %w", ref, ops.ErrDLQMessageNotFound)
}

// fakeReplayPublisher records what was replayed; fail makes the n-th publish (1-based) fail.
type fakeReplayPublisher struct {
	mu        sync.Mutex
	published []ops.ReplayMessage
	calls     int
	failAt    int
	failWith  error
}

func (p *fakeReplayPublisher) TargetTopic() string { return "product.events" }

func (p *fakeReplayPublisher) PublishReplay(_ context.Context, m ops.ReplayMessage) (ops.ReplayTarget, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failAt == p.calls {
		if p.failWith != nil {
			return ops.ReplayTarget{}, p.failWith
		}
		return ops.ReplayTarget{}, errors.New("broker unreachable")
	}
	p.published = append(p.published, m)
	return ops.ReplayTarget{Partition: 1, Offset: int64(100 + len(p.published))}, nil
}

// fakeReplayAudit is the audit log in memory.
type fakeReplayAudit struct {
	entries   []ops.ReplayAuditEntry
	failBegin bool
}

func (a *fakeReplayAudit) BeginReplay(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	if a.failBegin {
		return 0, errors.New("database down")
	}
	e.ID = int64(len(a.entries) + 1)
	e.ReplayedAt = time.Now()
	a.entries = append(a.entries, e)
	return e.ID, nil
}

func (a *fakeReplayAudit) FinishReplay(_ context.Context, id int64, result string, target *ops.ReplayTarget, errText string) error {
	e := &a.entries[id-1]
	e.Result, e.Target, e.Error, e.FinishedAt = result, target, errText, time.Now()
	return nil
}

func (a *fakeReplayAudit) RecordResolution(_ context.Context, e ops.ReplayAuditEntry) (int64, error) {
	if a.failBegin {
		return 0, errors.New("database down")
	}
	e.ID = int64(len(a.entries) + 1)
	e.ReplayedAt, e.FinishedAt = time.Now(), time.Now()
	a.entries = append(a.entries, e)
	return e.ID, nil
}

func (a *fakeReplayAudit) HandledDLQRefs(_ context.Context, topic string, refs []ops.DLQRef) (map[ops.DLQRef]ops.ReplayAuditEntry, error) {
	out := map[ops.DLQRef]ops.ReplayAuditEntry{}
	for _, e := range a.entries {
		if e.DLQTopic == topic && e.Result == ops.ReplayResultOK && slices.Contains(refs, e.Ref) {
			out[e.Ref] = e
		}
	}
	return out, nil
}

func (a *fakeReplayAudit) ListAudit(_ context.Context, f ops.AuditFilter) ([]ops.ReplayAuditEntry, error) {
	var out []ops.ReplayAuditEntry
	for i := len(a.entries) - 1; i >= 0 && len(out) < f.Limit; i-- {
		e := a.entries[i]
		if e.DLQTopic == f.DLQTopic && (f.Action == "" || e.Action == f.Action) && (f.AggregateID == "" || e.AggregateID == f.AggregateID) {
			out = append(out, e)
		}
	}
	return out, nil
}

var dlqBase = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	dlqAggA = "0195a0b0-0000-7000-8000-00000000000a"
	dlqAggB = "0195a0b0-0000-7000-8000-00000000000b"
)

// dlqMsg builds a DLQ message as the projector writes it: the event's headers, the DLQ
// headers and Watermill's poison headers.
func dlqMsg(p int32, o int64, class, agg, eventID string, failed time.Time) ops.DLQMessage {
	payload := fmt.Sprintf(`{"event_id":%q,"event_type":"product.created","schema_version":1,"aggregate_id":%q,"aggregate_version":1,"data":{}}`, eventID, agg)
	headers := []ops.DLQHeader{
		{Key: "_watermill_message_uuid", Value: eventID},
		{Key: "event_id", Value: eventID},
		{Key: "event_type", Value: "product.created"},
		{Key: "aggregate_id", Value: agg},
		{Key: "aggregate_version", Value: "1"},
		{Key: "traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{Key: ops.DLQHeaderErrorClass, Value: class},
		{Key: ops.DLQHeaderReason, Value: class + ": something is wrong with " + eventID},
		{Key: ops.DLQHeaderHandler, Value: "product_search_projector"},
		{Key: ops.DLQHeaderOriginalTopic, Value: "product.events"},
		{Key: ops.DLQHeaderOriginalPartition, Value: "4"},
		{Key: ops.DLQHeaderOriginalOffset, Value: "77"},
		{Key: ops.DLQHeaderAttempts, Value: "1"},
		{Key: ops.DLQHeaderFailedAt, Value: failed.Format(time.RFC3339Nano)},
		{Key: ops.DLQHeaderReasonPoisoned, Value: "x"},
		{Key: ops.DLQHeaderTopicPoisoned, Value: "product.events"},
		{Key: ops.DLQHeaderHandlerPoisoned, Value: "product_search_projector"},
		{Key: ops.DLQHeaderSubscriberPoisoned, Value: "kafka"},
	}
	return ops.NewDLQMessage(ops.DLQRef{Partition: p, Offset: o}, agg, failed.Add(time.Millisecond), headers, []byte(payload))
}

func sampleDLQ() *fakeDLQ {
	return &fakeDLQ{topic: "dlq.product.events", msgs: []ops.DLQMessage{
		dlqMsg(0, 0, "rejected", dlqAggA, "e-1", dlqBase),
		dlqMsg(1, 0, "undecodable", dlqAggB, "e-2", dlqBase.Add(time.Hour)),
		dlqMsg(0, 1, "rejected", dlqAggB, "e-3", dlqBase.Add(2*time.Hour)),
		dlqMsg(2, 0, "validation", dlqAggA, "e-4", dlqBase.Add(3*time.Hour)),
		dlqMsg(1, 1, "rejected", dlqAggA, "e-5", dlqBase.Add(30*time.Minute)),
	}}
}

func dlqRefsOf(ms []ops.DLQMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Ref.String()
	}
	return out
}

func newReplayer(t *testing.T) (*ops.DLQService, *fakeDLQ, *fakeReplayPublisher, *fakeReplayAudit) {
	t.Helper()
	dlq, pub, audit := sampleDLQ(), &fakeReplayPublisher{}, &fakeReplayAudit{}
	svc, err := ops.NewDLQService(dlq, pub, audit, decorator.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return svc, dlq, pub, audit
}

// truncatedMsg is a dead letter whose payload the DLQ publisher cut.
func truncatedMsg(p int32, o int64) ops.DLQMessage {
	return ops.NewDLQMessage(ops.DLQRef{Partition: p, Offset: o}, dlqAggB, dlqBase, []ops.DLQHeader{
		{Key: ops.DLQHeaderErrorClass, Value: "undecodable"},
		{Key: ops.DLQHeaderPayloadTruncated, Value: "true"},
		{Key: ops.DLQHeaderPayloadBytes, Value: "2000000"},
		{Key: ops.DLQHeaderPayloadCutBytes, Value: "1999990"},
		{Key: ops.DLQHeaderTruncationReason, Value: "too large"},
	}, []byte("xxxxxxxxxx"))
}
