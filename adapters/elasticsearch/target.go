package elasticsearch

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Bulk-load tuning of Target. A rebuild writes batches of about a thousand snapshots and waits
// for each; large requests keep the per-request overhead low, two workers keep two requests in
// flight without crowding out the live projector and searches on the same cluster.
const (
	// RebuildBulkFlushBytes sends a rebuild bulk request once its body is this large.
	RebuildBulkFlushBytes = 5 << 20
	// RebuildBulkWorkers is the number of rebuild bulk requests in flight at once.
	RebuildBulkWorkers = 2
	// RebuildBulkFlushInterval sends what concurrent Write calls have collected at the latest
	// after this long. A single Write does not wait for it: it flushes once its items are
	// queued.
	RebuildBulkFlushInterval = 50 * time.Millisecond
	// MaxDocumentsPage is the largest page Target.Documents returns (the engine's default
	// index.max_result_window bounds a search's size).
	MaxDocumentsPage = 10_000
)

// rebuildWriteAttempts bounds how often Write sends an item that failed transiently (429,
// 5xx, a failed bulk request) before it gives up and fails the rebuild.
const rebuildWriteAttempts = 4

// ErrTargetClosed is returned by Target.Write after Close.
var ErrTargetClosed = errors.New("rebuild target is closed")

// Target is the rebuild's view of the read model (rebuild.Target): it creates a versioned
// index for bulk loading, fills it by name with external versions, pages through it for
// validation and switches the alias to it atomically. Index management is delegated to
// Indices; Target adds the bulk loading, the paging and the mapping of errors to the port's.
type Target struct {
	client  *es8.Client
	indices *Indices
	cfg     Config
	indexer esutil.BulkIndexer
	// maxWait bounds the wait for the next item result of a Write, in case the indexer ever
	// loses an item.
	maxWait time.Duration

	mu     sync.RWMutex // guards closed against Add racing Close (Add after Close panics)
	closed bool
}

var _ rebuild.Target = (*Target)(nil)

// NewTarget returns the rebuild target of indices' alias and starts its bulk indexer; Close
// stops it. cfg must name the same alias as indices; its request timeout and retries apply.
func NewTarget(client *es8.Client, indices *Indices, cfg Config) (*Target, error) {
	if client == nil {
		return nil, errors.New("rebuild target: nil client")
	}
	if indices == nil {
		return nil, errors.New("rebuild target: nil indices")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rebuild target: %w", err)
	}
	if cfg.Alias != indices.Alias() {
		return nil, fmt.Errorf("rebuild target: config alias %q differs from the indices' alias %q", cfg.Alias, indices.Alias())
	}
	indexer, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		// statusTransport keeps the status of a failed bulk request, so Write can tell a
		// transient failure from a permanent one.
		Client:        statusTransport{next: client},
		NumWorkers:    RebuildBulkWorkers,
		FlushBytes:    RebuildBulkFlushBytes,
		FlushInterval: RebuildBulkFlushInterval,
		Timeout:       cfg.RequestTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild target: %w", err)
	}
	retries := time.Duration(max(cfg.MaxRetries, 0) + 1)
	return &Target{
		client:  client,
		indices: indices,
		cfg:     cfg,
		indexer: indexer,
		maxWait: RebuildBulkFlushInterval + retries*(cfg.RequestTimeout+2*time.Second) + 10*time.Second,
	}, nil
}

// MappingVersion is the mapping version of the indices CreateIndex creates.
func (t *Target) MappingVersion() int { return MappingVersion }

// AliasTarget returns the index the alias points at, or an error wrapping rebuild.ErrNoAlias
// when the alias does not exist.
func (t *Target) AliasTarget(ctx context.Context) (string, error) {
	index, err := t.indices.AliasTarget(ctx)
	if err != nil {
		if errors.Is(err, ErrAliasNotFound) {
			return "", fmt.Errorf("rebuild target: %w: %w", rebuild.ErrNoAlias, err)
		}
		return "", fmt.Errorf("rebuild target: %w", err)
	}
	return index, nil
}

// CreateIndex creates an index with the current mapping and bulk-load settings (refresh off,
// no replicas) and returns its name. The alias is not touched.
func (t *Target) CreateIndex(ctx context.Context) (string, error) {
	name, err := t.indices.CreateIndex(ctx, CreateIndexOptions{BulkLoad: true})
	if err != nil {
		return "", fmt.Errorf("rebuild target: %w", err)
	}
	return name, nil
}

// RestoreSettings puts the configured refresh interval and replicas back on index.
func (t *Target) RestoreSettings(ctx context.Context, index string) error {
	if err := t.indices.RestoreSettings(ctx, index); err != nil {
		return fmt.Errorf("rebuild target: %w", err)
	}
	return nil
}

// Refresh makes everything written to index searchable (Documents sees only that).
func (t *Target) Refresh(ctx context.Context, index string) error {
	if index == "" {
		return fmt.Errorf("rebuild target: refresh: no index name")
	}
	if err := t.indices.Refresh(ctx, index); err != nil {
		return fmt.Errorf("rebuild target: %w", err)
	}
	return nil
}

// DeleteIndex deletes index; it refuses the one the alias points at (ErrIndexInUse).
func (t *Target) DeleteIndex(ctx context.Context, index string) error {
	if err := t.indices.DeleteIndex(ctx, index); err != nil {
		return fmt.Errorf("rebuild target: %w", err)
	}
	return nil
}

// ListIndices lists the alias's versioned indices, newest first, with their live and
// tombstone counts and which one the alias points at. Created is the time in the name.
func (t *Target) ListIndices(ctx context.Context) ([]rebuild.IndexInfo, error) {
	list, err := t.indices.ListIndices(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild target: %w", err)
	}
	out := make([]rebuild.IndexInfo, 0, len(list))
	for _, ix := range list {
		created := ix.Created
		if _, named, ok := readmodel.ParseIndexName(t.cfg.Alias, ix.Name); ok {
			created = named
		}
		out = append(out, rebuild.IndexInfo{
			Name: ix.Name, MappingVersion: ix.MappingVersion, Created: created,
			Live: ix.Live, Tombstones: ix.Tombstones, Aliased: ix.Aliased,
		})
	}
	slices.SortFunc(out, func(a, b rebuild.IndexInfo) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.Name, a.Name))
	})
	return out, nil
}

// SwitchAlias moves the alias from one index to another in one _aliases request (remove from
// with must_exist, add to as the write index), so readers and writers see the old or the new
// index, never none or both. When the alias no longer points at from, nothing changes and the
// error wraps domain ErrAliasMoved. from == "" adds the alias to to only where no alias exists
// (ErrAliasMoved otherwise). A switch that finds the alias already on to succeeds, so a retry
// of a switch whose answer was lost is harmless.
//
// to must carry the strict mapping of the version in its name: an index that was auto-created
// by a stray write (after the real one was deleted) never becomes live.
func (t *Target) SwitchAlias(ctx context.Context, from, to string) error {
	if from == to {
		return fmt.Errorf("rebuild target: switch alias: from and to are both %q", to)
	}
	if err := t.checkMapping(ctx, to); err != nil {
		return fmt.Errorf("rebuild target: switch alias %s -> %s: %w", from, to, err)
	}
	err := t.indices.SwitchAlias(ctx, from, to)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrAliasConflict) && !errors.Is(err, ErrIndexNotFound) {
		return fmt.Errorf("rebuild target: %w", err)
	}
	// OpenSearch answers a failed must_exist with 404 aliases_not_found_exception, a second
	// write index with 500 illegal_state_exception and a missing from or to with 404
	// index_not_found_exception; only the alias itself says which index is to blame.
	current, aerr := t.indices.AliasTarget(ctx)
	switch {
	case aerr == nil && current == to:
		return nil
	case aerr == nil && current != from:
		return fmt.Errorf("rebuild target: alias %s points at %s, not %q: %w: %w", t.cfg.Alias, current, from, readmodel.ErrAliasMoved, err)
	case errors.Is(aerr, ErrAliasNotFound) && from != "":
		return fmt.Errorf("rebuild target: alias %s no longer exists, expected it on %s: %w: %w", t.cfg.Alias, from, readmodel.ErrAliasMoved, err)
	}
	return fmt.Errorf("rebuild target: %w", err)
}

// checkMapping verifies that index has the strict mapping whose version its name states.
func (t *Target) checkMapping(ctx context.Context, index string) error {
	want, _, ok := readmodel.ParseIndexName(t.cfg.Alias, index)
	if !ok {
		return t.indices.ownIndex(index)
	}
	var res map[string]struct {
		Mappings struct {
			Dynamic any `json:"dynamic"`
			Meta    struct {
				MappingVersion *int `json:"mapping_version"`
			} `json:"_meta"`
		} `json:"mappings"`
	}
	err := do(ctx, t.client, t.cfg.RequestTimeout, esapi.IndicesGetMappingRequest{Index: []string{index}}, &res)
	if err != nil {
		return fmt.Errorf("mapping of %s: %w", index, notFound(err))
	}
	m, ok := res[index]
	if !ok {
		return fmt.Errorf("mapping of %s: not in the answer: %w", index, ErrIndexNotFound)
	}
	if fmt.Sprint(m.Mappings.Dynamic) != "strict" || m.Mappings.Meta.MappingVersion == nil || *m.Mappings.Meta.MappingVersion != want {
		return fmt.Errorf("%s does not have the strict mapping version %d (dynamic %v, _meta.mapping_version %v): it was not created by CreateIndex",
			index, want, m.Mappings.Dynamic, m.Mappings.Meta.MappingVersion)
	}
	return nil
}

// Write stores docs in index, by name, as the documents of the live projection with their
// versions as external versions (external_gte): an older version than the stored one loses
// (a 409 that counts as success), an equal one is a no-op. It returns once every item of this
// call has its result; items that failed transiently (429, 5xx) are sent again a few times,
// and any item that still fails, or fails for good, fails the call, so a rebuild never misses
// documents silently. Concurrent calls are safe and share bulk requests.
func (t *Target) Write(ctx context.Context, index string, docs []product.Snapshot) error {
	if len(docs) == 0 {
		return nil
	}
	if err := t.indices.ownIndex(index); err != nil {
		return fmt.Errorf("rebuild target: write: %w", err)
	}
	// Writing to a missing index would auto-create one with dynamic mapping.
	if err := do(ctx, t.client, t.cfg.RequestTimeout, esapi.IndicesExistsRequest{Index: []string{index}}, nil); err != nil {
		return fmt.Errorf("rebuild target: write %s: %w", index, notFound(err))
	}
	bodies := make([][]byte, len(docs))
	for i, s := range docs {
		if s.ID == "" || s.Version < 1 {
			return fmt.Errorf("rebuild target: write %s: document %d (%q v%d) has no id or version", index, i, s.ID, s.Version)
		}
		body, err := json.Marshal(newDocument(s))
		if err != nil {
			return fmt.Errorf("rebuild target: write %s: encode %s v%d: %w", index, s.ID, s.Version, err)
		}
		bodies[i] = body
	}
	pending := make([]int, len(docs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		retry, failed, err := t.writeOnce(ctx, index, docs, bodies, pending)
		if err != nil {
			return fmt.Errorf("rebuild target: write %d documents to %s: %w", len(docs), index, err)
		}
		if len(failed) > 0 {
			return fmt.Errorf("rebuild target: write %d documents to %s: %d failed: %w", len(docs), index, len(failed), errors.Join(firstErrors(failed, 3)...))
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt == rebuildWriteAttempts {
			return fmt.Errorf("rebuild target: write %d documents to %s: %d still failing after %d attempts: %w",
				len(docs), index, len(retry), attempt, errors.Join(firstErrors(retry, 3)...))
		}
		pending = pending[:0]
		for _, r := range retry {
			pending = append(pending, r.i)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebuild target: write %d documents to %s: %w", len(docs), index, ctx.Err())
		case <-time.After(retryBackoff(attempt)):
		}
	}
}

// itemResult is the outcome of one item of a Write: err is nil for success (including a 409
// version conflict); transient marks a failure worth sending again.
type itemResult struct {
	i         int
	err       error
	transient bool
}

// writeOnce queues the pending items, flushes them and collects one result per item. It
// returns the transiently failed items (retry) and the permanently failed ones.
func (t *Target) writeOnce(ctx context.Context, index string, docs []product.Snapshot, bodies [][]byte, pending []int) (retry, failed []itemResult, err error) {
	// One slot per item, so a callback never blocks an indexer worker.
	results := make(chan itemResult, len(pending))
	queued, err := t.queue(ctx, index, docs, bodies, pending, results)
	if err != nil && queued == 0 {
		return nil, nil, err
	}
	// Results of what was queued are awaited even when queueing stopped half-way, so no
	// callback of this call runs after it returned.
	timer := time.NewTimer(t.maxWait)
	defer timer.Stop()
	for got := 0; got < queued; got++ {
		select {
		case r := <-results:
			switch {
			case r.err == nil:
			case r.transient:
				retry = append(retry, r)
			default:
				failed = append(failed, r)
			}
			timer.Reset(t.maxWait)
		case <-ctx.Done():
			// The items may still be written; the rebuild is abandoned or retried, and
			// external versions make either harmless.
			return nil, nil, ctx.Err()
		case <-timer.C:
			return nil, nil, fmt.Errorf("no result from the bulk indexer for %d items after %s", queued-got, t.maxWait)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return retry, failed, nil
}

// queue adds the pending items to the indexer and flushes them, so a Write does not wait for
// the flush interval. It returns how many items were queued.
func (t *Target) queue(ctx context.Context, index string, docs []product.Snapshot, bodies [][]byte, pending []int, results chan<- itemResult) (int, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, ErrTargetClosed
	}
	for n, i := range pending {
		s := docs[i]
		version := s.Version
		err := t.indexer.Add(ctx, esutil.BulkIndexerItem{
			Index:       index,
			Action:      "index",
			DocumentID:  string(s.ID),
			Version:     &version,
			VersionType: "external_gte",
			Body:        bytes.NewReader(bodies[i]),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				results <- itemResult{i: i}
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				transient, ierr := classifyRebuildItem(res, err)
				if ierr != nil {
					ierr = fmt.Errorf("%s v%d: %w", s.ID, s.Version, ierr)
				}
				results <- itemResult{i: i, err: ierr, transient: transient}
			},
		})
		if err != nil {
			return n, fmt.Errorf("queue: %w", err)
		}
	}
	if err := t.indexer.Flush(ctx); err != nil {
		// The flush interval sends the items anyway.
		return len(pending), fmt.Errorf("flush: %w", err)
	}
	return len(pending), nil
}

// classifyRebuildItem tells what an item's failure means for a rebuild: a 409 version conflict
// is success (the index has this version or a newer one); 429, 5xx and failures of the whole
// bulk request with such a status or without one (connection errors) are transient; anything
// else (a document the mapping refuses, a missing or closed index) fails the rebuild.
func classifyRebuildItem(res esutil.BulkIndexerResponseItem, err error) (transient bool, _ error) {
	if err != nil {
		e, ok := asESError(err)
		return !ok || e.Status == http.StatusTooManyRequests || e.Status >= 500, fmt.Errorf("bulk request: %w", err)
	}
	e := &esError{Status: res.Status, Type: res.Error.Type, Reason: res.Error.Reason}
	if res.Error.Cause.Type != "" {
		e.CausedBy = &esErrorCause{Type: res.Error.Cause.Type, Reason: res.Error.Cause.Reason}
	}
	switch {
	case e.Status == http.StatusConflict && e.hasType("version_conflict_engine_exception"):
		return false, nil
	case e.Status == http.StatusTooManyRequests || e.Status >= 500 ||
		e.hasType("es_rejected_execution_exception", "circuit_breaking_exception"):
		return true, fmt.Errorf("bulk item: %w", e)
	default:
		return false, fmt.Errorf("bulk item: %w", e)
	}
}

func firstErrors(rs []itemResult, n int) []error {
	errs := make([]error, 0, min(n, len(rs)))
	for _, r := range rs[:min(n, len(rs))] {
		errs = append(errs, r.err)
	}
	if len(rs) > n {
		errs = append(errs, fmt.Errorf("and %d more", len(rs)-n))
	}
	return errs
}

// Documents returns up to limit (at most MaxDocumentsPage) of index's documents with
// id > afterID in ascending id order, as of the last refresh: the id, the external version
// (_version, which is the aggregate version) and whether it is a tombstone. Pages use
// search_after on the id keyword field, so the millionth document costs what the first does
// and nothing is left open on the cluster between pages.
func (t *Target) Documents(ctx context.Context, index, afterID string, limit int) ([]rebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("rebuild target: documents of %s: limit %d must be positive", index, limit)
	}
	limit = min(limit, MaxDocumentsPage)
	if err := t.indices.ownIndex(index); err != nil {
		return nil, fmt.Errorf("rebuild target: documents: %w", err)
	}
	body := map[string]any{
		"size":             limit,
		"sort":             []any{map[string]any{"id": "asc"}},
		"_source":          []string{"deleted"},
		"version":          true,
		"track_total_hits": false,
		"query":            map[string]any{"match_all": map[string]any{}},
	}
	if afterID != "" {
		body["search_after"] = []string{afterID}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("rebuild target: documents of %s: %w", index, err)
	}
	var res struct {
		TimedOut bool `json:"timed_out"`
		Shards   struct {
			Failed int `json:"failed"`
		} `json:"_shards"`
		Hits struct {
			Hits []struct {
				ID      string `json:"_id"`
				Version int64  `json:"_version"`
				Source  struct {
					Deleted bool `json:"deleted"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	err = do(ctx, t.client, t.cfg.RequestTimeout, esapi.SearchRequest{
		Index: []string{index}, Body: bytes.NewReader(raw),
		FilterPath: []string{"timed_out", "_shards.failed", "hits.hits._id", "hits.hits._version", "hits.hits._source.deleted", "error", "status"},
	}, &res)
	if err != nil {
		return nil, fmt.Errorf("rebuild target: documents of %s after %q: %w", index, afterID, notFound(err))
	}
	// A partial answer would look like missing documents to the validation.
	if res.TimedOut || res.Shards.Failed > 0 {
		return nil, fmt.Errorf("rebuild target: documents of %s after %q: partial result (timed out %v, %d shards failed)",
			index, afterID, res.TimedOut, res.Shards.Failed)
	}
	out := make([]rebuild.DocVersion, 0, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		if strings.TrimSpace(h.ID) == "" {
			return nil, fmt.Errorf("rebuild target: documents of %s: hit without _id", index)
		}
		out = append(out, rebuild.DocVersion{ID: h.ID, Version: h.Version, Deleted: h.Source.Deleted})
	}
	return out, nil
}

// Close flushes what was queued, waits for those writes (their Write calls return) and stops
// the bulk indexer; later Write calls fail with ErrTargetClosed. ctx bounds the wait.
func (t *Target) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	if err := t.indexer.Close(ctx); err != nil {
		return fmt.Errorf("rebuild target: close: %w", err)
	}
	return nil
}
