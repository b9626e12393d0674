package httpport

import (
	"bytes"
	_ "embed"
	"net/http"

	"github.com/marketplace/catalog/api"
)

// openapiYAML is the contract of this port, embedded so the binary always serves the
// document that matches its code.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPIDocument returns a copy of the embedded OpenAPI document, for tools (client
// generators, contract tests in other packages) that would otherwise read a copy that can go
// stale. It is a copy so no caller can change what the server serves.
func OpenAPIDocument() []byte { return bytes.Clone(openapiYAML) }

// serveOpenAPI serves the embedded document. application/yaml is the registered media type
// (RFC 9512).
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openapiYAML)
}

// asyncapiYAML is the AsyncAPI document of the event topics (api/asyncapi.yaml), served beside
// the OpenAPI document so consumers of product.events find the contract where they find the
// API's.
var asyncapiYAML = api.AsyncAPIDocument()

// serveAsyncAPI serves the embedded AsyncAPI document.
func serveAsyncAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(asyncapiYAML)
}
