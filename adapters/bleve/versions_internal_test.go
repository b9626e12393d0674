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
	c := context.Background()
	s, name := openWithIndex(t, Config{Alias: "pages", MaxBatchDocs: 7})
	ids := make([]product.ID, 40)
	for i := range ids {
		ids[i] = readmodeltest.NewID()
	}
	for round := range 4 { // batches of 7: many segments, each round replacing some of the last
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
	for _, limit := range []int{1, 3, 16, 100} {
		after := ""
		for {
			var fast, slow []rebuild.DocVersion
			err := ix.read(func(bi blevev2.Index) error {
				if err := readVersions(bi, s.cfg.Alias, name, func(vr *versionReader) error {
					var ok bool
					var err error
					if fast, ok, err = vr.liveDocuments(after, limit); err == nil && !ok {
						t.Fatal("a scorch index with doc values did not take the dictionary walk")
					}
					return err
				}); err != nil {
					return err
				}
				ids, _, err := idsAfter(bi, after, limit)
				if err != nil {
					return err
				}
				slow, err = docVersions(bi, s.cfg.Alias, name, ids)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			// The lookup's page may be short by the ids whose documents are all gone.
			if len(fast) < len(slow) || !slices.Equal(fast[:len(slow)], slow) {
				t.Fatalf("limit %d after %q:\n walk   %+v\n lookup %+v", limit, after, fast, slow)
			}
			if len(fast) == 0 {
				break
			}
			after = fast[len(fast)-1].ID
		}
	}
}
