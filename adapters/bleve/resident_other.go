//go:build !linux

package bleve

import (
	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
)

// releaseMapped does nothing where there is no /proc/self/maps: the mapped pages stay resident
// until the kernel reclaims them.
func releaseMapped(blevev2.Index, string, string) error { return nil }

// minorFaults is unknown here.
func minorFaults() int64 { return -1 }

// releaseOpened does nothing here (see releaseMapped).
func releaseOpened(string) error { return nil }

// segmentReleaser gives back nothing here (see releaseMapped).
func segmentReleaser([]*scorch.SegmentSnapshot) func(int) { return func(int) {} }
