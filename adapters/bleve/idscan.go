package bleve

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	bleveindex "github.com/blevesearch/bleve_index_api"
	segment "github.com/blevesearch/scorch_segment_api/v2"
	"github.com/blevesearch/vellum"

	"github.com/marketplace/catalog/application/rebuild"
)

// liveDocuments returns up to limit of the live documents with id > after, in id order, with
// their versions and tombstone flags. ok is false when the reader is not a scorch snapshot with
// doc values of version (the caller then takes the slower path). The page may hold fewer than
// limit documents before the end of the index; an empty page is the end.
//
// It reads one segment at a time and gives each segment's mapped pages back once it is done
// with it, so what the walk holds resident is one segment's, however many segments there are.
// Merging the segments' id dictionaries side by side instead kept a few windows of every
// segment mapped at every moment (the dictionary position, the path from its root that each
// lookup walks, the doc values), which grew with the segment count: 32 MiB of segment pages
// with the 66 segments of a catalog of 5,000,000 against 9 MiB with the 14 of 200,000.
//
// Pass 1 gathers the limit smallest ids after after, reading the segments in the order of their
// first id there (a rebuilt index's segments each hold a range of ids, so then the first
// segment fills the page and the others are done at their first id) and each no further than
// the page's largest id; that only falls, so an id kept was recorded in every segment it is
// in, and a replaced document cannot hide the live one. Pass 2 looks the page's ids up in
// their segments' postings (skipping what a later write replaced), pass 3 reads their versions
// in the index's own order; both go segment by segment.
func (vr *versionReader) liveDocuments(after string, limit int) (out []rebuild.DocVersion, ok bool, err error) {
	snap, isSnap := vr.r.(*scorch.IndexSnapshot)
	if !isSnap || vr.dvr == nil {
		return nil, false, nil
	}
	for {
		out, last, end, err := vr.livePage(snap, after, limit)
		// A page whose every id was a replaced document's is not the end of the index.
		if err != nil || len(out) > 0 || end {
			return out, true, err
		}
		after = last
	}
}

// livePage reads one page for liveDocuments. last is the page's largest id, live or not; end
// is true when there is no id after after.
func (vr *versionReader) livePage(snap *scorch.IndexSnapshot, after string, limit int) (out []rebuild.DocVersion, last string, end bool, err error) {
	var start []byte
	if after != "" {
		start = append([]byte(after), 0) // the smallest id after it: the range start is inclusive
	}
	segs := snap.Segments()
	release := segmentReleaser(segs)
	ids, err := pageIDs(segs, start, limit, release)
	if err != nil {
		return nil, "", false, err
	}
	// Pass 2: the live document of each id, segment by segment.
	type found struct {
		at  int
		iid bleveindex.IndexInternalID
	}
	bySeg := make([][]int, len(segs)) // indexes into ids
	for at, id := range ids {
		bySeg[id.seg] = append(bySeg[id.seg], at)
		for _, i := range id.also {
			bySeg[i] = append(bySeg[i], at)
		}
	}
	bases := make([]uint64, len(segs))
	var base uint64
	for i, ss := range segs {
		bases[i] = base
		base += ss.Segment().Count() // scorch numbers documents across segments in this order
	}
	iids := make([]bleveindex.IndexInternalID, len(ids))
	for i, ats := range bySeg {
		if len(ats) == 0 {
			continue
		}
		dict, err := segs[i].Segment().Dictionary(idField)
		if err != nil {
			return nil, "", false, fmt.Errorf("id dictionary: %w", err)
		}
		for _, at := range ats {
			num, live, err := liveDoc(dict, ids[at].id, segs[i].Deleted())
			if err != nil {
				return nil, "", false, err
			}
			if live {
				iids[at] = bleveindex.NewIndexInternalID(nil, bases[i]+num)
			}
		}
		release(i)
	}
	var live []found
	for at, id := range ids {
		if iids[at] != nil {
			live = append(live, found{at: len(out), iid: iids[at]})
			out = append(out, rebuild.DocVersion{ID: id.id})
		}
	}
	// Pass 3, in the index's own order, so each chunk of the doc-value column is decoded once
	// and the segments come one after the other.
	slices.SortFunc(live, func(a, b found) int { return bytes.Compare(a.iid, b.iid) })
	seg := 0
	for _, f := range live {
		num := f.iid.Value()
		for seg+1 < len(bases) && num >= bases[seg+1] {
			release(seg)
			seg++
		}
		s, err := vr.docValues(f.iid)
		if err != nil {
			return nil, "", false, fmt.Errorf("%s: %w", out[f.at].ID, err)
		}
		out[f.at].Version, out[f.at].Deleted = s.version, s.deleted
	}
	release(-1)
	if len(ids) == 0 {
		return nil, "", true, nil
	}
	return out, ids[len(ids)-1].id, false, nil
}

// pageID is an id of a page and the segments it was found in.
type pageID struct {
	id   string
	seg  int   // the first segment read that has it
	also []int // the other ones, rarely any
}

// pageIDs returns the ids of the next page after start (inclusive), at most limit of them, in
// ascending order, each with the segments it is in (see liveDocuments, pass 1). release(i) is
// called whenever the walk is done with segs[i] for a while.
func pageIDs(segs []*scorch.SegmentSnapshot, start []byte, limit int, release func(int)) ([]pageID, error) {
	type cursor struct {
		seg   int
		itr   segment.DictionaryIterator
		first string
	}
	var cursors []cursor
	for i, ss := range segs {
		dict, err := ss.Segment().Dictionary(idField)
		if err != nil {
			return nil, fmt.Errorf("id dictionary: %w", err)
		}
		itr := dict.AutomatonIterator(&vellum.AlwaysMatch{}, start, nil)
		e, err := itr.Next()
		release(i)
		if err != nil {
			return nil, fmt.Errorf("id dictionary: %w", err)
		}
		if e != nil {
			cursors = append(cursors, cursor{seg: i, itr: itr, first: e.Term})
		}
	}
	slices.SortFunc(cursors, func(a, b cursor) int { return strings.Compare(a.first, b.first) })
	var page, run, merged []pageID
	for _, c := range cursors {
		full := len(page) == limit
		if full && c.first > page[len(page)-1].id {
			break // this segment and the ones after it start past the page
		}
		run = append(run[:0], pageID{id: c.first, seg: c.seg})
		for len(run) < limit {
			e, err := c.itr.Next()
			if err != nil {
				return nil, fmt.Errorf("id dictionary: %w", err)
			}
			if e == nil || (full && e.Term > page[len(page)-1].id) {
				break
			}
			run = append(run, pageID{id: e.Term, seg: c.seg})
		}
		release(c.seg)
		merged = mergePage(merged[:0], page, run, limit)
		page, merged = merged, page
	}
	return page, nil
}

// mergePage merges the ascending ids of a and b into dst, an id in both once with the segments
// of both, and keeps the limit smallest.
func mergePage(dst, a, b []pageID, limit int) []pageID {
	for len(dst) < limit && (len(a) > 0 || len(b) > 0) {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].id < b[0].id):
			dst, a = append(dst, a[0]), a[1:]
		case len(a) == 0 || b[0].id < a[0].id:
			dst, b = append(dst, b[0]), b[1:]
		default:
			id := a[0]
			id.also = append(append(slices.Clip(id.also), b[0].seg), b[0].also...)
			dst, a, b = append(dst, id), a[1:], b[1:]
		}
	}
	return dst
}

// liveDoc returns the segment's document number of id unless a later write replaced that
// document (deleted).
func liveDoc(dict segment.TermDictionary, id string, deleted *roaring.Bitmap) (num uint64, live bool, err error) {
	pl, err := dict.PostingsList([]byte(id), deleted, nil)
	if err != nil {
		return 0, false, fmt.Errorf("postings of %s: %w", id, err)
	}
	p, err := pl.Iterator(false, false, false, nil).Next()
	if err != nil || p == nil {
		return 0, false, err
	}
	return p.Number(), true, nil
}
