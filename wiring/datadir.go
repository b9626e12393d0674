package wiring

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/marketplace/catalog/service"
)

// ensureDataDir makes sure the embedded components can keep their state under
// CATALOG_DATA_DIR before either starts, and otherwise says what to do: a container running as
// a non-root user whose image did not prepare the directory otherwise fails deep inside the
// broker or the search engine with a bare "mkdir ...: permission denied".
func ensureDataDir(cfg service.Config) error {
	dir := cfg.DataDir
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".write-check-*"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return nil
		}
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("CATALOG_DATA_DIR=%s is not writable by this process (uid %d): create it owned by that user, mount a writable volume there, or set CATALOG_DATA_DIR to a writable directory; or configure KAFKA_BROKERS and ELASTICSEARCH_URL, which need no data directory: %w",
			dir, os.Getuid(), err)
	}
	return fmt.Errorf("CATALOG_DATA_DIR=%s: %w", dir, err)
}
