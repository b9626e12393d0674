package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/rebuild"
)

// VerifyReadModel compares the system of record with the read model behind the alias and
// reports the differences that persist.
type VerifyReadModel struct {
	// Request is the settle delay and the number of samples.
	Request VerifyRequest
	// Progress, if not nil, is told about the running verify about twice a second, on the
	// calling goroutine.
	Progress func(VerifyProgress)
}

// VerifyReadModelHandler answers VerifyReadModel. It runs one verify at a time: a second
// call while one runs fails with ErrVerifyRunning.
type VerifyReadModelHandler decorator.Handler[VerifyReadModel, VerifyReport]

type verifyReadModelHandler struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	verifying atomic.Bool
}

// NewVerifyReadModelHandler returns the decorated handler over deps' Database, Products and
// ReadModel.
func NewVerifyReadModelHandler(cfg Config, deps Deps) (VerifyReadModelHandler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Database == nil || deps.Products == nil || deps.ReadModel == nil {
		return nil, errors.New("ops verify: nil dependency")
	}
	h := &verifyReadModelHandler{cfg: cfg, deps: deps, log: deps.logger()}
	return decorator.Apply[VerifyReadModel, VerifyReport](h, deps.Log, deps.Metrics), nil
}

// Category is a kind of difference between the database and the read model.
type Category string

// The categories, in the order reports list them.
const (
	// CategoryMissing: a product (live or tombstone) has no document.
	CategoryMissing Category = "missing"
	// CategoryStale: the document is older than the product.
	CategoryStale Category = "stale"
	// CategoryPhantom: a live document has no product.
	CategoryPhantom Category = "phantom"
	// CategoryResurrected: the product is deleted but its document is live, so searches
	// show a deleted product.
	CategoryResurrected Category = "resurrected"
	// CategoryAhead: the document is newer than the product, which should not happen.
	CategoryAhead Category = "ahead"
)

// Categories lists every category in report order.
var Categories = []Category{CategoryMissing, CategoryStale, CategoryPhantom, CategoryResurrected, CategoryAhead}

// Difference is one id on which the database and the read model disagree.
type Difference struct {
	// ID is the product (document) id.
	ID string
	// Category is the kind of difference.
	Category Category
	// InDatabase is false when no product has the id.
	InDatabase bool
	// DatabaseVersion and DatabaseDeleted are the product's version and tombstone flag.
	DatabaseVersion int64
	// DatabaseDeleted is true for a deleted product.
	DatabaseDeleted bool
	// InIndex is false when the index has no document with the id.
	InIndex bool
	// IndexVersion and IndexDeleted are the document's version and tombstone flag.
	IndexVersion int64
	// IndexDeleted is true for a tombstone document.
	IndexDeleted bool
}

// CategoryReport counts one category and keeps a few samples.
type CategoryReport struct {
	// Category is the kind of difference.
	Category Category
	// Count is the number of ids that still differed after the settle delay.
	Count int64
	// Samples are the first of them in id order, at most VerifyRequest.Samples.
	Samples []Difference
}

// Limits of VerifyRequest.
const (
	DefaultSettle  = 3 * time.Second
	MaxSettle      = 5 * time.Minute
	DefaultSamples = 10
	MaxSamples     = 1000
)

// VerifyRequest configures a Verify.
type VerifyRequest struct {
	// Settle is how long a difference is given to resolve itself (an event in flight)
	// before it is re-checked; only differences that persist are reported. 0 re-checks at
	// once.
	Settle time.Duration
	// Samples is the number of differences kept per category.
	Samples int
}

// DefaultVerifyRequest returns the request with the default settle delay and samples.
func DefaultVerifyRequest() VerifyRequest {
	return VerifyRequest{Settle: DefaultSettle, Samples: DefaultSamples}
}

// Validate reports a request out of bounds.
func (r VerifyRequest) Validate() error {
	if r.Settle < 0 || r.Settle > MaxSettle {
		return fmt.Errorf("%w: settle %s must be between 0 and %s", ErrInvalid, r.Settle, MaxSettle)
	}
	if r.Samples < 0 || r.Samples > MaxSamples {
		return fmt.Errorf("%w: samples %d must be between 0 and %d", ErrInvalid, r.Samples, MaxSamples)
	}
	return nil
}

// VerifyPhase is the step a Verify is in.
type VerifyPhase string

// The phases of a Verify.
const (
	// PhaseScan merges every product with every document.
	PhaseScan VerifyPhase = "scan"
	// PhaseSettle waits for differences found by the scan to settle.
	PhaseSettle VerifyPhase = "settle"
	// PhaseRecheck reads the differing ids again from both sides.
	PhaseRecheck VerifyPhase = "recheck"
)

// VerifyProgress is a running Verify's state, for progress displays.
type VerifyProgress struct {
	// Phase is the current step.
	Phase VerifyPhase
	// Products and Documents count what the scan has read so far.
	Products int64
	// Documents counts the index's documents read so far, tombstones included.
	Documents int64
	// ProductsTotal estimates Products at the end (rows when the verify began); 0 if unknown.
	ProductsTotal int64
	// Candidates counts the differences found by the scan so far, before the re-check.
	Candidates int64
	// Elapsed is the time since the verify began.
	Elapsed time.Duration
}

// VerifyReport is the outcome of a Verify.
type VerifyReport struct {
	// Alias and Index say what was compared: the index the alias pointed at.
	Alias string
	// Index is the index the alias pointed at when the verify began.
	Index string
	// StartedAt is when the verify began.
	StartedAt time.Time
	// Duration is how long it took.
	Duration time.Duration
	// Settle is the settle delay that was applied.
	Settle time.Duration
	// Products counts the product rows compared, tombstones included.
	Products int64
	// Documents counts the documents compared, tombstones included.
	Documents int64
	// Candidates counts the ids that differed in the scan, before the re-check.
	Candidates int64
	// Categories reports every category, in the order of Categories.
	Categories []CategoryReport
}

// Differences is the number of ids that still differed after the re-check.
func (r VerifyReport) Differences() int64 {
	var n int64
	for _, c := range r.Categories {
		n += c.Count
	}
	return n
}

// Consistent reports whether the read model matched the database.
func (r VerifyReport) Consistent() bool { return r.Differences() == 0 }

// ErrVerifyRunning means this process is already running a Verify; one at a time keeps an
// impatient operator from doubling the load of a full scan.
var ErrVerifyRunning = errors.New("a verify is already running in this process")

// Handle compares every product (id, version, deleted) with the document of the same id in
// the index the alias points at, by a merge-join of two id-ordered streams read in pages, so
// memory stays bounded at any size. Live writes make in-flight events look like
// differences, so each difference is read again from both sides after Request.Settle and
// only those that persist are reported (with the category they have then). A missing alias
// fails with an error wrapping rebuild.ErrNoAlias.
func (s *verifyReadModelHandler) Handle(ctx context.Context, q VerifyReadModel) (VerifyReport, error) {
	req, progress := q.Request, q.Progress
	if err := req.Validate(); err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	if !s.verifying.CompareAndSwap(false, true) {
		return VerifyReport{}, fmt.Errorf("verify: %w", ErrVerifyRunning)
	}
	defer s.verifying.Store(false)
	index, err := s.deps.ReadModel.AliasTarget(ctx)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	v := &verifier{s: s, ctx: ctx, index: index, req: req, progress: progress, started: s.cfg.Now(),
		counts: make(map[Category]*CategoryReport, len(Categories))}
	for _, c := range Categories {
		v.counts[c] = &CategoryReport{Category: c}
	}
	if counts, err := s.deps.Database.ProductCounts(ctx); err == nil {
		v.total = counts.Total
	}
	if err := v.scan(); err != nil {
		return VerifyReport{}, fmt.Errorf("verify %s: %w", index, err)
	}
	rep := VerifyReport{Alias: s.cfg.Alias, Index: index, StartedAt: v.started.UTC(), Duration: s.cfg.Now().Sub(v.started),
		Settle: req.Settle, Products: v.products, Documents: v.documents, Candidates: v.candidates}
	for _, c := range Categories {
		rep.Categories = append(rep.Categories, *v.counts[c])
	}
	s.log.Info("verify finished", "index", index, "products", rep.Products, "documents", rep.Documents,
		"candidates", rep.Candidates, "differences", rep.Differences(), "took", rep.Duration.Round(time.Millisecond))
	return rep, nil
}

// candidate is an id that differed in the scan, waiting for its re-check.
type candidate struct {
	id string
	// ord is the number of documents the scan read before this id: where a re-read of the
	// index has to start, and thus how many re-checks one page of documents can answer.
	ord int64
	// seen is when the scan found it.
	seen time.Time
}

type verifier struct {
	s        *verifyReadModelHandler
	ctx      context.Context
	index    string
	req      VerifyRequest
	progress func(VerifyProgress)
	started  time.Time

	products, documents, candidates, total int64
	pending                                []candidate
	counts                                 map[Category]*CategoryReport
	lastTick                               time.Time
}

func (v *verifier) scan() error {
	cfg := v.s.cfg
	rows := func(ctx context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
		page, err := v.s.deps.Products.ProductVersions(ctx, after, limit)
		if err != nil {
			return nil, fmt.Errorf("read products: %w", err)
		}
		return page, nil
	}
	docs := func(ctx context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
		page, err := v.s.deps.ReadModel.Documents(ctx, v.index, after, limit)
		if err != nil {
			return nil, fmt.Errorf("read documents: %w", err)
		}
		return page, nil
	}
	err := rebuild.MergeJoin(v.ctx, rows, docs, cfg.VerifyPageSize, func(row, doc *rebuild.DocVersion) error {
		ord := v.documents
		if row != nil {
			v.products++
		}
		if doc != nil {
			v.documents++
		}
		if _, differs := classify(row, doc); differs {
			id := row
			if id == nil {
				id = doc
			}
			v.candidates++
			v.pending = append(v.pending, candidate{id: id.ID, ord: ord, seen: cfg.Now()})
			if len(v.pending) >= cfg.VerifyMaxPending {
				if err := v.recheckPending(); err != nil {
					return err
				}
			}
		}
		v.tick(PhaseScan, false)
		return nil
	})
	if err != nil {
		return err
	}
	return v.recheckPending()
}

// recheckPending waits until the newest pending difference is Settle old, then reads every
// pending id again from both sides and reports those that still differ.
func (v *verifier) recheckPending() error {
	if len(v.pending) == 0 {
		return nil
	}
	if wait := v.req.Settle - v.s.cfg.Now().Sub(v.pending[len(v.pending)-1].seen); wait > 0 {
		v.tick(PhaseSettle, true)
		t := time.NewTimer(wait)
		select {
		case <-v.ctx.Done():
			t.Stop()
			return v.ctx.Err()
		case <-t.C:
		}
	}
	v.tick(PhaseRecheck, true)
	rows, err := v.lookupRows(v.pending)
	if err != nil {
		return err
	}
	docs, err := v.lookupDocs(v.pending)
	if err != nil {
		return err
	}
	for _, c := range v.pending {
		var row, doc *rebuild.DocVersion
		if r, ok := rows[c.id]; ok {
			row = &r
		}
		if d, ok := docs[c.id]; ok {
			doc = &d
		}
		cat, differs := classify(row, doc)
		if !differs {
			continue
		}
		rep := v.counts[cat]
		rep.Count++
		if len(rep.Samples) < v.req.Samples {
			rep.Samples = append(rep.Samples, difference(c.id, cat, row, doc))
		}
	}
	v.pending = v.pending[:0]
	return nil
}

// lookupRows reads the products of the batch by id, a thousand at a time.
func (v *verifier) lookupRows(batch []candidate) (map[string]rebuild.DocVersion, error) {
	const chunk = 1000
	out := make(map[string]rebuild.DocVersion, len(batch))
	ids := make([]string, 0, min(chunk, len(batch)))
	for i := 0; i < len(batch); i += chunk {
		ids = ids[:0]
		for _, c := range batch[i:min(i+chunk, len(batch))] {
			ids = append(ids, c.id)
		}
		rows, err := v.s.deps.Products.ProductVersionsByID(v.ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("re-read products: %w", err)
		}
		for _, r := range rows {
			out[r.ID] = r
		}
	}
	return out, nil
}

// lookupDocs reads the documents of the batch (sorted by id, located by the scan) again.
func (v *verifier) lookupDocs(batch []candidate) (map[string]rebuild.DocVersion, error) {
	wanted := make([]rebuild.Located, len(batch))
	for i, c := range batch {
		wanted[i] = rebuild.Located{ID: c.id, Ord: c.ord}
	}
	docs := func(ctx context.Context, after string, limit int) ([]rebuild.DocVersion, error) {
		page, err := v.s.deps.ReadModel.Documents(ctx, v.index, after, limit)
		if err != nil {
			return nil, fmt.Errorf("re-read documents: %w", err)
		}
		return page, nil
	}
	return rebuild.ReadBack(v.ctx, docs, wanted, v.s.cfg.VerifyPageSize)
}

func (v *verifier) tick(phase VerifyPhase, force bool) {
	if v.progress == nil {
		return
	}
	now := v.s.cfg.Now()
	if !force && now.Sub(v.lastTick) < 500*time.Millisecond {
		return
	}
	v.lastTick = now
	v.progress(VerifyProgress{Phase: phase, Products: v.products, Documents: v.documents, ProductsTotal: max(v.total, v.products),
		Candidates: v.candidates, Elapsed: now.Sub(v.started)})
}

// classify compares a product with its document; nil means absent. A tombstone document
// without a product is harmless (nothing shows it) and no difference.
func classify(row, doc *rebuild.DocVersion) (Category, bool) {
	switch {
	case row == nil && doc == nil:
		return "", false
	case row == nil:
		return CategoryPhantom, !doc.Deleted
	case doc == nil:
		return CategoryMissing, true
	case row.Deleted && !doc.Deleted:
		return CategoryResurrected, true
	case doc.Version < row.Version:
		return CategoryStale, true
	case doc.Version > row.Version:
		return CategoryAhead, true
	case doc.Deleted && !row.Deleted:
		// Same version, but the document says deleted: it does not show what the database
		// holds, and replaying the product's event (an equal version) would not fix it.
		return CategoryStale, true
	}
	return "", false
}

func difference(id string, cat Category, row, doc *rebuild.DocVersion) Difference {
	d := Difference{ID: id, Category: cat}
	if row != nil {
		d.InDatabase, d.DatabaseVersion, d.DatabaseDeleted = true, row.Version, row.Deleted
	}
	if doc != nil {
		d.InIndex, d.IndexVersion, d.IndexDeleted = true, doc.Version, doc.Deleted
	}
	return d
}
