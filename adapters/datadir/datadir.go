// Package datadir guards a local state directory of an embedded component (the search
// engine's indices, the embedded broker's log) with an exclusive lock, so two catalog
// processes pointed at one CATALOG_DATA_DIR never write the same files.
package datadir

import "errors"

// ErrLocked means another process (another `catalog serve`, say) holds the directory.
var ErrLocked = errors.New("data directory is locked by another process")

// lockFileName is the file whose lock marks the owner of a directory.
const lockFileName = "LOCK"
