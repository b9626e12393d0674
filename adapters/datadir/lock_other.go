//go:build !unix

package datadir

import (
	"errors"
	"fmt"
)

// Lock is not available where flock(2) does not exist.
type Lock struct{}

// Acquire fails where flock(2) does not exist: an embedded component refuses to run rather
// than risk two processes writing one directory.
func Acquire(dir, what string) (*Lock, error) {
	return nil, fmt.Errorf("%s %s: %w", what, dir, errors.New("exclusive directory locks need a unix system"))
}

// Release is a no-op.
func (l *Lock) Release() error { return nil }
