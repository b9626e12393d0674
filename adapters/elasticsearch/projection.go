package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/domain/product"
)

// ErrProjectionClosed is returned by Apply after Close: the process is shutting down and the
// event must be redelivered to the next consumer.
var ErrProjectionClosed = errors.New("search projection is closed")

// ErrMappingBehind means the live index refused a document for a field its strict mapping does
// not have: the index was created by an older release (mapping version below MappingVersion)
// and has not been extended. The document is this release's and is fine; the index is behind.
// It is transient on purpose: Apply extends the live index's mapping and the retry succeeds,
// or, where that cannot be done, the partition waits until a rebuild puts a current index
// behind the alias. Dead-lettering would turn an upgrade into a DLQ flood to replay by hand.
var ErrMappingBehind = errors.New("the live index's mapping lacks a field this release writes (run 'catalog rebuild')")

// healInterval spaces the projection's attempts to extend the live index's mapping, so a
// partition retrying against an index that cannot be extended does not hammer the cluster.
const healInterval = 5 * time.Second

// Projection is the search read model's write side (command.ProductProjection). Every Apply of
// every goroutine goes through one shared bulk indexer, so concurrent partitions are batched
// into few bulk requests, yet each Apply returns only once its own document's outcome is known:
// the projector acknowledges an event only after the read model has it.
type Projection struct {
	alias   string
	indices *Indices
	indexer esutil.BulkIndexer
	// maxWait bounds the wait for an item's outcome even without a caller deadline, in case
	// the indexer ever loses an item; the event is then retried, which external versions make
	// harmless.
	maxWait time.Duration

	mu     sync.RWMutex // guards closed against Add racing Close (Add after Close panics)
	closed bool

	healMu   sync.Mutex // one extension attempt at a time, at most one per healInterval
	healedAt time.Time
}

var _ command.ProductProjection = (*Projection)(nil)

// NewProjection starts the shared bulk indexer writing through cfg.Alias. Close stops it.
func NewProjection(client *es8.Client, cfg Config) (*Projection, error) {
	if client == nil {
		return nil, errors.New("elasticsearch projection: nil client")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch projection: %w", err)
	}
	indices, err := NewIndices(client, cfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch projection: %w", err)
	}
	indexer, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		// statusTransport turns a failed bulk request into an error that keeps its status, so
		// that every item of it is classified like an item of that status.
		Client:        statusTransport{next: client},
		NumWorkers:    cfg.BulkWorkers,
		FlushBytes:    cfg.BulkFlushBytes,
		FlushInterval: cfg.BulkFlushInterval,
		RequireAlias:  true,
		Timeout:       cfg.RequestTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch projection: %w", err)
	}
	retries := time.Duration(max(cfg.MaxRetries, 0) + 1)
	return &Projection{
		alias:   cfg.Alias,
		indices: indices,
		indexer: indexer,
		maxWait: cfg.BulkFlushInterval + retries*(cfg.RequestTimeout+2*time.Second) + 10*time.Second,
	}, nil
}

// Apply stores s as the document of its id with its version as external version
// (external_gte) through the alias. An older version than the stored one is success with
// nothing to do, and tombstones are stored as documents like any other state, so replays and
// reordering are harmless. Errors: ErrProjectionRejected (wrapped) for a document the index
// refuses for good; any other error is transient and worth a retry (cluster down, overloaded,
// alias missing, timeouts, ctx done).
func (p *Projection) Apply(ctx context.Context, s product.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("project %s v%d: %w", s.ID, s.Version, err)
	}
	if s.ID == "" || s.Version < 1 {
		return fmt.Errorf("project %q v%d: no id or version: %w", s.ID, s.Version, command.ErrProjectionRejected)
	}
	body, err := json.Marshal(newDocument(s))
	if err != nil {
		return fmt.Errorf("project %s v%d: encode: %w", s.ID, s.Version, command.ErrProjectionRejected)
	}
	// Buffered, and sent to without blocking, so an indexer worker never waits for us.
	done := make(chan error, 1)
	report := func(err error) {
		select {
		case done <- err:
		default:
		}
	}
	version := s.Version
	item := esutil.BulkIndexerItem{
		Index:        p.alias,
		Action:       "index",
		DocumentID:   string(s.ID),
		Version:      &version,
		VersionType:  "external_gte",
		RequireAlias: true,
		Body:         bytes.NewReader(body),
		OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
			report(nil)
		},
		OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
			report(classifyItem(res, err))
		},
	}
	if err := p.add(ctx, item); err != nil {
		return fmt.Errorf("project %s v%d: %w", s.ID, s.Version, err)
	}
	timer := time.NewTimer(p.maxWait)
	defer timer.Stop()
	select {
	case err := <-done:
		if errors.Is(err, ErrMappingBehind) {
			err = p.heal(ctx, err)
		}
		if err != nil {
			return fmt.Errorf("project %s v%d: %w", s.ID, s.Version, err)
		}
		return nil
	case <-ctx.Done():
		// The document may still be written; a retry of the event is harmless.
		return fmt.Errorf("project %s v%d: %w", s.ID, s.Version, ctx.Err())
	case <-timer.C:
		return fmt.Errorf("project %s v%d: no result from the bulk indexer after %s", s.ID, s.Version, p.maxWait)
	}
}

// heal extends the mapping of the index the alias points at (Indices.ExtendMapping) after a
// document was refused for a field it lacks, and returns the error for the retry that follows;
// an alias moved to an old index by an older release's rebuild or rollback heals like the
// index found at startup. The outcome is in the returned error, which the projector logs.
func (p *Projection) heal(ctx context.Context, refused error) error {
	p.healMu.Lock()
	defer p.healMu.Unlock()
	if time.Since(p.healedAt) < healInterval {
		return refused
	}
	p.healedAt = time.Now()
	index, err := p.indices.AliasTarget(ctx)
	if err != nil {
		return fmt.Errorf("%w; reading the alias to extend its index: %w", refused, err)
	}
	added, err := p.indices.ExtendMapping(ctx, index)
	if err != nil {
		return fmt.Errorf("%w; extending it failed: %w", refused, err)
	}
	return fmt.Errorf("%w; extended %s with %v, retrying", refused, index, added)
}

func (p *Projection) add(ctx context.Context, item esutil.BulkIndexerItem) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrProjectionClosed
	}
	if err := p.indexer.Add(ctx, item); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// Close flushes what was queued, waits for those writes (their Apply calls return) and stops
// the indexer; later Apply calls fail with ErrProjectionClosed. ctx bounds the wait.
func (p *Projection) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	if err := p.indexer.Close(ctx); err != nil {
		return fmt.Errorf("close projection: %w", err)
	}
	return nil
}

// Stats are the bulk indexer's counters, for metrics and tuning. Note that the indexer counts
// version conflicts (older events, which Apply treats as success) in NumFailed.
func (p *Projection) Stats() esutil.BulkIndexerStats { return p.indexer.Stats() }

// classifyItem decides what one item's failure means for the event:
//   - 409 version conflict: the index already has this version or a newer one: success.
//   - strict_dynamic_mapping_exception: the index lacks a field of this release's documents,
//     ErrMappingBehind, transient (see there).
//   - 400 (and 413, 422) about the document itself (mapper_parsing_exception,
//     document_parsing_exception, illegal_argument_exception ...): the document can never be
//     stored, ErrProjectionRejected, so the event goes to the dead-letter queue instead of
//     blocking its partition.
//   - everything else is transient: 404 (alias missing under require_alias), 429, 5xx,
//     connection errors and timeouts, but also 401/403 and the 4xx answers that are about the
//     cluster rather than the document (a read-only block when the disk is full, a closed
//     index, an alias without a write index). Dead-lettering every event during such an
//     outage would turn an infrastructure incident into data loss in the read model.
//   - a whole bulk request that failed (err) is transient whatever its status: it says nothing
//     about this item, only that the request as a whole did not go through.
func classifyItem(res esutil.BulkIndexerResponseItem, err error) error {
	if err != nil {
		return fmt.Errorf("bulk request: %w", err)
	}
	e := &esError{Status: res.Status, Type: res.Error.Type, Reason: res.Error.Reason}
	if res.Error.Cause.Type != "" {
		e.CausedBy = &esErrorCause{Type: res.Error.Cause.Type, Reason: res.Error.Cause.Reason}
	}
	switch {
	case e.Status == http.StatusConflict && e.hasType("version_conflict_engine_exception"):
		return nil
	case e.hasType("strict_dynamic_mapping_exception"):
		return fmt.Errorf("bulk item: %w: %w", e, ErrMappingBehind)
	case (e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge ||
		e.Status == http.StatusUnprocessableEntity) && !clusterSideFailure(e):
		return fmt.Errorf("bulk item: %w: %w", e, command.ErrProjectionRejected)
	default:
		return fmt.Errorf("bulk item: %w", e)
	}
}

// clusterSideFailure recognises 4xx item failures caused by the state of the cluster or the
// alias, which heal without changing the document.
func clusterSideFailure(e *esError) bool {
	if e.hasType("cluster_block_exception", "index_closed_exception", "index_not_found_exception",
		"es_rejected_execution_exception", "circuit_breaking_exception") {
		return true
	}
	return strings.Contains(e.Error(), "write index")
}

// statusTransport is the bulk indexer's view of the client. The indexer reports a failed bulk
// request (any non-2xx answer to the whole request) only as a formatted string; returning an
// *esError from Perform instead makes the indexer pass it, wrapped, to every item's OnFailure.
type statusTransport struct {
	next esapi.Transport
}

func (t statusTransport) Perform(req *http.Request) (*http.Response, error) {
	res, err := t.next.Perform(req)
	if err != nil || res.StatusCode < 300 {
		return res, err
	}
	e := &esError{Status: res.StatusCode}
	if res.Body != nil {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		_ = res.Body.Close()
		parseErrorBody(e, raw)
	}
	return nil, e
}
