package grpcport

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Defaults of Config.
const (
	// DefaultAddr matches GRPC_ADDR's documented default (docs/ARCHITECTURE.md, "Public contract").
	DefaultAddr = "127.0.0.1:9090"
	// DefaultShutdownTimeout stays below Kubernetes' 30 s termination grace period, like the
	// HTTP port's, so both ports finish within one grace period.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultWatchPollInterval makes a progress bar look live without loading the database:
	// one indexed primary-key read per watcher three times a second.
	DefaultWatchPollInterval = 300 * time.Millisecond
)

// Config tunes the gRPC server. The zero value is usable: NewServer fills every zero field
// with its default before it validates.
type Config struct {
	// Addr is the TCP address to listen on (GRPC_ADDR). The default is loopback because the
	// admin port can delete indices: exposing it is a deliberate deployment decision, with
	// the admin token (Deps.Auth) or mutual TLS (Deps.ServerOptions).
	Addr string
	// ShutdownTimeout is how long Run lets in-flight calls finish after its context is
	// cancelled before it cuts the remaining ones off. Watch streams do not count against
	// it: they are ended at once with UNAVAILABLE, since a rebuild can outlast any grace
	// period and the client can watch again on another replica.
	ShutdownTimeout time.Duration
	// WatchPollInterval is how often WatchRebuild re-reads the rebuild record. The record
	// lives in the database (so any replica can report it) and has no change feed, so
	// watching is polling; shorter intervals give a smoother bar and more queries.
	WatchPollInterval time.Duration
}

// setDefaults fills zero fields, so callers state only what they change.
func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.WatchPollInterval == 0 {
		c.WatchPollInterval = DefaultWatchPollInterval
	}
}

// Validate reports every invalid field at once, so a misconfigured deployment fails at
// start-up with one message instead of one restart per mistake. NewServer calls it after
// filling defaults; zero values therefore only fail when Validate is called directly.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout must be positive, got %s", c.ShutdownTimeout))
	}
	if c.WatchPollInterval <= 0 {
		errs = append(errs, fmt.Errorf("watch poll interval must be positive, got %s", c.WatchPollInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("grpc config: %w", err)
	}
	return nil
}
