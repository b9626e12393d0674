package securetest

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketplace/catalog/internal/testenv"
)

// SearchProxy stands in for a secured Elasticsearch cluster: a TLS-terminating reverse proxy
// (certificate of its own test CA) in front of the real search server of `make deps`, that
// admits a request only with the API key (Authorization: ApiKey <key>, the scheme
// case-insensitive as Elasticsearch takes it) or the basic-auth user, and answers anything
// else 401 with Elasticsearch's security_exception body. The real server sees no credentials.
type SearchProxy struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// CA signs Cert; clients trust it through ELASTICSEARCH_CA_FILE.
	CA *CA
	// Cert is the proxy's certificate (for fingerprint pinning).
	Cert Pair
	// APIKey, Username and Password are the credentials it admits.
	APIKey, Username, Password string

	admitted, refused atomic.Int64
	srv               *http.Server
}

// StartSearchProxy starts a proxy to target (the real server's http URL) for the test. With
// node set, it is another node of node's cluster: same CA, same credentials.
func StartSearchProxy(tb testing.TB, target string, node *SearchProxy) *SearchProxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	p := &SearchProxy{APIKey: base64.StdEncoding.EncodeToString([]byte("key-id:" + secret())), Username: "catalog-svc", Password: secret()}
	if node != nil {
		p.CA, p.APIKey, p.Username, p.Password = node.CA, node.APIKey, node.Username, node.Password
	} else {
		p.CA = NewCA(tb, tb.TempDir(), "search-test")
	}
	p.Cert = p.CA.Issue(tb, fmt.Sprintf("search-%d", time.Now().UnixNano()), "127.0.0.1", "localhost")
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Header.Del("Authorization")
	}}
	ln, err := net.Listen("tcp", testenv.Addr(tb))
	if err != nil {
		tb.Fatal(err)
	}
	p.URL = "https://" + ln.Addr().String()
	p.srv = &http.Server{Handler: p.guard(rp), TLSConfig: p.Cert.TLSConfig(tb), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// Admitted and Refused count the requests let through and answered 401.
func (p *SearchProxy) Admitted() int64 { return p.admitted.Load() }

// Refused counts the requests answered 401.
func (p *SearchProxy) Refused() int64 { return p.refused.Load() }

// Close stops the proxy: the node is down.
func (p *SearchProxy) Close() { _ = p.srv.Close() }

func (p *SearchProxy) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.authorized(r.Header.Get("Authorization")) {
			p.admitted.Add(1)
			next.ServeHTTP(w, r)
			return
		}
		p.refused.Add(1)
		w.Header().Set("WWW-Authenticate", `ApiKey, Basic realm="security" charset="UTF-8"`)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate for REST request [%s]"}],`+
			`"type":"security_exception","reason":"unable to authenticate for REST request [%s]"},"status":401}`, r.URL.Path, r.URL.Path)
	})
}

func (p *SearchProxy) authorized(h string) bool {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return false
	}
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	switch strings.ToLower(scheme) {
	case "apikey":
		return eq(cred, p.APIKey)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return false
		}
		user, pw, _ := strings.Cut(string(raw), ":")
		return eq(user, p.Username) && eq(pw, p.Password)
	}
	return false
}
