package bleve

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	blevev2 "github.com/blevesearch/bleve/v2"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// MappingVersion is the mapping version of the indices CreateIndex creates.
func (s *Store) MappingVersion() int { return MappingVersion }

// AliasTarget returns the index the alias points at, or an error wrapping rebuild.ErrNoAlias
// (and ErrAliasNotFound) when there is no alias.
func (s *Store) AliasTarget(context.Context) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", fmt.Errorf("rebuild target: %w", err)
	}
	name := s.aliasTarget()
	if name == "" {
		return "", fmt.Errorf("rebuild target: alias %s: %w: %w", s.cfg.Alias, rebuild.ErrNoAlias, ErrAliasNotFound)
	}
	return name, nil
}

// CreateIndex creates an empty index with the current mapping and returns its name,
// {alias}_v{M}_{YYYYMMDD}_{HHMMSS} (UTC; the next free second when the name is taken). The
// alias is not touched. Bleve has nothing like Elasticsearch's bulk-load settings: an index is
// always as fast to load as it gets.
func (s *Store) CreateIndex(ctx context.Context) (string, error) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return "", fmt.Errorf("rebuild target: %w", err)
	}
	name, err := s.createIndex(ctx, MappingVersion)
	if err != nil {
		return "", fmt.Errorf("rebuild target: create index: %w", err)
	}
	return name, nil
}

// RestoreSettings only checks that index exists: Bleve indices have no refresh interval or
// replicas that a bulk load would change.
func (s *Store) RestoreSettings(_ context.Context, index string) error {
	if _, err := s.named(index); err != nil {
		return fmt.Errorf("rebuild target: restore settings: %w", err)
	}
	return nil
}

// Refresh only checks that index exists ("" means the alias): a Bleve write is searchable when
// it returns, there is no refresh interval to wait for.
func (s *Store) Refresh(_ context.Context, index string) error {
	var err error
	if index == "" || index == s.cfg.Alias {
		_, err = s.live()
	} else {
		_, err = s.named(index)
	}
	if err != nil {
		return fmt.Errorf("rebuild target: refresh: %w", err)
	}
	return nil
}

// Write stores docs in index, by name, with the live projection's version semantics: an older
// version than the stored one loses, an equal one is a no-op, and within one call the highest
// version of an id wins. It returns once every document is persisted and searchable; any
// failure fails the call, so a rebuild never misses documents silently. Concurrent calls are
// safe and share batches with each other and with Apply.
func (s *Store) Write(ctx context.Context, index string, docs []product.Snapshot) error {
	if len(docs) == 0 {
		return nil
	}
	ix, err := s.named(index)
	if err != nil {
		return fmt.Errorf("rebuild target: write: %w", err)
	}
	if ix.openErr != nil {
		return fmt.Errorf("rebuild target: write: %w", ix.openErr)
	}
	ps := make([]prepared, len(docs))
	for i, d := range docs {
		p, err := ix.prepare(d)
		if err != nil {
			return fmt.Errorf("rebuild target: write %s: document %d: %w", index, i, err)
		}
		ps[i] = p
	}
	if err := ix.write(ctx, ps); err != nil {
		return fmt.Errorf("rebuild target: write %d documents to %s: %w", len(docs), index, err)
	}
	return nil
}

// Documents returns up to limit (at most MaxDocumentsPage) of index's documents with
// id > afterID in ascending id order: id, version and whether it is a tombstone.
//
// The ids come from the index's term dictionary of document ids, which is sorted byte-wise
// (the order of Go strings and of the database's uuid) and is read from afterID on: a page
// costs the same however deep it is, so paging through an index is linear in its size. (A
// match-all search sorted by id with search_after visits every document for every page, which
// makes a full scan quadratic: hours at a few million documents.) The page's versions and
// tombstone flags are then read by id (see versionReader).
func (s *Store) Documents(ctx context.Context, index, afterID string, limit int) ([]rebuild.DocVersion, error) {
	if limit < 1 {
		return nil, fmt.Errorf("rebuild target: documents of %s: limit %d must be positive", index, limit)
	}
	limit = min(limit, MaxDocumentsPage)
	ix, err := s.named(index)
	if err != nil {
		return nil, fmt.Errorf("rebuild target: documents: %w", err)
	}
	var out []rebuild.DocVersion
	err = ix.read(func(bi blevev2.Index) error {
		var ok bool
		err := readVersions(bi, s.cfg.Alias, ix.name, func(vr *versionReader) (err error) {
			out, ok, err = vr.liveDocuments(afterID, limit)
			return err
		})
		if err != nil || ok {
			return err
		}
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			ids, more, err := idsAfter(bi, afterID, limit)
			if err != nil || len(ids) == 0 {
				return err
			}
			out, err = docVersions(bi, s.cfg.Alias, ix.name, ids)
			// An id whose every document was removed is still in the dictionary until its
			// segments are merged: a page of only those is no reason to end the stream.
			if err != nil || len(out) > 0 || !more {
				return err
			}
			afterID = ids[len(ids)-1]
		}
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild target: documents of %s after %q: %w", index, afterID, err)
	}
	return out, nil
}

// idsAfter reads up to limit document ids greater than after from bi's id dictionary, in
// ascending byte order; more is false when the dictionary has no ids beyond them.
func idsAfter(bi blevev2.Index, after string, limit int) (ids []string, more bool, err error) {
	var start []byte
	if after != "" {
		start = append([]byte(after), 0) // the smallest id after it: the range start is inclusive
	}
	dict, err := bi.FieldDictRange(idField, start, nil)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if cerr := dict.Close(); err == nil {
			err = cerr
		}
	}()
	ids = make([]string, 0, limit)
	for len(ids) < limit {
		e, err := dict.Next()
		if err != nil {
			return nil, false, err
		}
		if e == nil {
			return ids, false, nil
		}
		ids = append(ids, e.Term)
	}
	return ids, true, nil
}

// idField is the field Bleve indexes every document's id under.
const idField = "_id"

// docVersions reads the version and tombstone flag of the documents with ids, in id order;
// ids without a live document are left out.
func docVersions(bi blevev2.Index, alias, name string, ids []string) (out []rebuild.DocVersion, err error) {
	err = readVersions(bi, alias, name, func(vr *versionReader) error {
		states, err := vr.states(ids)
		if err != nil {
			return err
		}
		out = make([]rebuild.DocVersion, 0, len(ids))
		for i, s := range states {
			if s.version > 0 {
				out = append(out, rebuild.DocVersion{ID: ids[i], Version: s.version, Deleted: s.deleted})
			}
		}
		return nil
	})
	return out, err
}

// SwitchAlias points the alias from one index to another atomically: the alias file is replaced
// crash-safely and readers and writers move over at once. When the alias no longer points at
// from, nothing changes and the error wraps domain ErrAliasMoved; from == "" sets the alias
// only where none exists. A switch that finds the alias already on to succeeds, so a retry of a
// switch whose answer was lost is harmless. to must be an index CreateIndex made (its recorded
// mapping version matches its name).
func (s *Store) SwitchAlias(_ context.Context, from, to string) error {
	if from == to {
		return fmt.Errorf("rebuild target: switch alias: from and to are both %q", to)
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if from != "" {
		if err := s.ownIndex(from); err != nil {
			return fmt.Errorf("rebuild target: switch alias: %w", err)
		}
	}
	ix, err := s.named(to)
	if err != nil {
		return fmt.Errorf("rebuild target: switch alias %s -> %s: %w", from, to, err)
	}
	if err := checkMapping(s.cfg.Alias, ix); err != nil {
		return fmt.Errorf("rebuild target: switch alias %s -> %s: %w", from, to, err)
	}
	switch current := s.aliasTarget(); {
	case current == to:
		return nil
	case current != from && current == "":
		return fmt.Errorf("rebuild target: alias %s no longer exists, expected it on %s: %w", s.cfg.Alias, from, readmodel.ErrAliasMoved)
	case current != from:
		return fmt.Errorf("rebuild target: alias %s points at %s, not %q: %w", s.cfg.Alias, current, from, readmodel.ErrAliasMoved)
	}
	if err := s.setAlias(to); err != nil {
		return fmt.Errorf("rebuild target: switch alias %s -> %s: %w", from, to, err)
	}
	return nil
}

// checkMapping verifies that ix was created by CreateIndex with the mapping version its name
// states.
func checkMapping(alias string, ix *index) error {
	want, _, _ := readmodel.ParseIndexName(alias, ix.name)
	return ix.read(func(bi blevev2.Index) error {
		raw, err := bi.GetInternal(mappingVersionKey)
		if err != nil {
			return fmt.Errorf("mapping version of %s: %w", ix.name, err)
		}
		got, err := strconv.Atoi(string(raw))
		if err != nil || got != want {
			return fmt.Errorf("%s does not have mapping version %d (recorded %q): it was not created by CreateIndex", ix.name, want, raw)
		}
		return nil
	})
}

// DeleteIndex deletes one of the alias's indices; it refuses the one the alias points at
// (ErrIndexInUse). Queued writes to it are committed first; the directory is renamed out of
// the way before it is removed, so a crash never leaves half an index under a valid name.
func (s *Store) DeleteIndex(_ context.Context, index string) error {
	if err := s.ownIndex(index); err != nil {
		return fmt.Errorf("rebuild target: delete index: %w", err)
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("rebuild target: delete index %s: %w", index, ErrClosed)
	}
	if s.alias == index {
		s.mu.Unlock()
		return fmt.Errorf("rebuild target: delete index %s: %w", index, ErrIndexInUse)
	}
	ix, ok := s.indices[index]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("rebuild target: delete index %s: %w", index, ErrIndexNotFound)
	}
	delete(s.indices, index)
	s.mu.Unlock()
	cerr := ix.close(ErrIndexNotFound)
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	trash := filepath.Join(s.cfg.Dir, ".deleted-"+index+"-"+hex.EncodeToString(suffix[:]))
	if err := os.Rename(ix.path, trash); err != nil {
		return fmt.Errorf("rebuild target: delete index %s: %w", index, errors.Join(err, cerr))
	}
	_ = fsyncPath(s.cfg.Dir)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("rebuild target: delete index %s: %w", index, err)
	}
	return nil
}

// ListIndices lists the alias's indices, newest first (by the time in the name), with their
// live and tombstone counts and which one the alias points at. An index that cannot be opened
// is listed with zero counts, so an operator can see it and prune it.
func (s *Store) ListIndices(ctx context.Context) ([]rebuild.IndexInfo, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("rebuild target: list indices: %w", ErrClosed)
	}
	all := make([]*index, 0, len(s.indices))
	for _, ix := range s.indices {
		all = append(all, ix)
	}
	alias := s.alias
	s.mu.RUnlock()
	out := make([]rebuild.IndexInfo, 0, len(all))
	for _, ix := range all {
		m, created, _ := readmodel.ParseIndexName(s.cfg.Alias, ix.name)
		info := rebuild.IndexInfo{Name: ix.name, MappingVersion: m, Created: created, Aliased: ix.name == alias}
		if ix.openErr == nil {
			live, tombstones, err := counts(ctx, ix)
			if err != nil && !errors.Is(err, ErrIndexNotFound) {
				return nil, fmt.Errorf("rebuild target: list indices: %w", err)
			}
			if errors.Is(err, ErrIndexNotFound) {
				continue // deleted meanwhile
			}
			info.Live, info.Tombstones = live, tombstones
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b rebuild.IndexInfo) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.Name, a.Name))
	})
	return out, nil
}

// counts returns the live and tombstone documents of ix.
func counts(ctx context.Context, ix *index) (live, tombstones int64, err error) {
	err = ix.read(func(bi blevev2.Index) error {
		all, err := bi.DocCount()
		if err != nil {
			return err
		}
		q := blevev2.NewBoolFieldQuery(false)
		q.SetField(fieldDeleted)
		req := blevev2.NewSearchRequestOptions(q, 0, 0, false)
		req.Score = blevev2.ScoreNone
		res, err := bi.SearchInContext(ctx, req)
		if err != nil {
			return err
		}
		live = int64(res.Total)
		tombstones = int64(all) - live
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("count %s: %w", ix.name, err)
	}
	return live, tombstones, nil
}
