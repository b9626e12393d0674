package rebuild

import (
	"fmt"
	"strings"

	"github.com/marketplace/catalog/domain/rebuild"
)

// validate compares the new index with the database snapshot the rebuild recorded, by a merge
// of two id-ordered streams, so it runs in constant memory at any size. It fails when a
// product of the snapshot is missing from the index or older there than in the snapshot, and
// when a live document exists that the database does not know.
func (ru *runner) validate(index string) error {
	s, ctx, id := ru.s, ru.ctx, ru.r.ID()
	page := s.cfg.ValidatePageSize
	var (
		rows, docs         []DocVersion
		rowAfter, docAfter string
		rowsDone, docsDone bool
		missing, stale     []string
		unknown            []string
		checked, nMissing  int64
		nStale, nUnknown   int64
	)
	next := func() error {
		if len(rows) == 0 && !rowsDone {
			var err error
			if rows, err = s.products.Recorded(ctx, id, rowAfter, page); err != nil {
				return fmt.Errorf("validate: read snapshot: %w", err)
			}
			if len(rows) < page {
				rowsDone = true
			}
			if len(rows) > 0 {
				rowAfter = rows[len(rows)-1].ID
			}
		}
		if len(docs) == 0 && !docsDone {
			var err error
			if docs, err = s.target.Documents(ctx, index, docAfter, page); err != nil {
				return fmt.Errorf("validate: read %s: %w", index, err)
			}
			if len(docs) < page {
				docsDone = true
			}
			if len(docs) > 0 {
				docAfter = docs[len(docs)-1].ID
			}
		}
		return nil
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
	for {
		if err := next(); err != nil {
			return err
		}
		if len(rows) == 0 && len(docs) == 0 {
			break
		}
		switch {
		case len(docs) == 0 || (len(rows) > 0 && rows[0].ID < docs[0].ID):
			nMissing++
			missing = appendSample(missing, rows[0].ID)
			rows = rows[1:]
		case len(rows) == 0 || docs[0].ID < rows[0].ID:
			if !docs[0].Deleted {
				extra = append(extra, docs[0])
			}
			docs = docs[1:]
		default:
			if docs[0].Version < rows[0].Version {
				nStale++
				stale = appendSample(stale, fmt.Sprintf("%s (index v%d < database v%d)", rows[0].ID, docs[0].Version, rows[0].Version))
			}
			rows, docs = rows[1:], docs[1:]
		}
		checked++
		if checked%int64(page) == 0 {
			ru.r.Progress(checked, ru.r.Snapshot().DocsTotal, s.cfg.Now())
			if err := ru.save(false); err != nil {
				return err
			}
		}
		if err := flushExtra(false); err != nil {
			return err
		}
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
