package bleve

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/readmodel"
)

// TestAliasFileIsCrashSafe interrupts an alias switch at each step of the file replacement, as
// a crash would, and reopens the directory: the alias names the old index until the rename,
// the new one after it, and is never missing or damaged; leftovers are removed.
func TestAliasFileIsCrashSafe(t *testing.T) {
	for _, step := range []string{"written", "synced", "renamed"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, Alias: "crash"}
			ctx := context.Background()
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			old, _, err := s.EnsureAlias(ctx)
			if err != nil {
				t.Fatal(err)
			}
			next, err := s.CreateIndex(ctx)
			if err != nil {
				t.Fatal(err)
			}
			aliasWriteHook = func(at string) error {
				if at == step {
					return errHookCrash
				}
				return nil
			}
			err = s.SwitchAlias(ctx, old, next)
			aliasWriteHook = nil
			if !errors.Is(err, errHookCrash) {
				t.Fatalf("SwitchAlias with a crash at %s = %v", step, err)
			}
			// The process "died" here: the temporary file, if any, stays behind.
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".crash.alias.json.tmp-*"))
			if step != "renamed" && len(leftovers) != 1 {
				t.Errorf("crash at %s left %v, want the temporary file", step, leftovers)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, err = Open(cfg)
			if err != nil {
				t.Fatalf("reopen after a crash at %s: %v", step, err)
			}
			defer func() { _ = s.Close() }()
			want := old
			if step == "renamed" {
				want = next
			}
			got, err := s.AliasTarget(ctx)
			if err != nil || got != want {
				t.Errorf("crash at %s: alias = %s, %v; want %s", step, got, err, want)
			}
			if _, err := s.Search(ctx, query.SearchProducts{}); err != nil {
				t.Errorf("crash at %s: search: %v", step, err)
			}
			leftovers, _ = filepath.Glob(filepath.Join(dir, ".crash*"))
			if len(leftovers) != 0 {
				t.Errorf("reopen left %v behind", leftovers)
			}
		})
	}
}

// TestHalfCreatedAndHalfDeletedIndicesAreCleanedUp simulates crashes inside CreateIndex and
// DeleteIndex: the hidden directories they work in are removed on the next Open and never
// listed.
func TestHalfCreatedAndHalfDeletedIndicesAreCleanedUp(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Alias: "half"}
	name := readmodel.IndexName("half", MappingVersion, time.Now())
	for _, p := range []string{"." + name, ".deleted-" + name + "-abc"} {
		if err := os.MkdirAll(filepath.Join(dir, p, "store"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s not removed", e.Name())
		}
	}
	infos, err := s.ListIndices(context.Background())
	if err != nil || len(infos) != 0 {
		t.Errorf("ListIndices = %+v, %v", infos, err)
	}
}

// TestDamagedIndexIsListedAndReplaceable: an index directory Bleve cannot open does not stop
// the read model; it is listed, refused as an alias target, and can be deleted.
func TestDamagedIndexIsListedAndReplaceable(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Alias: "damaged"}
	name := readmodel.IndexName("damaged", MappingVersion, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, "index_meta.json"), []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open with a damaged index: %v", err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	infos, err := s.ListIndices(ctx)
	if err != nil || len(infos) != 1 || infos[0].Name != name {
		t.Fatalf("ListIndices = %+v, %v", infos, err)
	}
	if err := s.SwitchAlias(ctx, "", name); err == nil {
		t.Errorf("SwitchAlias to a damaged index succeeded")
	}
	if _, err := s.Documents(ctx, name, "", 10); err == nil {
		t.Errorf("Documents of a damaged index succeeded")
	}
	if err := s.DeleteIndex(ctx, name); err != nil {
		t.Fatalf("DeleteIndex of a damaged index: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged index still on disk: %v", err)
	}
}

func TestCursorRejectsTamperedPositions(t *testing.T) {
	q, err := query.SearchProducts{Sort: query.SortPriceAsc}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	hash := q.Hash()
	price, big, score := int64(5), int64(1)<<60, 1.5
	enc := func(c cursor) string {
		raw, err := query.EncodeCursor(q.Sort, hash, c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// Another envelope format: the good cursor with its format field changed.
	otherFormat := func() string {
		raw, _ := base64.RawURLEncoding.DecodeString(enc(cursor{ID: "x", Value: &price}))
		return base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"f":1`), []byte(`"f":2`), 1))
	}
	for name, raw := range map[string]string{
		"no value":        enc(cursor{ID: "x"}),
		"score for price": enc(cursor{ID: "x", Score: &score}),
		"both":            enc(cursor{ID: "x", Value: &price, Score: &score}),
		"inexact value":   enc(cursor{ID: "x", Value: &big}),
		"no id":           enc(cursor{Value: &price}),
		"other format":    otherFormat(),
	} {
		if _, err := decodeCursor(raw, q.Sort, hash); !errors.Is(err, query.ErrInvalidCursor) {
			t.Errorf("%s: %v, want ErrInvalidCursor", name, err)
		}
	}
	if _, err := decodeCursor(enc(cursor{ID: "x", Value: &price}), q.Sort, hash); err != nil {
		t.Errorf("good cursor: %v", err)
	}
}
