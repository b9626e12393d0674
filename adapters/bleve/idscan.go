package bleve

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	bleveindex "github.com/blevesearch/bleve_index_api"
	segment "github.com/blevesearch/scorch_segment_api/v2"
	"github.com/blevesearch/vellum"

	"github.com/marketplace/catalog/application/rebuild"
)

// liveDocuments returns up to limit of the live documents with id > after, in id order, with
// their versions and tombstone flags. ok is false when the reader is not a scorch snapshot with doc values of version (the caller then
// takes the slower path).
//
// It walks each segment's id dictionary from after on, merging the segments by id, and takes
// a document's internal id from its segment's postings, skipping what a later segment
// replaced. Looking an id up through the index instead asks every segment for it: with the
// fifty-odd segments of a catalog of millions that is fifty dictionary lookups per document,
// scattered over every segment's dictionary, and they kept the whole dictionary of every
// segment resident while a verify or validation ran (265 MiB at 5,000,000 documents).
func (vr *versionReader) liveDocuments(after string, limit int) (out []rebuild.DocVersion, ok bool, err error) {
	snap, isSnap := vr.r.(*scorch.IndexSnapshot)
	if !isSnap || vr.dvr == nil {
		return nil, false, nil
	}
	var start []byte
	if after != "" {
		start = append([]byte(after), 0) // the smallest id after it: the range start is inclusive
	}
	cursors := &idCursors{}
	var base uint64
	for _, ss := range snap.Segments() {
		seg := ss.Segment()
		c := &idCursor{deleted: ss.Deleted(), base: base}
		base += seg.Count() // scorch numbers documents across segments in this order
		if c.dict, err = seg.Dictionary(idField); err != nil {
			return nil, true, fmt.Errorf("id dictionary: %w", err)
		}
		c.itr = c.dict.AutomatonIterator(&vellum.AlwaysMatch{}, start, nil)
		if found, err := c.next(); err != nil {
			return nil, true, err
		} else if found {
			heap.Push(cursors, c)
		}
	}
	type found struct {
		at  int
		iid bleveindex.IndexInternalID
	}
	var live []found
	for cursors.Len() > 0 && len(out) < limit {
		c := (*cursors)[0]
		num, isLive, err := c.liveDoc()
		if err != nil {
			return nil, true, err
		}
		if isLive {
			live = append(live, found{at: len(out), iid: bleveindex.NewIndexInternalID(nil, c.base+num)})
			out = append(out, rebuild.DocVersion{ID: c.term})
		}
		if next, err := c.next(); err != nil {
			return nil, true, err
		} else if next {
			heap.Fix(cursors, 0)
		} else {
			heap.Pop(cursors)
		}
	}
	// Visited in the index's own order, so each chunk of the doc-value column is decoded once.
	slices.SortFunc(live, func(a, b found) int { return bytes.Compare(a.iid, b.iid) })
	for _, f := range live {
		s, err := vr.docValues(f.iid)
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", out[f.at].ID, err)
		}
		out[f.at].Version, out[f.at].Deleted = s.version, s.deleted
	}
	return out, true, nil
}

// idCursor is one segment's position in its id dictionary.
type idCursor struct {
	dict    segment.TermDictionary
	itr     segment.DictionaryIterator
	deleted *roaring.Bitmap // the segment's documents a later write replaced
	base    uint64          // the internal number of the segment's first document
	term    string          // the current id
}

// next moves to the next id; false at the end of the dictionary.
func (c *idCursor) next() (bool, error) {
	e, err := c.itr.Next()
	if err != nil {
		return false, fmt.Errorf("id dictionary: %w", err)
	}
	if e == nil {
		return false, nil
	}
	c.term = e.Term
	return true, nil
}

// liveDoc returns the segment's document number of the current id unless a later write
// replaced that document.
func (c *idCursor) liveDoc() (num uint64, live bool, err error) {
	pl, err := c.dict.PostingsList([]byte(c.term), c.deleted, nil)
	if err != nil {
		return 0, false, fmt.Errorf("postings of %s: %w", c.term, err)
	}
	p, err := pl.Iterator(false, false, false, nil).Next()
	if err != nil || p == nil {
		return 0, false, err
	}
	return p.Number(), true, nil
}

// idCursors is a heap of segment cursors ordered by their current id.
type idCursors []*idCursor

func (h idCursors) Len() int           { return len(h) }
func (h idCursors) Less(i, j int) bool { return h[i].term < h[j].term }
func (h idCursors) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// Push adds a cursor (container/heap).
func (h *idCursors) Push(x any) { *h = append(*h, x.(*idCursor)) }

// Pop removes the last cursor (container/heap).
func (h *idCursors) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
