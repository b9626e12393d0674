package rebuild_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	app "github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

// memStore is an in-memory Store: records by id and a process-wide lock.
type memStore struct {
	mu      sync.Mutex
	locked  bool
	records map[string]rebuild.Snapshot
	order   []string
	cancel  map[string]bool
}

func newMemStore() *memStore {
	return &memStore{records: map[string]rebuild.Snapshot{}, cancel: map[string]bool{}}
}

func (s *memStore) TryLock(context.Context) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked {
		return nil, rebuild.ErrAlreadyRunning
	}
	s.locked = true
	var once sync.Once
	return func() { once.Do(func() { s.mu.Lock(); s.locked = false; s.mu.Unlock() }) }, nil
}

func (s *memStore) Create(_ context.Context, r *rebuild.Rebuild) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[r.ID()] = r.Snapshot()
	s.order = append(s.order, r.ID())
	return nil
}

func (s *memStore) Save(_ context.Context, r *rebuild.Rebuild) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[r.ID()] = r.Snapshot()
	return nil
}

func (s *memStore) Get(_ context.Context, id string) (*rebuild.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.records[id]
	if !ok {
		return nil, rebuild.ErrNotFound
	}
	return rebuild.UnmarshalRebuildFromDatabase(snap)
}

func (s *memStore) List(_ context.Context, limit int) ([]*rebuild.Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*rebuild.Rebuild
	for i := len(s.order) - 1; i >= 0 && len(out) < limit; i-- {
		r, _ := rebuild.UnmarshalRebuildFromDatabase(s.records[s.order[i]])
		out = append(out, r)
	}
	return out, nil
}

func (s *memStore) RequestCancel(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[id]; !ok {
		return rebuild.ErrNotFound
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
	recorded map[string]map[string]app.DocVersion
	log      []product.Event
	indices  map[string]map[string]product.Snapshot
	created  []string
	alias    string
	// gate, when set, is called during fill so a test can act mid-rebuild.
	gate func()
	seq  int
}

func newWorld() *world {
	return &world{products: map[string]product.Snapshot{}, recorded: map[string]map[string]app.DocVersion{},
		indices: map[string]map[string]product.Snapshot{}}
}

// write commits a product change: the row and its event.
func (w *world) write(e product.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.products[e.AggregateID.String()] = e.State
	w.log = append(w.log, e)
}

// ProductSource

func (w *world) snapshotLocked(id string) {
	rec := map[string]app.DocVersion{}
	for k, s := range w.products {
		rec[k] = app.DocVersion{ID: k, Version: s.Version, Deleted: s.Deleted()}
	}
	w.recorded[id] = rec
}

func (w *world) Stream(ctx context.Context, id string, batch int, fn func([]product.Snapshot) error) (int64, error) {
	w.mu.Lock()
	w.snapshotLocked(id)
	var all []product.Snapshot
	for _, s := range w.products {
		all = append(all, s)
	}
	w.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	for i := 0; i < len(all); i += batch {
		if w.gate != nil {
			w.gate()
		}
		end := min(i+batch, len(all))
		if err := fn(all[i:end]); err != nil {
			return 0, err
		}
	}
	return int64(len(all)), nil
}

func (w *world) Record(_ context.Context, id string) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.snapshotLocked(id)
	return int64(len(w.recorded[id])), nil
}

func (w *world) Recorded(_ context.Context, id, after string, limit int) ([]app.DocVersion, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return page(w.recorded[id], after, limit), nil
}

func page(m map[string]app.DocVersion, after string, limit int) []app.DocVersion {
	var out []app.DocVersion
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

func (w *world) Forget(_ context.Context, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.recorded, id)
	return nil
}

func (w *world) AwaitRelayed(context.Context, time.Duration) error { return nil }

func (w *world) Count(context.Context) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(len(w.products)), nil
}

// EventLog: one partition; offsets are positions in w.log.

type eventLog struct{ w *world }

func (l eventLog) EndOffsets(context.Context) (app.Offsets, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return app.Offsets{0: int64(len(l.w.log))}, nil
}

func (l eventLog) Read(_ context.Context, from, to app.Offsets, fn func([]product.Event) error) (int64, int64, error) {
	l.w.mu.Lock()
	start := from[0]
	evs := append([]product.Event(nil), l.w.log[start:to[0]]...)
	l.w.mu.Unlock()
	if len(evs) == 0 {
		return 0, 0, nil
	}
	return int64(len(evs)), 0, fn(evs)
}

// Target

type target struct{ w *world }

func (t target) MappingVersion() int { return 1 }

func (t target) AliasTarget(context.Context) (string, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if t.w.alias == "" {
		return "", app.ErrNoAlias
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

func (t target) Documents(_ context.Context, index, after string, limit int) ([]app.DocVersion, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	m := map[string]app.DocVersion{}
	for k, d := range t.w.indices[index] {
		m[k] = app.DocVersion{ID: k, Version: d.Version, Deleted: d.Deleted()}
	}
	return page(m, after, limit), nil
}

func (t target) SwitchAlias(_ context.Context, from, to string) error {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if t.w.alias != from {
		return rebuild.ErrAliasMoved
	}
	t.w.alias = to
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

func (t target) ListIndices(context.Context) ([]app.IndexInfo, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	var out []app.IndexInfo
	for i := len(t.w.created) - 1; i >= 0; i-- {
		name := t.w.created[i]
		if _, ok := t.w.indices[name]; !ok {
			continue
		}
		out = append(out, app.IndexInfo{Name: name, MappingVersion: 1, Aliased: name == t.w.alias,
			Created: time.Unix(int64(i), 0)})
	}
	return out, nil
}
