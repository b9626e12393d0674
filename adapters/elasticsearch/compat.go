package elasticsearch

import (
	"fmt"
	"net/http"
	"strings"
)

// productHeader is the response header by which go-elasticsearch/v8 recognises a genuine
// Elasticsearch server, and productElasticsearch the value it insists on.
const (
	productHeader        = "X-Elastic-Product"
	productElasticsearch = "Elasticsearch"
)

// NewCompatTransport returns the HTTP transport the search client must use for the server kind
// named by mode (ELASTICSEARCH_COMPAT).
//
// Why it exists: go-elasticsearch/v8 refuses to work with any server whose successful responses
// lack `X-Elastic-Product: Elasticsearch` ("the client noticed that the server is not
// Elasticsearch and we do not support this unknown product"). OpenSearch speaks the same REST API
// for everything this service uses (indices, aliases, bulk with external versions, search) but
// does not send that header, so the unmodified client cannot talk to it at all.
//
// Accepted modes:
//
//   - "" (the default): base is returned unchanged. Against a real Elasticsearch nothing is
//     altered, and against anything else the client's product check keeps failing loudly, so a
//     misconfigured URL is never silently accepted.
//   - "opensearch": an explicit opt-in for OpenSearch 2.x targets (such as the server of
//     `make deps`). The returned transport adds `X-Elastic-Product: Elasticsearch` to every
//     response that does not carry the header, and rewrites the Elasticsearch-only
//     "compatible-with" media types (application/vnd.elasticsearch+json, sent when
//     ELASTIC_CLIENT_APIVERSIONING=true) to the plain types, which OpenSearch would reject with 406.
//
// The compatibility is never switched on by default or by detecting the server: pretending to be
// Elasticsearch is a deliberate decision of whoever configures the service. Any other mode is an
// error naming the accepted values. In mode "opensearch" a nil base means http.DefaultTransport.
func NewCompatTransport(base http.RoundTripper, mode string) (http.RoundTripper, error) {
	switch strings.ToLower(strings.TrimSpace(mode)) {
	case "":
		return base, nil
	case CompatOpenSearch:
		if base == nil {
			base = http.DefaultTransport
		}
		return &openSearchCompatTransport{base: base}, nil
	default:
		return nil, fmt.Errorf("elasticsearch compat mode %q is not supported: use %q (Elasticsearch, the default) or %q (OpenSearch)",
			mode, "", CompatOpenSearch)
	}
}

// openSearchCompatTransport is the transport of mode "opensearch" (see NewCompatTransport).
type openSearchCompatTransport struct {
	base http.RoundTripper
}

// RoundTrip sends req through base and marks the server's response as coming from
// Elasticsearch when the server did not say what it is, so that go-elasticsearch's product
// check passes for OpenSearch. A response that already carries the header is left untouched.
func (t *openSearchCompatTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(plainMediaTypes(req))
	if res != nil {
		if res.Header == nil {
			res.Header = make(http.Header)
		}
		if res.Header.Get(productHeader) == "" {
			res.Header.Set(productHeader, productElasticsearch)
		}
	}
	return res, err
}

// plainMediaTypes returns req, or a copy of it whose Elasticsearch "compatible-with" Accept and
// Content-Type headers are replaced by the plain media types (a RoundTripper must not modify
// the caller's request).
func plainMediaTypes(req *http.Request) *http.Request {
	var out *http.Request
	for _, name := range []string{"Accept", "Content-Type"} {
		v := req.Header.Get(name)
		plain, ok := plainMediaType(v)
		if !ok {
			continue
		}
		if out == nil {
			out = req.Clone(req.Context())
		}
		out.Header.Set(name, plain)
	}
	if out == nil {
		return req
	}
	return out
}

func plainMediaType(v string) (string, bool) {
	l := strings.ToLower(v)
	switch {
	case strings.HasPrefix(l, "application/vnd.elasticsearch+json"):
		return "application/json", true
	case strings.HasPrefix(l, "application/vnd.elasticsearch+x-ndjson"):
		return "application/x-ndjson", true
	default:
		return "", false
	}
}
