package httpport

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Defaults of Config. The timeouts bound how long a slow or malicious client can hold a
// connection and a goroutine; they are generous for a JSON API whose bodies are at most
// MaxBodyBytes.
const (
	// DefaultAddr matches HTTP_ADDR's documented default (docs/ARCHITECTURE.md, "Public contract").
	DefaultAddr = "127.0.0.1:8080"
	// DefaultMaxBodyBytes is 1 MiB: a product at every field limit is far smaller.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultReadHeaderTimeout is short because headers are small; slow ones are an attack.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout leaves room for a full body over a slow mobile link.
	DefaultReadTimeout = 15 * time.Second
	// DefaultWriteTimeout exceeds any handler's database work by a wide margin.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout keeps keep-alive connections long enough for load balancers' pools.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultShutdownTimeout stays below Kubernetes' 30 s termination grace period.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultSlowRequest is far above the API's normal latency (a write is a few
	// milliseconds), so a request that takes longer is worth a line at WARN.
	DefaultSlowRequest = time.Second
)

// Config tunes the HTTP server. The zero value is usable: NewServer fills every zero field
// with its default before it validates.
type Config struct {
	// Addr is the TCP address to listen on. The default is loopback so that a developer's
	// `catalog serve` never exposes the API to the network by accident.
	Addr string
	// MaxBodyBytes caps a request body. Larger bodies get 413 before they are decoded, so a
	// client cannot make the server buffer an unbounded document.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds the time to read request headers; it is the defence against
	// slowloris clients that trickle headers to hold connections open.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time to read a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request headers to the end of the
	// response. It must exceed the slowest handler, readiness checks (2 s) included.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection may sit idle, so idle clients do
	// not pin file descriptors forever.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Run lets in-flight requests finish after its context is
	// cancelled before it closes the remaining connections. Keep it below the orchestrator's
	// grace period (Kubernetes: 30 s) so the process exits on its own terms.
	ShutdownTimeout time.Duration
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS with this certificate and key
	// (HTTP_TLS_CERT_FILE, HTTP_TLS_KEY_FILE), for deployments without a TLS-terminating
	// proxy. NewServer reads them, so a bad file stops the process at start-up.
	TLSCertFile, TLSKeyFile string
	// SlowRequest is the duration from which a request is logged at WARN. Requests are logged
	// at DEBUG otherwise (one INFO line per request filled 68 MB of logs in 12 minutes under
	// load); 5xx answers are always logged at WARN.
	SlowRequest time.Duration
}

// setDefaults fills zero fields, so callers state only what they change.
func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.SlowRequest == 0 {
		c.SlowRequest = DefaultSlowRequest
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
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("max body bytes must be positive, got %d", c.MaxBodyBytes))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: a certificate needs its key and a key its certificate"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read header timeout", c.ReadHeaderTimeout},
		{"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout},
		{"idle timeout", c.IdleTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
		{"slow request", c.SlowRequest},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("http config: %w", err)
	}
	return nil
}
