//go:build linux

package bleve

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"golang.org/x/sys/unix"
)

// releaseMapped tells the kernel that the process no longer needs the pages it has mapped of
// bi's segment files (bi is the index opened at path, dir is path resolved, as the kernel names
// the mapped files). Only the segments of a snapshot held open for the duration are advised,
// so none of their mappings can be closed (and its addresses reused) meanwhile.
func releaseMapped(bi blevev2.Index, path, dir string) (err error) {
	paths, closeSnap, err := segmentPaths(bi, path, dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeSnap(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return releaseFiles(paths)
}

// releaseOpened releases the pages the opening of the segment file at path touched; the caller
// holds the segment open.
func releaseOpened(path string) error {
	resolved, err := kernelPath(path)
	if err != nil {
		return err
	}
	return releaseFiles(map[string]bool{resolved: true})
}

// releaseFiles advises MADV_DONTNEED on every mapping of paths in /proc/self/maps. The
// mappings are read-only and shared, so their pages leave the process's resident set and stay
// in the page cache; the next access maps them again from there. The caller guarantees that
// the files stay mapped until it returns.
func releaseFiles(paths map[string]bool) error {
	if len(paths) == 0 {
		return nil
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := mappingOf(sc.Text(), paths)
		if !ok {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("madvise %x-%x: %w", start, end, errno)
		}
	}
	return sc.Err()
}

// minorFaults is the number of page faults the process has taken that needed no disk read,
// which is how a mapped page of the page cache enters its resident set; -1 if unknown.
func minorFaults() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Minflt
}

// mappingOf parses one line of /proc/self/maps ("start-end perms offset dev inode path") and
// reports the address range when it maps one of paths.
func mappingOf(line string, paths map[string]bool) (start, end uintptr, ok bool) {
	path, start, end, ok := mappedRange(line)
	return start, end, ok && paths[path]
}

// mappedRange parses one line of /proc/self/maps into the mapped file's path and the address
// range; ok is false for a line that maps no file.
func mappedRange(line string) (path string, start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return "", 0, 0, false
	}
	path = strings.TrimSuffix(strings.Join(f[5:], " "), " (deleted)")
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return "", 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return "", 0, 0, false
	}
	return path, uintptr(s), uintptr(e), true
}

// segmentReleaser returns a function that gives back the pages this process has mapped of the
// file of segs[i] (of every one of segs for -1), as releaseFiles does. The caller holds the
// snapshot segs belong to for as long as it uses the function, so none of them is unmapped
// meanwhile. Best effort: where the mappings cannot be found it does nothing.
func segmentReleaser(segs []*scorch.SegmentSnapshot) func(i int) {
	which := make(map[string]int, len(segs))
	for i, ss := range segs {
		if p, ok := ss.Segment().(interface{ Path() string }); ok && p.Path() != "" {
			if resolved, err := kernelPath(p.Path()); err == nil {
				which[resolved] = i
			}
		}
	}
	ranges := make([][][2]uintptr, len(segs))
	if len(which) > 0 {
		if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(maps))
			for sc.Scan() {
				if path, start, end, ok := mappedRange(sc.Text()); ok {
					if i, ok := which[path]; ok {
						ranges[i] = append(ranges[i], [2]uintptr{start, end})
					}
				}
			}
		}
	}
	advise := func(rs [][2]uintptr) {
		for _, r := range rs {
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
		}
	}
	return func(i int) {
		if i >= 0 {
			advise(ranges[i])
			return
		}
		for _, rs := range ranges {
			advise(rs)
		}
	}
}

// segmentPaths returns the paths of the persisted segment files of bi's current snapshot, the
// index opened at path, as files under dir, path resolved. It also returns the snapshot's
// Close, which the caller calls once it is done with the paths: while the snapshot is open,
// none of its segments is closed and unmapped.
func segmentPaths(bi blevev2.Index, path, dir string) (map[string]bool, func() error, error) {
	adv, err := bi.Advanced()
	if err != nil {
		return nil, nil, err
	}
	r, err := adv.Reader()
	if err != nil {
		return nil, nil, fmt.Errorf("reader: %w", err)
	}
	paths := map[string]bool{}
	if snap, ok := r.(*scorch.IndexSnapshot); ok {
		for _, ss := range snap.Segments() {
			if p, ok := ss.Segment().(interface{ Path() string }); ok && p.Path() != "" {
				if rel, err := filepath.Rel(path, p.Path()); err == nil {
					paths[filepath.Join(dir, rel)] = true
				}
			}
		}
	}
	return paths, r.Close, nil
}
