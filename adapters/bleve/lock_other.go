//go:build !unix

package bleve

import (
	"errors"
	"fmt"
	"os"
)

// lockDir is not implemented where flock(2) does not exist: the embedded engine refuses to
// run rather than risk two processes writing one index.
func lockDir(dir string) (*os.File, error) {
	return nil, fmt.Errorf("lock %s: %w", dir, errors.New("exclusive directory locks need a unix system"))
}

func unlockDir(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
