package elasticsearch_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/internal/readmodeltest"
	"github.com/marketplace/catalog/internal/securetest"
	"github.com/marketplace/catalog/internal/testenv"
)

// TestSecuredCluster runs the read model (alias management, projection, search) against a
// cluster that requires TLS and credentials, with each way of trusting and authenticating
// the client offers: CA file + API key, fingerprint pin + basic auth, and several node URLs.
func TestSecuredCluster(t *testing.T) {
	target, _ := testenv.ElasticsearchURL(t)
	proxy := securetest.StartSearchProxy(t, target, nil)
	second := securetest.StartSearchProxy(t, target, proxy) // another "node" of the same cluster
	for name, mutate := range map[string]func(*elasticsearch.Config){
		"CA file and API key": func(c *elasticsearch.Config) {
			c.URL, c.CAFile, c.Credentials = proxy.URL, proxy.CA.CertFile, elasticsearch.Credentials{APIKey: proxy.APIKey}
		},
		"CA fingerprint and basic auth": func(c *elasticsearch.Config) {
			c.URL, c.CAFingerprint = proxy.URL, proxy.CA.Fingerprint()
			c.Credentials = elasticsearch.Credentials{Username: proxy.Username, Password: proxy.Password}
		},
		"leaf fingerprint with colons": func(c *elasticsearch.Config) {
			c.URL, c.CAFingerprint, c.Credentials = proxy.URL, proxy.Cert.Fingerprint(), elasticsearch.Credentials{APIKey: proxy.APIKey}
		},
		"two nodes": func(c *elasticsearch.Config) {
			c.URL, c.CAFile, c.Credentials = proxy.URL+", "+second.URL, proxy.CA.CertFile, elasticsearch.Credentials{APIKey: proxy.APIKey}
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := proxy.Admitted() + second.Admitted()
			e := rmSetup(t, mutate)
			e.ensure()
			p := readmodeltest.Product{ID: readmodeltest.NewID(), Name: "Secure lamp"}
			if err := e.projection().Apply(e.ctx(), p.Snapshot(t)); err != nil {
				t.Fatalf("apply through the secured cluster: %v", err)
			}
			e.refresh()
			res, err := e.search().Search(e.ctx(), query.SearchProducts{Text: "secure", Size: 10})
			if err != nil || res.Total != 1 {
				t.Fatalf("search through the secured cluster: %+v, %v", res, err)
			}
			if proxy.Admitted()+second.Admitted() == before {
				t.Fatal("nothing went through the proxy")
			}
		})
	}
	if proxy.Refused() != 0 || second.Refused() != 0 {
		t.Errorf("the proxies refused %d requests of clients with the right credentials", proxy.Refused()+second.Refused())
	}
	if second.Admitted() == 0 {
		t.Error("with two node URLs every request went to the first node")
	}
}

// TestSecuredClusterRefusals: a wrong key, no credentials, an untrusted certificate and a
// wrong pin are errors that say so, and they come quickly (not after the retries of a
// transient failure). The key never appears in them.
func TestSecuredClusterRefusals(t *testing.T) {
	target, compat := testenv.ElasticsearchURL(t)
	proxy := securetest.StartSearchProxy(t, target, nil)
	const wrongKey = "d3Jvbmc6a2V5LW5ldmVyLXNob3du" // base64 "wrong:key-never-shown"
	for name, tc := range map[string]struct {
		cfg   elasticsearch.Config
		check func(error) bool
	}{
		"wrong API key": {elasticsearch.Config{CAFile: proxy.CA.CertFile, Credentials: elasticsearch.Credentials{APIKey: wrongKey}},
			func(err error) bool { return errors.Is(err, elasticsearch.ErrCredentialsRefused) }},
		"no credentials": {elasticsearch.Config{CAFile: proxy.CA.CertFile},
			func(err error) bool { return errors.Is(err, elasticsearch.ErrCredentialsRefused) }},
		"wrong password": {elasticsearch.Config{CAFile: proxy.CA.CertFile, Credentials: elasticsearch.Credentials{Username: proxy.Username, Password: "nope"}},
			func(err error) bool { return errors.Is(err, elasticsearch.ErrCredentialsRefused) }},
		"untrusted certificate": {elasticsearch.Config{Credentials: elasticsearch.Credentials{APIKey: proxy.APIKey}},
			func(err error) bool { var v *tls.CertificateVerificationError; return errors.As(err, &v) }},
		"wrong fingerprint": {elasticsearch.Config{CAFingerprint: strings.Repeat("ab", 32), Credentials: elasticsearch.Credentials{APIKey: proxy.APIKey}},
			func(err error) bool {
				var v *tls.CertificateVerificationError
				return errors.As(err, &v) && strings.Contains(err.Error(), "fingerprint mismatch")
			}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.URL, cfg.Compat, cfg.Alias = proxy.URL, compat, strings.ToLower(testenv.Name("secrefused"))
			_, ix := rmIndices(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, _, err := ix.EnsureAlias(ctx)
			if err == nil || !tc.check(err) {
				t.Fatalf("EnsureAlias: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusal took %s", d)
			}
			if strings.Contains(err.Error(), wrongKey) || strings.Contains(err.Error(), proxy.APIKey) {
				t.Fatalf("the key is in the error: %v", err)
			}
		})
	}
	// A refused credential is an outage of the read model for the search API (503), not a
	// server fault (500).
	cfg := elasticsearch.Config{URL: proxy.URL, Compat: compat, CAFile: proxy.CA.CertFile, Alias: strings.ToLower(testenv.Name("secrefused")),
		Credentials: elasticsearch.Credentials{APIKey: wrongKey}}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := elasticsearch.NewSearch(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(context.Background(), query.SearchProducts{Size: 1}); !errors.Is(err, query.ErrReadModelUnavailable) {
		t.Fatalf("search with refused credentials: %v, want ErrReadModelUnavailable", err)
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	c := elasticsearch.Credentials{APIKey: "k-never-shown", Username: "u", Password: "p-never-shown"}
	cfg := elasticsearch.Config{URL: "https://es:9200", Credentials: c}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "credentials", c, "cfg", cfg)
	out := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, c) + b.String()
	if strings.Contains(out, "never-shown") {
		t.Fatalf("a secret is printed: %s", out)
	}
	if err := (elasticsearch.Config{URL: "https://a:9200,http://b:9200"}).Validate(); err == nil {
		t.Error("mixed schemes accepted")
	}
	if err := (elasticsearch.Config{URL: "https://a:9200", Credentials: c}).Validate(); err == nil {
		t.Error("an API key and a user at once accepted")
	}
	if err := (elasticsearch.Config{URL: "http://a:9200", CAFingerprint: strings.Repeat("ab", 32)}).Validate(); err == nil {
		t.Error("a fingerprint over http accepted")
	}
}
