package bleve

import (
	"bufio"
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	blevev2 "github.com/blevesearch/bleve/v2"
)

// mappingHeader is the address range that begins each mapping's lines in /proc/self/smaps.
var mappingHeader = regexp.MustCompile(`^[0-9a-f]+-[0-9a-f]+$`)

// mappedResident is the resident memory of this process's mappings of segment files (scorch's
// *.zap) in dir, from /proc/self/smaps.
func mappedResident(t *testing.T, dir string) (kib int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && mappingHeader.MatchString(fields[0]):
			// A mapping's first line; anonymous ones have no path.
			path := strings.TrimSuffix(strings.Join(fields[min(5, len(fields)):], " "), " (deleted)")
			in = strings.HasPrefix(path, dir+string(filepath.Separator)) && strings.HasSuffix(path, ".zap")
		case in && len(fields) == 3 && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			kib += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kib
}

// mergesSettled waits until ix's segments have stayed the same for a second: scorch's merger
// works behind the writes, and a merge reads (maps) whole segments.
func mergesSettled(t *testing.T, ix *index) {
	t.Helper()
	segments := func() (paths map[string]bool) {
		err := ix.read(func(bi blevev2.Index) error {
			var closeSnap func() error
			var err error
			if paths, closeSnap, err = segmentPaths(bi, ix.path, ix.path); err != nil {
				return err
			}
			return closeSnap()
		})
		if err != nil {
			t.Fatal(err)
		}
		return paths
	}
	last, since := segments(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Since(since) < time.Second; {
		if time.Now().After(deadline) {
			t.Fatal("scorch's merges did not settle within 30s")
		}
		time.Sleep(100 * time.Millisecond)
		if now := segments(); !maps.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
}

// settledIndex opens a store with cfg in a new directory (its path resolved, as the kernel
// names the files it maps), writes products documents into an index of it and waits for
// scorch's merges to settle. It returns cfg with the directory.
func settledIndex(c context.Context, t *testing.T, cfg Config, products int) (*Store, Config, string, *index) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = root
	s, name := openWithIndex(t, cfg)
	for chunk := range slices.Chunk(throughputSnapshots(t, products), 5_000) {
		if err := s.Write(c, name, chunk); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := s.named(name)
	if err != nil {
		t.Fatal(err)
	}
	mergesSettled(t, ix)
	return s, cfg, name, ix
}

// Reading an index maps its segment files into the process; releasing them takes them out of
// the process's resident memory, and the index reads the same afterwards (the pages come back
// from the page cache). With a release interval the index does so by itself.
func TestMappedSegmentPagesAreReleased(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{
		{"released on demand", -1},
		{"released every interval", 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const products = 20_000
			s, cfg, name, ix := settledIndex(c, t, Config{Alias: "resident", ReleaseInterval: tc.interval}, products)
			dir := filepath.Join(cfg.Dir, name)
			// Reads every document by id, as a search would, through the index's mappings
			// (Documents gives its pages back by itself).
			readAll := func() int {
				t.Helper()
				n, after := 0, ""
				err := ix.read(func(bi blevev2.Index) error {
					for {
						ids, _, err := idsAfter(bi, after, MaxDocumentsPage)
						if err != nil || len(ids) == 0 {
							return err
						}
						docs, err := docVersions(bi, s.cfg.Alias, name, ids)
						if err != nil {
							return err
						}
						n, after = n+len(docs), ids[len(ids)-1]
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			if tc.interval < 0 {
				if n := readAll(); n != products {
					t.Fatalf("read %d documents, want %d", n, products)
				}
				before := mappedResident(t, dir)
				if before == 0 {
					t.Fatal("reading the index left none of its files resident: nothing to release")
				}
				if err := ix.read(func(bi blevev2.Index) error { return releaseMapped(bi, ix.path, dir) }); err != nil {
					t.Fatal(err)
				}
				if after := mappedResident(t, dir); after > before/10 {
					t.Fatalf("%d KiB of the index's files resident after the release, %d KiB before", after, before)
				}
				t.Logf("index files resident: %d KiB after reading, %d KiB after the release", before, mappedResident(t, dir))
			} else {
				deadline := time.Now().Add(10 * time.Second)
				for {
					if n := readAll(); n != products {
						t.Fatalf("read %d documents, want %d", n, products)
					}
					touched := mappedResident(t, dir)
					time.Sleep(100 * time.Millisecond)
					if after := mappedResident(t, dir); touched > 0 && after == 0 {
						t.Logf("index files resident: %d KiB after reading, 0 within 100ms", touched)
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the index's files stay resident (%d KiB) with a release every %s", mappedResident(t, dir), tc.interval)
					}
				}
			}
			// Every document reads the same after its pages were released.
			if n := readAll(); n != products {
				t.Fatalf("after the release read %d documents, want %d", n, products)
			}
		})
	}
}

// Opening a segment touches a little of every field's sections, and the kernel maps the pages
// around each touch too; the segment plugin gives them back as soon as the segment is open, so
// a process opening a large index does not hold a slice of every segment until the first
// periodic release.
func TestOpenedSegmentsAreReleased(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, cfg, name, _ := settledIndex(c, t, Config{Alias: "opened", ReleaseInterval: -1, MaxBatchDocs: 2_000}, 20_000)
	root := cfg.Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ix, err := s.named(name)
	if err != nil {
		t.Fatal(err)
	}
	var segments int
	err = ix.read(func(bi blevev2.Index) error {
		paths, closeSnap, err := segmentPaths(bi, ix.path, filepath.Join(root, name))
		segments = len(paths)
		if err == nil {
			err = closeSnap()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// What scorch touches after a segment is open (its footer, say) stays: a page or two each.
	if kib := mappedResident(t, filepath.Join(root, name)); segments == 0 || kib > 64*segments {
		t.Fatalf("%d KiB of the index's %d segments resident right after opening it", kib, segments)
	} else {
		t.Logf("%d KiB of the index's %d segments resident right after opening it", kib, segments)
	}
}

// A walk of every document (validation, verify) reads one segment at a time and gives each
// segment's pages back when it is done with it: between two pages nothing of the index is left
// resident, without any periodic release. Reading all segments side by side kept a few
// windows of each of them mapped, which grew with the segment count.
func TestDocumentsWalkGivesSegmentPagesBack(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const products = 20_000
	s, cfg, name, ix := settledIndex(c, t, Config{Alias: "walk", ReleaseInterval: -1, MaxBatchDocs: 2_000}, products)
	dir := filepath.Join(cfg.Dir, name)
	if err := ix.read(func(bi blevev2.Index) error { return releaseMapped(bi, ix.path, dir) }); err != nil {
		t.Fatal(err)
	}
	n, pages, most := 0, 0, 0
	for after := ""; ; pages++ {
		page, err := s.Documents(c, name, after, 1_000)
		if err != nil {
			t.Fatal(err)
		}
		kib := mappedResident(t, dir)
		most = max(most, kib)
		if kib > 0 {
			t.Fatalf("%d KiB of the index's segments resident after page %d of the walk", kib, pages+1)
		}
		if len(page) == 0 {
			break
		}
		n, after = n+len(page), page[len(page)-1].ID
	}
	if n != products {
		t.Fatalf("the walk read %d documents, want %d", n, products)
	}
	t.Logf("%d documents in %d pages, at most %d KiB of segments resident between pages", n, pages, most)
}
