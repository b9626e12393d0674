package bleve

import (
	"context"
	"fmt"
	"slices"
	"testing"

	blevev2 "github.com/blevesearch/bleve/v2"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// Indices of the current mapping answer version checks from the doc values of version and
// deleted, older ones from the stored fields; both answer alike: an older write loses, a
// tombstone is reported as one, and several segments (one per Write) are read in id order.
func TestVersionsFromDocValuesAndFromStoredFields(t *testing.T) {
	for _, mv := range []int{versionDocValuesMapping - 1, versionDocValuesMapping} {
		t.Run(fmt.Sprintf("mapping v%d", mv), func(t *testing.T) {
			c := context.Background()
			s, err := Open(Config{Dir: t.TempDir(), Alias: "versions"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			s.adminMu.Lock()
			name, err := s.createIndex(c, mv)
			s.adminMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]product.ID, 6)
			for i := range ids {
				ids[i] = readmodeltest.NewID()
			}
			slices.Sort(ids)
			write := func(ps ...readmodeltest.Product) {
				t.Helper()
				snaps := make([]product.Snapshot, len(ps))
				for i, p := range ps {
					snaps[i] = p.Snapshot(t)
				}
				if err := s.Write(c, name, snaps); err != nil {
					t.Fatal(err)
				}
			}
			// Written in three batches (segments), not in id order.
			write(readmodeltest.Product{ID: ids[4], Version: 2}, readmodeltest.Product{ID: ids[1], Version: 1})
			write(readmodeltest.Product{ID: ids[0], Version: 7}, readmodeltest.Product{ID: ids[3], Version: 1},
				readmodeltest.Product{ID: ids[5], Version: 1 << 40})
			write(readmodeltest.Product{ID: ids[1], Version: 3, Deleted: true}, readmodeltest.Product{ID: ids[4], Version: 1},
				readmodeltest.Product{ID: ids[3], Version: 5})
			got, err := s.Documents(c, name, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			want := []rebuild.DocVersion{
				{ID: string(ids[0]), Version: 7},
				{ID: string(ids[1]), Version: 3, Deleted: true},
				{ID: string(ids[3]), Version: 5},
				{ID: string(ids[4]), Version: 2},
				{ID: string(ids[5]), Version: 1 << 40},
			}
			if !slices.Equal(got, want) {
				t.Fatalf("Documents =\n%+v\nwant\n%+v", got, want)
			}
			ix, err := s.named(name)
			if err != nil {
				t.Fatal(err)
			}
			err = ix.read(func(bi blevev2.Index) error {
				return readVersions(bi, s.cfg.Alias, name, func(vr *versionReader) error {
					if fromDocValues := vr.dvr != nil; fromDocValues != (mv >= versionDocValuesMapping) {
						t.Errorf("mapping v%d read from doc values: %v", mv, fromDocValues)
					}
					states, err := vr.states([]string{string(ids[2]), string(ids[5]), string(ids[1])})
					if err != nil {
						return err
					}
					if w := []docState{{}, {version: 1 << 40}, {version: 3, deleted: true}}; !slices.Equal(states, w) {
						t.Errorf("states = %+v, want %+v", states, w)
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// noneFrom answers from the id dictionary whether any id at or after a given one exists: what
// lets the writer skip the per-document version lookups of a batch of ids past the last one.
func TestNoneFromSeesEveryIDAtOrAfter(t *testing.T) {
	c := context.Background()
	s, name := openWithIndex(t, Config{Alias: "nonefrom"})
	ids := []product.ID{"01000000-0000-7000-8000-000000000001", "01000000-0000-7000-8000-000000000002", "01000000-0000-7000-8000-000000000003"}
	// Two segments: the last id alone in the second.
	for _, batch := range [][]product.ID{ids[:2], ids[2:]} {
		var snaps []product.Snapshot
		for _, id := range batch {
			snaps = append(snaps, readmodeltest.Product{ID: id, Version: 1}.Snapshot(t))
		}
		if err := s.Write(c, name, snaps); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := s.named(name)
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]bool{
		"":                                      false,
		string(ids[0]):                          false,
		"01000000-0000-7000-8000-0000000000025": false, // between the second and the third
		string(ids[2]):                          false,
		string(ids[2]) + "\x00":                 true,
		"ffffffff":                              true,
	} {
		err := ix.read(func(bi blevev2.Index) error {
			return readVersions(bi, s.cfg.Alias, name, func(vr *versionReader) error {
				none, err := vr.noneFrom(from)
				if err == nil && none != want {
					t.Errorf("noneFrom(%q) = %v, want %v", from, none, want)
				}
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Documents walks every segment's id dictionary (liveDocuments) rather than looking each id up
// in every segment; page by page it must answer what the lookup does, across segments where
// later writes replaced documents of earlier ones.
func TestLiveDocumentsPagesAsTheIDLookupDoes(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		products, batch, rounds int   // batch: documents per segment written
		limits                  []int // page sizes
	}{
		// Pages larger than the segments, each id in several of them.
		{"small segments", 40, 7, 4, []int{1, 3, 16, 100}},
		// Segments larger than the pages, each id in several of them.
		{"large segments", 3_000, 250, 4, []int{1, 7, 100, 1_000}},
		// As a rebuild writes them: each segment a range of ids (the ids are ordered by time).
		{"a range of ids per segment", 2_000, 250, 1, []int{7, 100, 1_000}},
	} {
		t.Run(tc.name, func(t *testing.T) { livePagesAsLookup(t, tc.products, tc.batch, tc.rounds, tc.limits) })
	}
}

// livePagesAsLookup writes products in rounds of batches, each round replacing some of the
// last round's documents and deleting others, and pages through the index with each limit.
func livePagesAsLookup(t *testing.T, products, batch, rounds int, limits []int) {
	c := context.Background()
	s, name := openWithIndex(t, Config{Alias: "pages", MaxBatchDocs: batch})
	ids := make([]product.ID, products)
	for i := range ids {
		ids[i] = readmodeltest.NewID()
	}
	for round := range rounds { // many segments, each round replacing some of the last
		var snaps []product.Snapshot
		for i, id := range ids {
			if (i+round)%3 != 0 {
				snaps = append(snaps, readmodeltest.Product{ID: id, Version: int64(1 + round), Deleted: (i+round)%5 == 0}.Snapshot(t))
			}
		}
		if err := s.Write(c, name, snaps); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := s.named(name)
	if err != nil {
		t.Fatal(err)
	}
	// page reads the next page after after with the dictionary walk (walk) or by looking the
	// ids up (the reference).
	page := func(after string, limit int, walk bool) (out []rebuild.DocVersion) {
		t.Helper()
		err := ix.read(func(bi blevev2.Index) error {
			if !walk {
				for {
					ids, more, err := idsAfter(bi, after, limit)
					if err != nil || len(ids) == 0 {
						return err
					}
					if out, err = docVersions(bi, s.cfg.Alias, name, ids); err != nil || len(out) > 0 || !more {
						return err
					}
					after = ids[len(ids)-1]
				}
			}
			return readVersions(bi, s.cfg.Alias, name, func(vr *versionReader) error {
				var ok bool
				var err error
				if out, ok, err = vr.liveDocuments(after, limit); err == nil && !ok {
					t.Fatal("a scorch index with doc values did not take the dictionary walk")
				}
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var want []rebuild.DocVersion
	for after := ""; ; {
		p := page(after, MaxDocumentsPage, false)
		if len(p) == 0 {
			break
		}
		want, after = append(want, p...), p[len(p)-1].ID
	}
	for _, limit := range limits {
		var got []rebuild.DocVersion
		pages := 0
		for after := ""; ; pages++ {
			p := page(after, limit, true)
			if len(p) > limit {
				t.Fatalf("limit %d after %q: a page of %d", limit, after, len(p))
			}
			if len(p) == 0 {
				break
			}
			got, after = append(got, p...), p[len(p)-1].ID
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: the walk read %d documents, the lookup %d:\n walk   %+v\n lookup %+v", limit, len(got), len(want), got, want)
		}
		// A page may end early, where a segment's share of it ran out, but not often.
		if most := 3*((len(want)+limit-1)/limit) + 1; pages > most {
			t.Fatalf("limit %d: %d documents in %d pages, want at most %d", limit, len(want), pages, most)
		}
	}
}
