package rebuild

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// PageReader reads one page of an id-ordered stream of (id, version, deleted): the entries
// with id > afterID ("" starts at the beginning) in ascending id order, at most limit. An
// empty page ends the stream; a short page does not have to (a reader may cap the limit).
type PageReader func(ctx context.Context, afterID string, limit int) ([]DocVersion, error)

// MergeJoin walks two id-ordered streams, left and right, in one pass and calls fn once per
// id in ascending order: with both entries when the id is in both streams, with nil for the
// side that lacks it. Ids compare as Go strings, which for canonical (lower-case) UUIDs is
// the order of PostgreSQL's uuid type and of a keyword sort in the search engine alike.
//
// Each stream is read in pages of pageSize by a goroutine of its own, one page ahead of fn,
// so the two sources are read concurrently with fn's work, and memory stays at a few pages
// per stream whatever their length. The entries fn gets are valid only during the call. A
// stream that is not strictly ascending is an error: a merge of unordered input would
// report differences that do not exist. MergeJoin returns the first error of a reader or
// of fn, and only after both readers have stopped.
func MergeJoin(ctx context.Context, left, right PageReader, pageSize int, fn func(left, right *DocVersion) error) error {
	if pageSize < 1 {
		return fmt.Errorf("merge join: page size %d must be positive", pageSize)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	l := startPages(ctx, &wg, left, pageSize)
	r := startPages(ctx, &wg, right, pageSize)
	for {
		lh, err := l.head(ctx)
		if err != nil {
			return err
		}
		rh, err := r.head(ctx)
		if err != nil {
			return err
		}
		switch {
		case lh == nil && rh == nil:
			return nil
		case rh == nil || (lh != nil && lh.ID < rh.ID):
			err = fn(lh, nil)
			l.pop()
		case lh == nil || rh.ID < lh.ID:
			err = fn(nil, rh)
			r.pop()
		default:
			err = fn(lh, rh)
			l.pop()
			r.pop()
		}
		if err != nil {
			return err
		}
	}
}

type pageResult struct {
	page []DocVersion
	err  error
}

// pages is one stream of a MergeJoin: a reader goroutine sends pages, the merge consumes
// them entry by entry.
type pages struct {
	ch   <-chan pageResult
	cur  []DocVersion
	done bool
}

func startPages(ctx context.Context, wg *sync.WaitGroup, read PageReader, size int) *pages {
	ch := make(chan pageResult, 1)
	wg.Go(func() {
		defer close(ch)
		after := ""
		for {
			page, err := read(ctx, after, size)
			if err == nil {
				err = checkOrder(after, page)
			}
			select {
			case ch <- pageResult{page: page, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(page) == 0 {
				return
			}
			after = page[len(page)-1].ID
		}
	})
	return &pages{ch: ch}
}

func checkOrder(after string, page []DocVersion) error {
	prev := after
	for i, d := range page {
		if (i > 0 || after != "") && d.ID <= prev {
			return fmt.Errorf("merge join: stream out of id order: %q after %q", d.ID, prev)
		}
		prev = d.ID
	}
	return nil
}

// head returns the current entry, nil at the end of the stream.
func (p *pages) head(ctx context.Context) (*DocVersion, error) {
	for len(p.cur) == 0 && !p.done {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, ok := <-p.ch
		switch {
		case !ok:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p.done = true
		case res.err != nil:
			return nil, res.err
		case len(res.page) == 0:
			p.done = true
		default:
			p.cur = res.page
		}
	}
	if len(p.cur) == 0 {
		return nil, nil
	}
	return &p.cur[0], nil
}

func (p *pages) pop() { p.cur = p.cur[1:] }

// Located is an id that an id-ordered scan of a stream found, with where it found it: Ord is
// the number of the stream's entries the scan had read before it.
type Located struct {
	ID  string
	Ord int64
}

// readBackSlack is added to a re-read's page size for entries created since the scan.
const readBackSlack = 16

// ReadBack reads the entries of wanted (ascending by ID, located by an earlier scan of the
// same stream) again from read, and returns those that exist now, by id. A PageReader can only
// read "after" an id, so wanted is cut into windows of entries that one page of the scan
// covered (by their Ord), and each window is read from just before its first id: a dense run
// (an emptied index) costs one request per page of the scan, a lone id one small request.
func ReadBack(ctx context.Context, read PageReader, wanted []Located, page int) (map[string]DocVersion, error) {
	if page < 1 {
		return nil, fmt.Errorf("read back: page size %d must be positive", page)
	}
	want := make(map[string]struct{}, len(wanted))
	for _, w := range wanted {
		want[w.ID] = struct{}{}
	}
	out := make(map[string]DocVersion, len(wanted))
	size := int64(page)
	for i := 0; i < len(wanted); {
		j := i
		for j+1 < len(wanted) && wanted[j+1].Ord-wanted[i].Ord < size {
			j++
		}
		limit := int(min(size, wanted[j].Ord-wanted[i].Ord+1+readBackSlack))
		after, last := predecessor(wanted[i].ID), wanted[j].ID
		for {
			entries, err := read(ctx, after, limit)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				if _, ok := want[e.ID]; ok {
					out[e.ID] = e
				}
			}
			if len(entries) == 0 || entries[len(entries)-1].ID >= last {
				break
			}
			after = entries[len(entries)-1].ID
		}
		i = j + 1
	}
	return out, nil
}

// predecessor returns an id just below id, so a page read "after" it starts at id. For a
// canonical UUID it is the UUID one below (no other canonical id fits between them; "" for
// the zero UUID); for anything else, id without its last byte, which sorts before it.
func predecessor(id string) string {
	if p, err := product.ParseID(id); err != nil || string(p) != id {
		if id == "" {
			return ""
		}
		return id[:len(id)-1]
	}
	b := []byte(id)
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case '-':
			continue
		case '0':
			b[i] = 'f' // borrow from the next digit to the left
			continue
		case 'a':
			b[i] = '9'
		default:
			b[i]--
		}
		return string(b)
	}
	return "" // the zero UUID: nothing sorts before it
}

// behind is a product whose row, as validation read it, is newer than its document in the
// new index (or has none): settled against the event log before it counts as a difference.
type behind struct {
	Located
	version int64
}

// validation is one run of validate: its findings so far.
type validation struct {
	ru    *runner
	index string
	page  int

	checked, documents     int64
	missing, stale, unkn   []string
	nMissing, nStale, nUnk int64
	pending                []behind
	extra                  []DocVersion
}

// validate compares the new index with the database, before the switch, by a merge join of
// two id-ordered streams (MergeJoin) read in pages, so it runs in bounded memory at any size:
// the products' (id, version, deleted) read again, page by page, each page in one short
// statement, and the index's documents.
//
// There is no snapshot to compare with: the fill read its chunks at different moments, and the
// database keeps changing while validation reads it. What validation can demand is that the
// new index holds, for every product, at least the version the database had when validation
// read it, once every event up to then has been applied. So a product whose row is newer than
// its document (or that has none) is not a difference yet, only pending: its change may simply
// have been committed after the catch-up's end offsets were taken. Pending products are settled
// (settle) when there are MaxPendingDifferences of them and at the end: wait until the relay
// has forwarded every event committed so far (so every version validation saw has its event in
// the log), apply the log from where the index stands up to its end now, and read the pending
// documents again. A document still older than the version seen, or still missing, is a
// difference: no event will ever bring it up to date, so the alias is not switched. The
// position the index has then been caught up to is where the drain after the switch starts.
//
// A live document without a row is a difference when the database does not know its id at all
// (products are never removed, only tombstoned). A rebuild with no concurrent writes settles
// nothing and waits for nothing.
func (ru *runner) validate(index string) error {
	s, ctx := ru.s, ru.ctx
	v := &validation{ru: ru, index: index, page: s.cfg.ValidatePageSize}
	rows := func(ctx context.Context, after string, limit int) ([]DocVersion, error) {
		rows, err := s.products.Versions(ctx, after, limit)
		if err != nil {
			return nil, fmt.Errorf("validate: read products: %w", err)
		}
		return rows, nil
	}
	err := MergeJoin(ctx, rows, v.documentsOf, v.page, func(row, doc *DocVersion) error {
		ord := v.documents
		if doc != nil {
			v.documents++
		}
		switch {
		case row == nil:
			if !doc.Deleted {
				v.extra = append(v.extra, *doc)
			}
		case doc == nil || doc.Version < row.Version:
			v.pending = append(v.pending, behind{Located: Located{ID: row.ID, Ord: ord}, version: row.Version})
		}
		v.checked++
		if v.checked%int64(v.page) == 0 {
			// Documents done stay the fill's figure; validation only checks in (and
			// notices a cancel) while it merges.
			if err := ru.save(false); err != nil {
				return err
			}
		}
		if len(v.pending) >= s.cfg.MaxPendingDifferences {
			if err := v.settle(); err != nil {
				return err
			}
		}
		return v.flushExtra(false)
	})
	if err == nil {
		err = v.settle()
	}
	if err == nil {
		err = v.flushExtra(true)
	}
	if err != nil {
		return err
	}
	if ru.r.Source() == readmodel.SourceKafka {
		// A Kafka fill counts events; the documents they made are counted here.
		ru.r.Progress(v.documents, ru.r.Snapshot().DocsTotal, s.cfg.Now())
	}
	if err := v.verdict(); err != nil {
		return err
	}
	s.log.Info("rebuild: validation passed", "rebuild", ru.r.ID(), "index", index, "checked", v.checked, "documents", v.documents)
	return nil
}

// documentsOf is the PageReader of the new index.
func (v *validation) documentsOf(ctx context.Context, after string, limit int) ([]DocVersion, error) {
	docs, err := v.ru.s.target.Documents(ctx, v.index, after, limit)
	if err != nil {
		return nil, fmt.Errorf("validate: read %s: %w", v.index, err)
	}
	return docs, nil
}

// flushExtra asks the database about the live documents without a row, a page at a time.
func (v *validation) flushExtra(force bool) error {
	if len(v.extra) == 0 || (!force && len(v.extra) < v.page) {
		return nil
	}
	ids := make([]string, len(v.extra))
	for i, d := range v.extra {
		ids[i] = d.ID
	}
	known, err := v.ru.s.products.Known(v.ru.ctx, ids)
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	for _, d := range v.extra {
		if !known[d.ID] {
			v.nUnk++
			v.unkn = appendSample(v.unkn, d.ID)
		}
	}
	v.extra = v.extra[:0]
	return nil
}

// settle decides the pending products (see validate): it catches the index up to the end of
// the log once the relay has forwarded every event committed so far, and reads them again.
func (v *validation) settle() error {
	if len(v.pending) == 0 {
		return nil
	}
	ru, s, ctx := v.ru, v.ru.s, v.ru.ctx
	s.log.Info("rebuild: validation settles products that changed since the catch-up", "rebuild", ru.r.ID(), "products", len(v.pending))
	if err := s.products.AwaitRelayed(ctx, s.cfg.RelayWait); err != nil {
		return fmt.Errorf("validate: %d products changed after the catch-up, and their events must be applied before they can be compared: %w", len(v.pending), err)
	}
	end, err := s.events.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("validate: capture offsets: %w", err)
	}
	from := Offsets(ru.r.DrainFrom())
	ru.r.ExpectEvents(span(from, end))
	if err := ru.applyLog(fromStart(from, end), end, v.index); err != nil {
		return fmt.Errorf("validate: catch up: %w", err)
	}
	ru.r.FinishEvents()
	ru.r.SetDrainFrom(end)
	if err := ru.save(true); err != nil {
		return err
	}
	if err := s.target.Refresh(ctx, v.index); err != nil {
		return fmt.Errorf("validate: refresh %s: %w", v.index, err)
	}
	located := make([]Located, len(v.pending))
	for i, p := range v.pending {
		located[i] = p.Located
	}
	docs, err := ReadBack(ctx, v.documentsOf, located, v.page)
	if err != nil {
		return err
	}
	for _, p := range v.pending {
		doc, ok := docs[p.ID]
		switch {
		case !ok:
			v.nMissing++
			v.missing = appendSample(v.missing, p.ID)
		case doc.Version < p.version:
			v.nStale++
			v.stale = appendSample(v.stale, fmt.Sprintf("%s (index v%d < database v%d)", p.ID, doc.Version, p.version))
		}
	}
	v.pending = v.pending[:0]
	return nil
}

// verdict is the validation's outcome: nil, or an error wrapping readmodel.ErrValidation that
// names the differences.
func (v *validation) verdict() error {
	if v.nMissing+v.nStale+v.nUnk == 0 {
		return nil
	}
	var parts []string
	if v.nMissing > 0 {
		parts = append(parts, fmt.Sprintf("%d products missing from the new index (e.g. %s)", v.nMissing, strings.Join(v.missing, ", ")))
	}
	if v.nStale > 0 {
		parts = append(parts, fmt.Sprintf("%d documents older than the database (e.g. %s)", v.nStale, strings.Join(v.stale, ", ")))
	}
	if v.nUnk > 0 {
		parts = append(parts, fmt.Sprintf("%d live documents the database does not know (e.g. %s)", v.nUnk, strings.Join(v.unkn, ", ")))
	}
	return fmt.Errorf("%w: %s; the alias was not switched", readmodel.ErrValidation, strings.Join(parts, "; "))
}

func appendSample(s []string, v string) []string {
	if len(s) < 5 {
		return append(s, v)
	}
	return s
}
