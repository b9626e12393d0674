package httpport_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/marketplace/catalog/api"
	httpport "github.com/marketplace/catalog/ports/http"
)

// TestOpenAPIMatchesRouter keeps the document and the router in lockstep: a route added
// without documentation, or documentation of a route that does not exist, fails here.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc, _ := loadSpec(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}

	var inSpec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, method+" "+path)
		}
	}

	srv, _ := newServer(t, newStore()) // with Metrics, so /metrics is registered
	var inRouter []string
	err := chi.Walk(httpport.Router(srv), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		inRouter = append(inRouter, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(inSpec)
	slices.Sort(inRouter)
	if !slices.Equal(inSpec, inRouter) {
		t.Errorf("openapi.yaml and router differ\nspec:   %v\nrouter: %v", inSpec, inRouter)
	}
	if len(inRouter) < 8 {
		t.Errorf("router walk found only %v", inRouter)
	}
}

// TestOpenAPIDocumentsProblemTypes makes sure every problem type a client can receive is
// explained in the document.
func TestOpenAPIDocumentsProblemTypes(t *testing.T) {
	doc := string(httpport.OpenAPIDocument())
	for _, typ := range []string{
		httpport.ProblemMalformedRequest, httpport.ProblemInvalidParameter, httpport.ProblemPayloadTooLarge,
		httpport.ProblemUnsupportedMediaType, httpport.ProblemValidation, httpport.ProblemIdempotencyKeyReused,
		httpport.ProblemNotFound, httpport.ProblemMethodNotAllowed, httpport.ProblemProductDeleted,
		httpport.ProblemVersionConflict, httpport.ProblemDuplicateSKU, httpport.ProblemPreconditionRequired,
		httpport.ProblemUnavailable, httpport.ProblemInternal,
	} {
		if !strings.Contains(doc, "`"+typ+"`") {
			t.Errorf("openapi.yaml does not document %s", typ)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	srv, _ := newServer(t, newStore())
	rec := do(srv.Handler(), "GET", "/openapi.yaml", "", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(httpport.OpenAPIDocument()) {
		t.Error("served document differs from the embedded one")
	}
	checkAgainstSpec(t, "GET", "/openapi.yaml", "", nil, rec)
}

func TestAsyncAPIServed(t *testing.T) {
	srv, _ := newServer(t, newStore())
	rec := do(srv.Handler(), "GET", "/asyncapi.yaml", "", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /asyncapi.yaml: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(api.AsyncAPIDocument()) || !strings.Contains(rec.Body.String(), "asyncapi: 3.") {
		t.Error("served document differs from api/asyncapi.yaml")
	}
	checkAgainstSpec(t, "GET", "/asyncapi.yaml", "", nil, rec)
}
