package rebuild_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// memStore is an in-memory Store: records by id, a process-wide lock and index positions.
type memStore struct {
	mu        sync.Mutex
	lock      *memLock
	records   map[string]readmodel.Snapshot
	order     []string
	cancel    map[string]bool
	positions map[string]rebuild.Offsets
}

func newMemStore() *memStore {
	return &memStore{records: map[string]readmodel.Snapshot{}, cancel: map[string]bool{}, positions: map[string]rebuild.Offsets{}}
}

// memLock is the lock's "session": lose ends it the way a dropped connection does.
type memLock struct {
	s        *memStore
	lost     bool
	released bool
}

func (l *memLock) Check(context.Context) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.lost {
		return fmt.Errorf("%w: the session is gone", readmodel.ErrLockLost)
	}
	return nil
}

func (l *memLock) Release() {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.released = true
	if l.s.lock == l {
		l.s.lock = nil
	}
}

// loseLock drops the current holder's session: the lock is free, the holder does not know.
func (s *memStore) loseLock() *memLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lock
	if l != nil {
		l.lost = true
		s.lock = nil
	}
	return l
}

func (s *memStore) TryLock(context.Context) (rebuild.Lock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock != nil {
		return nil, readmodel.ErrAlreadyRunning
	}
	s.lock = &memLock{s: s}
	return s.lock, nil
}

func (s *memStore) Create(_ context.Context, r *readmodel.Rebuild) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[r.ID()] = r.Snapshot()
	s.order = append(s.order, r.ID())
	return nil
}

func (s *memStore) Save(_ context.Context, r *readmodel.Rebuild) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := r.Snapshot()
	if cur, ok := s.records[r.ID()]; ok {
		if cur.Owner != snap.Owner {
			return readmodel.ErrNotOwner
		}
		if cur.HeartbeatAt.After(snap.HeartbeatAt) {
			snap.HeartbeatAt = cur.HeartbeatAt
		}
	} else {
		s.order = append(s.order, r.ID())
	}
	s.records[r.ID()] = snap
	return nil
}

func (s *memStore) Heartbeat(_ context.Context, id, owner string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.records[id]
	if !ok || cur.Owner != owner {
		return readmodel.ErrNotOwner
	}
	cur.HeartbeatAt = at
	s.records[id] = cur
	return nil
}

func (s *memStore) HandOff(_ context.Context, id, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.records[id]
	if !ok || cur.Owner != owner || cur.Phase.Terminal() {
		return readmodel.ErrNotOwner
	}
	cur.Owner, cur.HeartbeatAt = "", time.Unix(0, 0).UTC()
	s.records[id] = cur
	return nil
}

func (s *memStore) TakeOver(_ context.Context, id, owner string, now, expiredBefore time.Time) (*readmodel.Rebuild, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.records[id]
	if !ok || cur.Phase.Terminal() || !cur.HeartbeatAt.Before(expiredBefore) {
		return nil, false, nil
	}
	cur.Owner, cur.HeartbeatAt = owner, now
	s.records[id] = cur
	r, err := readmodel.UnmarshalRebuildFromDatabase(cur)
	return r, err == nil, err
}

func (s *memStore) IndexPosition(_ context.Context, index string) (rebuild.Offsets, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.positions[index]
	return p, ok, nil
}

func (s *memStore) SetIndexPosition(_ context.Context, index string, pos rebuild.Offsets) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.positions[index] = pos
	return nil
}

func (s *memStore) ClearIndexPosition(_ context.Context, index string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.positions, index)
	return nil
}

func (s *memStore) Get(_ context.Context, id string) (*readmodel.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.records[id]
	if !ok {
		return nil, readmodel.ErrNotFound
	}
	return readmodel.UnmarshalRebuildFromDatabase(snap)
}

func (s *memStore) List(_ context.Context, limit int) ([]*readmodel.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*readmodel.Rebuild
	for i := len(s.order) - 1; i >= 0 && len(out) < limit; i-- {
		r, _ := readmodel.UnmarshalRebuildFromDatabase(s.records[s.order[i]])
		out = append(out, r)
	}
	return out, nil
}

func (s *memStore) RequestCancel(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[id]; !ok {
		return readmodel.ErrNotFound
	}
	s.cancel[id] = true
	return nil
}

func (s *memStore) CancelRequested(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancel[id], nil
}

// world is the database, the event log and the search engine of one test.
type world struct {
	mu       sync.Mutex
	products map[string]product.Snapshot
	log      []product.Event
	indices  map[string]map[string]product.Snapshot
	created  []string
	alias    string
	// gate, when set, is called before every chunk of a database fill is read, so a test can
	// act mid-rebuild; chunks records the afterID of every chunk read.
	gate   func()
	chunks []string
	seq    int
	// committed is the live projector's committed offset (one partition); logStart the
	// oldest retained offset.
	committed int64
	logStart  int64
	// onRead, when set, runs at the start of every Read (outside the lock); readErr, when
	// set, fails every Read (Kafka unreachable).
	onRead  func()
	readErr error
	// afterSwitch, when set, runs after a successful alias switch (outside the lock).
	afterSwitch func()
	// beforeWrite, when set, runs before every write to an index (outside the lock).
	beforeWrite func(index string)
	// reads records where every Read of the log started (nil: the beginning).
	reads []rebuild.Offsets
	// mapping overrides an index's mapping version (1 otherwise).
	mapping map[string]int
}

func newWorld() *world {
	return &world{products: map[string]product.Snapshot{}, indices: map[string]map[string]product.Snapshot{}}
}

// write commits a product change: the row and its event.
func (w *world) write(e product.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.products[e.AggregateID.String()] = e.State
	w.log = append(w.log, e)
}

// project is the live projector: it applies every event after its committed offset to the
// index the alias points at, through the alias, and commits.
func (w *world) project() {
	w.mu.Lock()
	defer w.mu.Unlock()
	ix := w.indices[w.alias]
	for _, e := range w.log[w.committed:] {
		if cur, ok := ix[e.State.ID.String()]; !ok || cur.Version < e.State.Version {
			ix[e.State.ID.String()] = e.State
		}
	}
	w.committed = int64(len(w.log))
}

// ProductSource

// Chunk reads a chunk of the products as they are now; gate runs first.
func (w *world) Chunk(_ context.Context, after string, limit int) ([]product.Snapshot, error) {
	if w.gate != nil {
		w.gate()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = append(w.chunks, after)
	var out []product.Snapshot
	for _, s := range w.products {
		if s.ID.String() > after {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (w *world) Versions(_ context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]rebuild.DocVersion{}
	for k, s := range w.products {
		m[k] = rebuild.DocVersion{ID: k, Version: s.Version, Deleted: s.Deleted()}
	}
	return page(m, after, limit), nil
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

func (w *world) Known(_ context.Context, ids []string) (map[string]bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, id := range ids {
		_, out[id] = w.products[id]
	}
	return out, nil
}

func (w *world) AwaitRelayed(context.Context, time.Duration) error { return nil }

func (w *world) Count(context.Context) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(len(w.products)), nil
}

// EventLog: one partition; offsets are positions in w.log.

type eventLog struct{ w *world }

func (l eventLog) EndOffsets(context.Context) (rebuild.Offsets, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return rebuild.Offsets{0: int64(len(l.w.log))}, nil
}

func (l eventLog) StartOffsets(context.Context) (rebuild.Offsets, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return rebuild.Offsets{0: l.w.logStart}, nil
}

func (l eventLog) Committed(_ context.Context, group string) (rebuild.Offsets, error) {
	if group == "" {
		return nil, fmt.Errorf("no group")
	}
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return rebuild.Offsets{0: l.w.committed}, nil
}

// Read hands the events over in batches of readBatch, each with the position after it.
func (l eventLog) Read(ctx context.Context, from, to rebuild.Offsets, fn func([]product.Event, rebuild.Offsets) error) (int64, int64, error) {
	if l.w.onRead != nil {
		l.w.onRead()
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	l.w.mu.Lock()
	if l.w.readErr != nil {
		defer l.w.mu.Unlock()
		return 0, 0, l.w.readErr
	}
	l.w.reads = append(l.w.reads, from)
	start, ok := from[0]
	if !ok {
		start = l.w.logStart
	}
	if start < l.w.logStart && start < to[0] {
		l.w.mu.Unlock()
		return 0, 0, fmt.Errorf("%w: from %d, the log starts at %d", rebuild.ErrNotRetained, start, l.w.logStart)
	}
	evs := append([]product.Event(nil), l.w.log[start:to[0]]...)
	l.w.mu.Unlock()
	var read int64
	for i := 0; i < len(evs); i += readBatch {
		batch := evs[i:min(i+readBatch, len(evs))]
		if err := fn(batch, rebuild.Offsets{0: start + int64(i+len(batch))}); err != nil {
			return read, 0, err
		}
		read += int64(len(batch))
	}
	return read, 0, nil
}

// readBatch is the fake log's batch size.
const readBatch = 10

// Target

type target struct{ w *world }

func (t target) MappingVersion() int { return 1 }

func (t target) AliasTarget(context.Context) (string, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if t.w.alias == "" {
		return "", rebuild.ErrNoAlias
	}
	return t.w.alias, nil
}

func (t target) CreateIndex(context.Context) (string, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	t.w.seq++
	name := fmt.Sprintf("product_search_v1_20260101_%06d", t.w.seq)
	t.w.indices[name] = map[string]product.Snapshot{}
	t.w.created = append(t.w.created, name)
	return name, nil
}

func (t target) RestoreSettings(context.Context, string) error { return nil }
func (t target) Refresh(context.Context, string) error         { return nil }

func (t target) Write(_ context.Context, index string, docs []product.Snapshot) error {
	if t.w.beforeWrite != nil {
		t.w.beforeWrite(index)
	}
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	ix, ok := t.w.indices[index]
	if !ok {
		return fmt.Errorf("no index %s", index)
	}
	for _, d := range docs {
		if cur, ok := ix[d.ID.String()]; ok && cur.Version >= d.Version {
			continue
		}
		ix[d.ID.String()] = d
	}
	return nil
}

func (t target) Documents(_ context.Context, index, after string, limit int) ([]rebuild.DocVersion, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	m := map[string]rebuild.DocVersion{}
	for k, d := range t.w.indices[index] {
		m[k] = rebuild.DocVersion{ID: k, Version: d.Version, Deleted: d.Deleted()}
	}
	return page(m, after, limit), nil
}

func (t target) SwitchAlias(_ context.Context, from, to string) error {
	t.w.mu.Lock()
	if t.w.alias != from {
		t.w.mu.Unlock()
		return readmodel.ErrAliasMoved
	}
	t.w.alias = to
	after := t.w.afterSwitch
	t.w.mu.Unlock()
	if after != nil {
		after()
	}
	return nil
}

func (t target) DeleteIndex(_ context.Context, index string) error {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if index == t.w.alias {
		return fmt.Errorf("refusing to delete the aliased index %s", index)
	}
	delete(t.w.indices, index)
	return nil
}

func (t target) ListIndices(context.Context) ([]rebuild.IndexInfo, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	var out []rebuild.IndexInfo
	for i := len(t.w.created) - 1; i >= 0; i-- {
		name := t.w.created[i]
		if _, ok := t.w.indices[name]; !ok {
			continue
		}
		mv := 1
		if v, ok := t.w.mapping[name]; ok {
			mv = v
		}
		out = append(out, rebuild.IndexInfo{Name: name, MappingVersion: mv, Aliased: name == t.w.alias,
			Created: time.Unix(int64(i), 0)})
	}
	return out, nil
}
