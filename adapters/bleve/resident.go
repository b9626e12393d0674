package bleve

import (
	"path/filepath"
	"time"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	segment "github.com/blevesearch/scorch_segment_api/v2"
	zapv17 "github.com/blevesearch/zapx/v17"
)

func init() {
	// Replaces scorch's default plugin, zap v17, under its own type and version, so indices
	// written before and after read alike.
	scorch.RegisterSegmentPlugin(releasingZap{&zapv17.ZapPlugin{}}, true)
}

// releasingZap is zap v17, the segment format scorch writes, except that a segment it opens
// gives the pages its opening touched back to the page cache at once. Opening a segment reads
// a little of every field's sections, and each read maps the pages around it too (the
// kernel's fault-around): some 3 MiB of a 15 MiB segment. A process opening the fifty-odd
// segments of a catalog of millions held 150 MiB and more of them before the first periodic
// release, and so does every persist and merge, which open the segment they wrote.
type releasingZap struct{ *zapv17.ZapPlugin }

// Open opens the segment at path (see OpenUsing).
func (p releasingZap) Open(path string) (segment.Segment, error) { return p.OpenUsing(path, nil) }

// OpenUsing opens the segment at path with zap and releases the pages that took.
func (p releasingZap) OpenUsing(path string, config map[string]any) (segment.Segment, error) {
	seg, err := p.ZapPlugin.OpenUsing(path, config)
	if err == nil {
		// Best effort: what is not released now is at the index's next periodic release.
		_ = releaseOpened(path)
	}
	return seg, err
}

// releaseResident runs until the index's writer ends, every cfg.ReleaseInterval dropping from
// the process's resident set the pages of the index's segment files it has mapped (see
// releaseMapped). Scorch reads its segments through read-only shared mappings, and a page once
// touched stays counted in the process's memory for as long as the segment is open: a merge
// reads its whole input, validation and verify read the id dictionary and version column of
// every segment, so without this the process's resident memory grows with the catalog (808 MiB
// at 5,000,000 products, of it 390 MiB of mapped index files). Released pages stay in the
// kernel's page cache, so touching one again costs a minor fault, not a read from disk.
func (ix *index) releaseResident() {
	if ix.cfg.ReleaseInterval < 0 {
		return
	}
	dir, err := kernelPath(ix.path) // the segments are files of ix.path
	if err != nil {
		return
	}
	t := time.NewTicker(ix.cfg.ReleaseInterval)
	defer t.Stop()
	lastFaults := int64(-1)
	for {
		select {
		case <-ix.done:
			return
		case <-t.C:
			// A page comes into the resident set by a fault: none since the last release,
			// nothing to release (an idle process stays idle).
			faults := minorFaults()
			if faults >= 0 && faults == lastFaults {
				continue
			}
			lastFaults = faults
			// A failure (the index closing meanwhile, /proc unreadable) leaves the pages
			// where they are, which is only memory; the next tick tries again.
			_ = ix.read(func(bi blevev2.Index) error { return releaseMapped(bi, ix.path, dir) })
		}
	}
}

// kernelPath is path as the kernel names a file it maps (in /proc/self/maps): absolute, with
// every symbolic link resolved.
func kernelPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
