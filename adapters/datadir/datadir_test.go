//go:build unix

package datadir_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/marketplace/catalog/adapters/datadir"
)

func TestAcquireIsExclusiveAndNamesTheHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "kafka") // created on demand
	l, err := datadir.Acquire(dir, "test directory")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil || strings.TrimSpace(string(raw)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("LOCK holds %q (%v), want our pid", raw, err)
	}
	// flock locks belong to open files, so a second open in this process conflicts too.
	_, err = datadir.Acquire(dir, "test directory")
	if !errors.Is(err, datadir.ErrLocked) {
		t.Fatalf("second Acquire = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "test directory "+dir) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q names neither the directory nor the holder", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release = %v, want a no-op", err)
	}
	l2, err := datadir.Acquire(dir, "test directory")
	if err != nil {
		t.Fatalf("Acquire after Release = %v", err)
	}
	_ = l2.Release()
	var nilLock *datadir.Lock
	if err := nilLock.Release(); err != nil {
		t.Fatalf("nil Release = %v", err)
	}
}
