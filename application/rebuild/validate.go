package rebuild

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/marketplace/catalog/domain/rebuild"
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

// validate compares the new index with the database snapshot the rebuild recorded, by a merge
// of two id-ordered streams (MergeJoin), so it runs in constant memory at any size. It fails
// when a product of the snapshot is missing from the index or older there than in the
// snapshot, and when a live document exists that the database does not know.
func (ru *runner) validate(index string) error {
	s, ctx, id := ru.s, ru.ctx, ru.r.ID()
	page := s.cfg.ValidatePageSize
	var (
		missing, stale    []string
		unknown           []string
		checked, nMissing int64
		nStale, nUnknown  int64
	)
	rows := func(ctx context.Context, after string, limit int) ([]DocVersion, error) {
		rows, err := s.products.Recorded(ctx, id, after, limit)
		if err != nil {
			return nil, fmt.Errorf("validate: read snapshot: %w", err)
		}
		return rows, nil
	}
	docs := func(ctx context.Context, after string, limit int) ([]DocVersion, error) {
		docs, err := s.target.Documents(ctx, index, after, limit)
		if err != nil {
			return nil, fmt.Errorf("validate: read %s: %w", index, err)
		}
		return docs, nil
	}
	var extra []DocVersion // live documents the snapshot lacks: new since, or phantoms
	flushExtra := func(force bool) error {
		if len(extra) == 0 || (!force && len(extra) < page) {
			return nil
		}
		ids := make([]string, len(extra))
		for i, d := range extra {
			ids[i] = d.ID
		}
		known, err := s.products.Known(ctx, ids)
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		for _, d := range extra {
			if !known[d.ID] {
				nUnknown++
				unknown = appendSample(unknown, d.ID)
			}
		}
		extra = extra[:0]
		return nil
	}
	err := MergeJoin(ctx, rows, docs, page, func(row, doc *DocVersion) error {
		switch {
		case doc == nil:
			nMissing++
			missing = appendSample(missing, row.ID)
		case row == nil:
			if !doc.Deleted {
				extra = append(extra, *doc)
			}
		case doc.Version < row.Version:
			nStale++
			stale = appendSample(stale, fmt.Sprintf("%s (index v%d < database v%d)", row.ID, doc.Version, row.Version))
		}
		checked++
		if checked%int64(page) == 0 {
			// Documents done stay the fill's figure; validation only checks in (and
			// notices a cancel) while it merges.
			if err := ru.save(false); err != nil {
				return err
			}
		}
		return flushExtra(false)
	})
	if err != nil {
		return err
	}
	if err := flushExtra(true); err != nil {
		return err
	}
	if nMissing+nStale+nUnknown > 0 {
		var parts []string
		if nMissing > 0 {
			parts = append(parts, fmt.Sprintf("%d products missing from the new index (e.g. %s)", nMissing, strings.Join(missing, ", ")))
		}
		if nStale > 0 {
			parts = append(parts, fmt.Sprintf("%d documents older than the database (e.g. %s)", nStale, strings.Join(stale, ", ")))
		}
		if nUnknown > 0 {
			parts = append(parts, fmt.Sprintf("%d live documents the database does not know (e.g. %s)", nUnknown, strings.Join(unknown, ", ")))
		}
		return fmt.Errorf("%w: %s; the alias was not switched", rebuild.ErrValidation, strings.Join(parts, "; "))
	}
	ru.s.log.Info("rebuild: validation passed", "rebuild", id, "index", index, "checked", checked)
	return nil
}

func appendSample(s []string, v string) []string {
	if len(s) < 5 {
		return append(s, v)
	}
	return s
}
