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
				adv, err := bi.Advanced()
				if err != nil {
					return err
				}
				r, err := adv.Reader()
				if err != nil {
					return err
				}
				defer func() { _ = r.Close() }()
				vr, err := newVersionReader(r, s.cfg.Alias, name)
				if err != nil {
					return err
				}
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
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
