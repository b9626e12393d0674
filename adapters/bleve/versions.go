package bleve

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/numeric"
	bleveindex "github.com/blevesearch/bleve_index_api"

	"github.com/marketplace/catalog/domain/readmodel"
)

// versionDocValuesMapping is the first mapping version that keeps doc values of version and
// deleted.
const versionDocValuesMapping = 4

// versionReader reads the version and tombstone flag of documents from one reader of an index:
// from the doc values of version and deleted where the index's mapping keeps them (a column of
// a few bytes per document, decoded a chunk at a time), or else from the stored fields, which
// decompresses each document whole. It is what every version check reads, so that the writer,
// validation and verify touch the columns and not the stored documents.
type versionReader struct {
	r   bleveindex.IndexReader
	dvr bleveindex.DocValueReader // nil: read stored fields
}

// docState is one live document's version and tombstone flag.
type docState struct {
	version int64
	deleted bool
}

// readVersions runs fn with a versionReader over a new reader of bi, the index named name, and
// closes the reader after it.
func readVersions(bi blevev2.Index, alias, name string, fn func(*versionReader) error) (err error) {
	adv, err := bi.Advanced()
	if err != nil {
		return err
	}
	r, err := adv.Reader()
	if err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	defer func() {
		if cerr := r.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close reader: %w", cerr)
		}
	}()
	vr, err := newVersionReader(r, alias, name)
	if err != nil {
		return err
	}
	return fn(vr)
}

// newVersionReader reads versions from r, a reader of the index named name.
func newVersionReader(r bleveindex.IndexReader, alias, name string) (*versionReader, error) {
	vr := &versionReader{r: r}
	if mv, _, ok := readmodel.ParseIndexName(alias, name); ok && mv >= versionDocValuesMapping {
		dvr, err := r.DocValueReader([]string{fieldVersion, fieldDeleted})
		if err != nil {
			return nil, fmt.Errorf("doc values of %s: %w", name, err)
		}
		vr.dvr = dvr
	}
	return vr, nil
}

// noneFrom reports whether the index has no document id at or after from (in byte order): then
// no id from there on has a stored version. It is one seek in each segment's id dictionary, where
// looking up each id of a batch is one per id and segment; a rebuild's fill writes ids in
// ascending order into a new index, so for it every batch is past the last id. The dictionary
// still holds the ids of deleted documents until their segments merge, which only makes it
// answer false more often.
func (vr *versionReader) noneFrom(from string) (none bool, err error) {
	dict, err := vr.r.FieldDictRange(idField, []byte(from), nil)
	if err != nil {
		return false, fmt.Errorf("ids from %q: %w", from, err)
	}
	defer func() {
		if cerr := dict.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	e, err := dict.Next()
	if err != nil {
		return false, fmt.Errorf("ids from %q: %w", from, err)
	}
	return e == nil, nil
}

// versions returns the stored version of each of ids that has a document (duplicates allowed).
// When every id comes after the index's last one (noneFrom) it looks nothing up.
func (vr *versionReader) versions(ids []string) (map[string]int64, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	out := make(map[string]int64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if none, err := vr.noneFrom(ids[0]); err != nil || none {
		return out, err
	}
	states, err := vr.states(ids)
	if err != nil {
		return nil, err
	}
	for i, s := range states {
		if s.version > 0 {
			out[ids[i]] = s.version
		}
	}
	return out, nil
}

// states returns the state of each of ids, in the same order; a document that does not exist
// has version 0. The documents are visited in the index's own order, which is the order the
// doc values are stored in, so each chunk of the column is decoded once per call.
func (vr *versionReader) states(ids []string) ([]docState, error) {
	out := make([]docState, len(ids))
	if vr.dvr == nil {
		for i, id := range ids {
			s, err := storedState(vr.r, id)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			out[i] = s
		}
		return out, nil
	}
	type found struct {
		at  int
		iid bleveindex.IndexInternalID
	}
	live := make([]found, 0, len(ids))
	for i, id := range ids {
		iid, err := vr.r.InternalID(id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if iid != nil {
			live = append(live, found{at: i, iid: slices.Clone(iid)})
		}
	}
	slices.SortFunc(live, func(a, b found) int { return bytes.Compare(a.iid, b.iid) })
	for _, f := range live {
		s, err := vr.docValues(f.iid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ids[f.at], err)
		}
		out[f.at] = s
	}
	return out, nil
}

// docValues decodes one document's version (the full-precision term of the numeric field,
// shift 0) and tombstone flag.
func (vr *versionReader) docValues(iid bleveindex.IndexInternalID) (docState, error) {
	var (
		s       docState
		badTerm error
	)
	err := vr.dvr.VisitDocValues(iid, func(field string, term []byte) {
		switch field {
		case fieldVersion:
			pc := numeric.PrefixCoded(term)
			if shift, err := pc.Shift(); err != nil || shift != 0 {
				return
			}
			i, err := pc.Int64()
			if err != nil {
				badTerm = fmt.Errorf("version term %x: %w", term, err)
				return
			}
			s.version = int64(numeric.Int64ToFloat64(i))
		case fieldDeleted:
			s.deleted = len(term) == 1 && term[0] == 'T'
		}
	})
	if err == nil {
		err = badTerm
	}
	if err == nil && s.version < 1 {
		err = errors.New("document without a version")
	}
	return s, err
}

// storedState reads id's version and tombstone flag from its stored fields (indices of mapping
// versions before doc values of version).
func storedState(r bleveindex.IndexReader, id string) (docState, error) {
	doc, err := r.Document(id)
	if err != nil || doc == nil {
		return docState{}, err
	}
	var (
		s     docState
		found bool
		ferr  error
	)
	doc.VisitFields(func(f bleveindex.Field) {
		switch f.Name() {
		case fieldVersion:
			nf, ok := f.(bleveindex.NumericField)
			if !ok {
				ferr = fmt.Errorf("stored version is a %T", f)
				return
			}
			n, err := nf.Number()
			if err != nil {
				ferr = err
				return
			}
			s.version, found = int64(n), true
		case fieldDeleted:
			if bf, ok := f.(bleveindex.BooleanField); ok {
				s.deleted, _ = bf.Boolean()
			}
		}
	})
	if ferr != nil {
		return docState{}, ferr
	}
	if !found {
		return docState{}, errors.New("document without a stored version")
	}
	return s, nil
}
