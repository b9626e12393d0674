package console

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Defaults of Config.
const (
	// DefaultAddr is CONSOLE_ADDR's default on the command line.
	DefaultAddr = "127.0.0.1:8081"
	// DefaultShutdownTimeout matches the other ports', inside Kubernetes' grace period.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultSessionTTL is how long a login lasts: one on-call shift.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultSampleInterval is how often the charts' ring buffer samples the status: 360
	// samples make the last hour.
	DefaultSampleInterval = 10 * time.Second
	// DefaultHistory is how many samples the charts keep.
	DefaultHistory = 360
	// DefaultActionTimeout bounds an action a page waits for (a replay, a rollback, a verify).
	DefaultActionTimeout = 5 * time.Minute
	// maxSessions caps the sessions kept in memory, so a flood of logins cannot grow the
	// process without bound; the oldest session is dropped first.
	maxSessions = 1000
)

// Config tunes the console. The zero value is usable except for Addr: NewServer fills the
// other zero fields with their defaults before it validates.
type Config struct {
	// Addr is the TCP address to listen on (CONSOLE_ADDR).
	Addr string
	// ShutdownTimeout is how long Run lets in-flight requests finish after its context is
	// cancelled.
	ShutdownTimeout time.Duration
	// SessionTTL is how long a login stays valid.
	SessionTTL time.Duration
	// SampleInterval is how often the status is sampled for the charts.
	SampleInterval time.Duration
	// History is how many samples the charts keep.
	History int
	// ActionTimeout bounds the actions a page waits for.
	ActionTimeout time.Duration
	// TLSCertFile and TLSKeyFile, when set, serve the console over HTTPS
	// (CONSOLE_TLS_CERT_FILE, CONSOLE_TLS_KEY_FILE); the session cookie is then Secure.
	TLSCertFile, TLSKeyFile string
}

func (c *Config) setDefaults() {
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.ActionTimeout == 0 {
		c.ActionTimeout = DefaultActionTimeout
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
	}
	for name, d := range map[string]time.Duration{"shutdown timeout": c.ShutdownTimeout, "session ttl": c.SessionTTL,
		"sample interval": c.SampleInterval, "action timeout": c.ActionTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: want both the certificate and the key file, or neither"))
	}
	if c.History < 2 {
		errs = append(errs, fmt.Errorf("history must keep at least 2 samples, got %d", c.History))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("console config: %w", err)
	}
	return nil
}
