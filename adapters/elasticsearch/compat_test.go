package elasticsearch_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	es8 "github.com/elastic/go-elasticsearch/v8"

	"github.com/marketplace/catalog/adapters/elasticsearch"
)

// compatFakeOpenSearch answers like OpenSearch: JSON, no X-Elastic-Product header (unless product is
// set), and 406 for the Elasticsearch-only compatible-with media types. It records the last
// request's Accept and Content-Type.
type compatFakeOpenSearch struct {
	product string

	mu                  sync.Mutex
	accept, contentType string
}

func (f *compatFakeOpenSearch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.accept, f.contentType = r.Header.Get("Accept"), r.Header.Get("Content-Type")
	f.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	if f.product != "" {
		w.Header().Set("X-Elastic-Product", f.product)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if strings.Contains(r.Header.Get("Content-Type"), "vnd.elasticsearch") {
		w.WriteHeader(http.StatusNotAcceptable)
		_, _ = io.WriteString(w, `{"error":"Content-Type header is not supported","status":406}`)
		return
	}
	_, _ = io.WriteString(w, `{"name":"n","cluster_name":"c","version":{"distribution":"opensearch","number":"2.19.1"}}`)
}

func (f *compatFakeOpenSearch) last() (accept, contentType string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accept, f.contentType
}

func compatServer(t *testing.T, f *compatFakeOpenSearch) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

// compatGet sends one GET through rt and returns the response headers (the body is drained
// and closed here).
func compatGet(t *testing.T, rt http.RoundTripper, url string, header http.Header) http.Header {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.Header
}

func TestNewCompatTransportDefaultReturnsBaseUnchanged(t *testing.T) {
	base := &http.Transport{}
	rt, err := elasticsearch.NewCompatTransport(base, "")
	if err != nil {
		t.Fatalf("mode \"\": %v", err)
	}
	if rt != http.RoundTripper(base) {
		t.Fatalf("mode \"\" must return base itself, got %T", rt)
	}

	srv := compatServer(t, &compatFakeOpenSearch{})
	hdr := compatGet(t, rt, srv.URL, nil)
	if got := hdr.Get("X-Elastic-Product"); got != "" {
		t.Fatalf("default mode added X-Elastic-Product=%q", got)
	}
}

func TestNewCompatTransportRejectsUnknownMode(t *testing.T) {
	for _, mode := range []string{"elasticsearch", "opensearch2", "true", "on"} {
		rt, err := elasticsearch.NewCompatTransport(http.DefaultTransport, mode)
		if err == nil {
			t.Fatalf("mode %q: want an error, got transport %T", mode, rt)
		}
		if !strings.Contains(err.Error(), `"opensearch"`) || !strings.Contains(err.Error(), mode) {
			t.Fatalf("mode %q: error should name the mode and the accepted values, got: %v", mode, err)
		}
	}
}

func TestOpenSearchModeAddsProductHeaderWhenAbsent(t *testing.T) {
	srv := compatServer(t, &compatFakeOpenSearch{})
	for _, mode := range []string{"opensearch", " OpenSearch "} {
		rt, err := elasticsearch.NewCompatTransport(http.DefaultTransport, mode)
		if err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
		hdr := compatGet(t, rt, srv.URL, nil)
		if got := hdr.Get("X-Elastic-Product"); got != "Elasticsearch" {
			t.Fatalf("mode %q: X-Elastic-Product = %q, want Elasticsearch", mode, got)
		}
	}
}

func TestOpenSearchModeKeepsProductHeaderTheServerSent(t *testing.T) {
	srv := compatServer(t, &compatFakeOpenSearch{product: "SomethingElse"})
	rt, err := elasticsearch.NewCompatTransport(nil, "opensearch") // nil base: http.DefaultTransport
	if err != nil {
		t.Fatal(err)
	}
	hdr := compatGet(t, rt, srv.URL, nil)
	if got := hdr.Get("X-Elastic-Product"); got != "SomethingElse" {
		t.Fatalf("X-Elastic-Product = %q, want the server's own value", got)
	}
}

func TestOpenSearchModeRewritesCompatibleWithMediaTypes(t *testing.T) {
	f := &compatFakeOpenSearch{}
	srv := compatServer(t, f)
	rt, err := elasticsearch.NewCompatTransport(http.DefaultTransport, "opensearch")
	if err != nil {
		t.Fatal(err)
	}
	const compat = "application/vnd.elasticsearch+json;compatible-with=8"
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/_search", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", compat)
	req.Header.Set("Content-Type", compat)
	res, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", res.StatusCode)
	}
	accept, ct := f.last()
	if accept != "application/json" || ct != "application/json" {
		t.Fatalf("server saw Accept=%q Content-Type=%q, want application/json for both", accept, ct)
	}
	if req.Header.Get("Accept") != compat || req.Header.Get("Content-Type") != compat {
		t.Fatal("the caller's request was modified")
	}
}

// TestGoElasticsearchNeedsTheOptIn shows the reason for the transport with the real client: its
// product check rejects an OpenSearch-like server by default and accepts it with "opensearch".
func TestGoElasticsearchNeedsTheOptIn(t *testing.T) {
	srv := compatServer(t, &compatFakeOpenSearch{})

	plain, err := es8.NewClient(es8.Config{Addresses: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := plain.Info()
	if err == nil {
		_ = res.Body.Close()
		t.Fatal("go-elasticsearch accepted a server without X-Elastic-Product; the compat transport may be unnecessary now")
	}
	if !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Fatalf("unexpected error without compat: %v", err)
	}

	rt, err := elasticsearch.NewCompatTransport(http.DefaultTransport, "opensearch")
	if err != nil {
		t.Fatal(err)
	}
	compat, err := es8.NewClient(es8.Config{Addresses: []string{srv.URL}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	res, err = compat.Info()
	if err != nil {
		t.Fatalf("with compat opensearch: %v", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.IsError() {
		t.Fatalf("with compat opensearch: %s", res.Status())
	}
}
