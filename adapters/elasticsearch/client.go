package elasticsearch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/internal/tlsfiles"
)

// NewClient returns a client for cfg.URL with the retry policy the read model relies on:
// connection errors, 429, 502, 503 and 504 are retried with exponential backoff (all requests of
// this package are idempotent: writes carry external versions). With cfg.Compat "opensearch" it
// accepts an OpenSearch server.
func NewClient(cfg Config) (*es8.Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	if cfg.URL == "" {
		return nil, errors.New("elasticsearch client: no URL")
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Without a response-header timeout a cluster that accepts connections but never answers
	// would hang bulk flushes, which run without a caller's context.
	base.ResponseHeaderTimeout = cfg.RequestTimeout
	// Bulk workers, searches and index management share the connections; the default of two
	// idle connections per host would make every burst open new ones.
	base.MaxIdleConnsPerHost = 64
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	if tc != nil {
		base.TLSClientConfig = tc
	}
	var rt http.RoundTripper = base
	if cfg.Compat == CompatOpenSearch {
		compat, err := NewCompatTransport(base, cfg.Compat)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch client: %w", err)
		}
		rt = compat
	}
	client, err := es8.NewClient(es8.Config{
		Addresses:     cfg.Addresses(),
		APIKey:        cfg.Credentials.APIKey,
		Username:      cfg.Credentials.Username,
		Password:      cfg.Credentials.Password,
		Transport:     rt,
		RetryOnStatus: []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
		MaxRetries:    max(cfg.MaxRetries, 0),
		DisableRetry:  cfg.MaxRetries < 0,
		RetryOnError: func(req *http.Request, err error) bool {
			// A caller that gave up must not be kept waiting by retries, and an untrusted
			// certificate stays untrusted: no retry delays that answer.
			var untrusted *tls.CertificateVerificationError
			return req.Context().Err() == nil && !errors.As(err, &untrusted)
		},
		RetryBackoff: retryBackoff,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return client, nil
}

// tlsConfig is the TLS of the cluster's connections: the CA bundle, the fingerprint pin, or
// both; nil for the defaults (system roots). It is built here rather than by go-elasticsearch
// (CACert, CertificateFingerprint) because the library only applies those to a bare
// *http.Transport, and its pin dials without the request's context or timeouts.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CAFingerprint == "" {
		return nil, nil
	}
	tc, err := tlsfiles.ClientConfig(c.CAFile, "", "")
	if err != nil {
		return nil, err
	}
	if c.CAFingerprint != "" {
		fp, err := tlsfiles.ParseSHA256Fingerprint(c.CAFingerprint)
		if err != nil {
			return nil, err
		}
		// Without a CA bundle the pin is the trust (a self-signed cluster CA, as
		// Elasticsearch sets up by default); with one, both must hold.
		tc.InsecureSkipVerify = c.CAFile == ""
		tc.VerifyConnection = tlsfiles.PinSHA256(fp)
	}
	return tc, nil
}

// ErrCredentialsRefused is in the chain of every error answer 401 or 403: the cluster does
// not accept the client's credentials, or they lack a privilege. Retrying does not help until
// the credentials change.
var ErrCredentialsRefused = errors.New("the search cluster refused the credentials")

// retryBackoff is exponential from 100ms, capped at 2s, with jitter so that many projector
// replicas do not retry in lockstep against a recovering cluster.
func retryBackoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 5)
	d = min(d, 2*time.Second)
	return d/2 + rand.N(d/2+1)
}

// esError is an error response of the cluster: its HTTP status and the error's type and reason.
type esError struct {
	Status    int
	Type      string
	Reason    string
	RootCause []esErrorCause
	CausedBy  *esErrorCause
}

type esErrorCause struct {
	Type     string        `json:"type"`
	Reason   string        `json:"reason"`
	CausedBy *esErrorCause `json:"caused_by"`
}

// Unwrap puts ErrCredentialsRefused in the chain of a 401 or 403 answer.
func (e *esError) Unwrap() error {
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		return ErrCredentialsRefused
	}
	return nil
}

func (e *esError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("status %d", e.Status)
	}
	msg := fmt.Sprintf("status %d: %s: %s", e.Status, e.Type, e.Reason)
	if e.CausedBy != nil && e.CausedBy.Reason != "" && e.CausedBy.Reason != e.Reason {
		msg += fmt.Sprintf(" (caused by %s: %s)", e.CausedBy.Type, e.CausedBy.Reason)
	}
	return msg
}

// hasType reports whether the error or any of its causes is of one of the given types.
func (e *esError) hasType(types ...string) bool {
	match := func(t string) bool {
		for _, want := range types {
			if t == want {
				return true
			}
		}
		return false
	}
	if match(e.Type) {
		return true
	}
	for c := e.CausedBy; c != nil; c = c.CausedBy {
		if match(c.Type) {
			return true
		}
	}
	for _, rc := range e.RootCause {
		for c := &rc; c != nil; c = c.CausedBy {
			if match(c.Type) {
				return true
			}
		}
	}
	return false
}

// responseError turns an error response into an *esError, keeping the body's error details.
// It reads at most 64 KiB of the body.
func responseError(res *esapi.Response) *esError {
	e := &esError{Status: res.StatusCode}
	if res.Body == nil {
		return e
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	parseErrorBody(e, body)
	return e
}

func parseErrorBody(e *esError, body []byte) {
	var parsed struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &parsed) != nil || len(parsed.Error) == 0 {
		if s := strings.TrimSpace(string(body)); s != "" {
			e.Reason = truncate(s, 500)
		}
		return
	}
	var detail struct {
		Type      string         `json:"type"`
		Reason    string         `json:"reason"`
		RootCause []esErrorCause `json:"root_cause"`
		CausedBy  *esErrorCause  `json:"caused_by"`
	}
	if json.Unmarshal(parsed.Error, &detail) != nil {
		// Some errors are a plain string.
		var s string
		_ = json.Unmarshal(parsed.Error, &s)
		e.Reason = truncate(s, 500)
		return
	}
	e.Type, e.Reason, e.RootCause, e.CausedBy = detail.Type, detail.Reason, detail.RootCause, detail.CausedBy
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// do performs an esapi request bounded by the request timeout, returns the decoded JSON body
// of a success into out (when not nil) and an *esError (wrapped) for an error response.
func do(ctx context.Context, client *es8.Client, timeout time.Duration, req esapi.Request, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := req.Do(ctx, client)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	if res.IsError() {
		return responseError(res)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// asESError returns the cluster's error response inside err, if any.
func asESError(err error) (*esError, bool) {
	var e *esError
	ok := errors.As(err, &e)
	return e, ok
}
