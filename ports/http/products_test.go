package httpport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/domain/product"
	httpport "github.com/marketplace/catalog/ports/http"
)

const (
	liveID    = "01900000-0000-7000-8000-000000000001" // SKU-LIVE at version 3
	deletedID = "01900000-0000-7000-8000-000000000002" // tombstone at version 2
	missingID = "01900000-0000-7000-8000-0000000000ff"

	validBody = `{"sku":"SKU-NEW","name":"New shirt","price":{"amount":100,"currency":"EUR"},"stock":1}`
	fullBody  = `{"sku":"SKU-NEW","name":"New shirt","description":"Cotton","category":"apparel","brand":"Acme",` +
		`"price":{"amount":1999,"currency":"USD"},"stock":7,"attributes":{"color":"red","size":"M"}}`
)

func seeded() *store {
	s := newStore()
	s.seed(liveID, "SKU-LIVE", 3, false)
	s.seed(deletedID, "SKU-GONE", 1, true)
	return s
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// wireProduct is the product JSON as a client sees it, decoded strictly so that a renamed or
// added member fails the test.
type wireProduct struct {
	ID          string `json:"id"`
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
	Brand       string `json:"brand"`
	Price       struct {
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
	} `json:"price"`
	Stock      int64             `json:"stock"`
	Attributes map[string]string `json:"attributes"`
	Tags       []string          `json:"tags"`
	Version    int64             `json:"version"`
	CreatedAt  string            `json:"created_at"`
	UpdatedAt  string            `json:"updated_at"`
}

func decodeProduct(t *testing.T, rec *httptest.ResponseRecorder) wireProduct {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	var p wireProduct
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode product: %v", err)
	}
	return p
}

// endpointCase is one request of TestProductEndpoints and what its response must be.
type endpointCase struct {
	name   string
	method string
	path   string
	body   string
	header http.Header
	// unsized sends the body without Content-Length, so the limit must hold while reading.
	unsized bool
	setup   func(*store)

	status  int
	problem string   // expected problem type for error statuses
	fields  []string // expected errors[].field, in order
	check   func(t *testing.T, rec *httptest.ResponseRecorder)
}

func TestProductEndpoints(t *testing.T) {
	big := `{"sku":"SKU-BIG","name":"Big","price":{"amount":1,"currency":"EUR"},"stock":1,"description":"` +
		strings.Repeat("x", 1<<20) + `"}`
	tests := slices.Concat(createCases(big), getCases(), putCases(big), deleteCases(), routingCases())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runEndpointCase(t, tc) })
	}
}

// createCases are the cases of POST /v1/products; big is a body over the size limit.
func createCases(big string) []endpointCase {
	return []endpointCase{
		// POST /v1/products
		{name: "create minimal", method: "POST", path: "/v1/products", body: validBody, status: 201,
			check: checkCreatedMinimal},
		{name: "create full with charset", method: "POST", path: "/v1/products", body: fullBody,
			header: hdr("Content-Type", "application/json; charset=UTF-8"), status: 201,
			check: checkCreatedFull},
		{name: "create malformed json", method: "POST", path: "/v1/products", body: `{"sku":`, status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create syntax error", method: "POST", path: "/v1/products", body: `{"sku":"a",}`, status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create empty body", method: "POST", path: "/v1/products", status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create array body", method: "POST", path: "/v1/products", body: `[]`, status: 400, problem: httpport.ProblemMalformedRequest},
		// One status for every body of the wrong JSON type: 400, null included (it used to
		// be 422 "missing members" while [1,2] was 400).
		{name: "create null body", method: "POST", path: "/v1/products", body: `null`, status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create number array body", method: "POST", path: "/v1/products", body: `[1,2]`, status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create string body", method: "POST", path: "/v1/products", body: `"sku"`, status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create number body", method: "POST", path: "/v1/products", body: ` 42 `, status: 400, problem: httpport.ProblemMalformedRequest},
		// Invalid UTF-8 is refused with the field's path, never stored as U+FFFD.
		{name: "create invalid utf-8 name", method: "POST", path: "/v1/products",
			body:   "{\"sku\":\"A\",\"name\":\"bad \xff\xfe utf8\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1}",
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"name"}},
		{name: "create truncated utf-8 sequence", method: "POST", path: "/v1/products",
			body:   "{\"sku\":\"A\",\"name\":\"n\",\"description\":\"caf\xc3\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1}",
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"description"}},
		{name: "create invalid utf-8 attribute value", method: "POST", path: "/v1/products",
			body:   "{\"sku\":\"A\",\"name\":\"n\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1,\"attributes\":{\"color\":\"\xc0\xaf\"}}",
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"attributes.color"}},
		{name: "create invalid utf-8 attribute name", method: "POST", path: "/v1/products",
			body:   "{\"sku\":\"A\",\"name\":\"n\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1,\"attributes\":{\"\xff\":\"x\"}}",
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"attributes"}},
		{name: "create invalid utf-8 in an unknown member", method: "POST", path: "/v1/products",
			body:   "{\"sku\":\"A\",\"name\":\"n\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1,\"note\":[\"ok\",\"\xff\"]}",
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"note[1]"}},
		{name: "create escaped lone surrogate", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n\udc00","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"name"}},
		{name: "create escaped high surrogate without its pair", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","brand":"\ud83d!","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"brand"}},
		{name: "create escaped surrogate pair ok", method: "POST", path: "/v1/products",
			body: `{"sku":"A","name":"smile \ud83d\ude00 \\u","price":{"amount":1,"currency":"EUR"},"stock":1}`, status: 201,
			check: checkSurrogatePairName},
		{name: "create literal replacement character ok", method: "POST", path: "/v1/products",
			body: "{\"sku\":\"A\",\"name\":\"n \uFFFD\",\"price\":{\"amount\":1,\"currency\":\"EUR\"},\"stock\":1}", status: 201},
		// A repeated member would silently overwrite the first (encoding/json keeps the last).
		{name: "create duplicate member", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","sku":"B","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"sku"}},
		{name: "create duplicate nested member", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"amount":100,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"price.amount"}},
		{name: "create duplicate attribute", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1,"attributes":{"color":"red","color":"blue"}}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"attributes.color"}},
		{name: "create same name in sibling objects ok", method: "POST", path: "/v1/products",
			body: `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1,"attributes":{"amount":"x","sku":"y"}}`, status: 201},
		{name: "create wrong type stock", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":"many"}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"stock"}},
		{name: "create fractional amount", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1.5,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"price.amount"}},
		{name: "create fractional stock", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1.5}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"stock"}},
		{name: "create attribute not a string", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1,"attributes":{"a":1}}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"attributes"}},
		{name: "create unknown field", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1,"colour":"red"}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"colour"}},
		{name: "create unknown nested field", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR","cents":true},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"price.cents"}},
		{name: "create read-only id", method: "POST", path: "/v1/products",
			body:   `{"id":"` + liveID + `","sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"id"}},
		{name: "create trailing object", method: "POST", path: "/v1/products", body: validBody + `{}`,
			status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create trailing garbage", method: "POST", path: "/v1/products", body: validBody + ` x`,
			status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "create trailing whitespace ok", method: "POST", path: "/v1/products", body: validBody + " \n", status: 201},
		{name: "create text/plain", method: "POST", path: "/v1/products", body: validBody,
			header: hdr("Content-Type", "text/plain"), status: 415, problem: httpport.ProblemUnsupportedMediaType},
		{name: "create latin1 charset", method: "POST", path: "/v1/products", body: validBody,
			header: hdr("Content-Type", "application/json; charset=iso-8859-1"), status: 415, problem: httpport.ProblemUnsupportedMediaType},
		{name: "create missing required", method: "POST", path: "/v1/products", body: `{"description":"d"}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"sku", "name", "price", "stock"}},
		{name: "create null required", method: "POST", path: "/v1/products", body: `{"sku":null,"name":"n","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"sku"}},
		{name: "create missing currency and negative stock", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1},"stock":-1}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"price.currency", "stock"}},
		{name: "create negative price", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":-1,"currency":"EUR"},"stock":1}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"price.amount"}},
		{name: "create negative stock", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":-3}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"stock"}},
		{name: "create unknown currency", method: "POST", path: "/v1/products",
			body:   `{"sku":"A","name":"n","price":{"amount":1,"currency":"XXX"},"stock":1}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"price.currency"}},
		{name: "create several domain errors", method: "POST", path: "/v1/products",
			body:   `{"sku":"-bad","name":" ","price":{"amount":-1,"currency":"eur"},"stock":-1}`,
			status: 422, problem: httpport.ProblemValidation, fields: []string{"sku", "name", "price.amount", "price.currency", "stock"}},
		{name: "create duplicate sku", method: "POST", path: "/v1/products",
			body:   `{"sku":"SKU-LIVE","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1}`,
			status: 409, problem: httpport.ProblemDuplicateSKU, fields: []string{"sku"}},
		{name: "create oversize body", method: "POST", path: "/v1/products", body: big,
			status: 413, problem: httpport.ProblemPayloadTooLarge},
		{name: "create oversize body without length", method: "POST", path: "/v1/products", body: big, unsized: true,
			status: 413, problem: httpport.ProblemPayloadTooLarge},
		{name: "create oversize trailing data", method: "POST", path: "/v1/products", body: validBody + strings.Repeat(" ", 1<<20), unsized: true,
			status: 413, problem: httpport.ProblemPayloadTooLarge},
		{name: "create idempotency key too long", method: "POST", path: "/v1/products", body: validBody,
			header: hdr("Idempotency-Key", strings.Repeat("k", 256)), status: 400, problem: httpport.ProblemInvalidParameter, fields: []string{"Idempotency-Key"}},
		{name: "create idempotency key of 255 ok", method: "POST", path: "/v1/products", body: validBody,
			header: hdr("Idempotency-Key", strings.Repeat("k", 255)), status: 201},
		{name: "create idempotency key empty", method: "POST", path: "/v1/products", body: validBody,
			header: hdr("Idempotency-Key", ""), status: 400, problem: httpport.ProblemInvalidParameter, fields: []string{"Idempotency-Key"}},
	}
}

// getCases are the cases of GET /v1/products/{id}.
func getCases() []endpointCase {
	return []endpointCase{
		// GET /v1/products/{id}
		{name: "get", method: "GET", path: "/v1/products/" + liveID, status: 200,
			check: checkGotLive},
		{name: "get upper-case uuid", method: "GET", path: "/v1/products/" + strings.ToUpper(liveID), status: 200},
		{name: "get unknown id", method: "GET", path: "/v1/products/" + missingID, status: 404, problem: httpport.ProblemNotFound},
		{name: "get non-uuid id", method: "GET", path: "/v1/products/42", status: 400, problem: httpport.ProblemInvalidParameter, fields: []string{"id"}},
		{name: "get deleted", method: "GET", path: "/v1/products/" + deletedID, status: 410, problem: httpport.ProblemProductDeleted,
			check: checkProblemHasNoETag},
	}
}

// putCases are the cases of PUT /v1/products/{id}; big is a body over the size limit.
func putCases(big string) []endpointCase {
	return []endpointCase{
		// PUT /v1/products/{id}
		{name: "put bare version", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", "3"), status: 200,
			check: checkPutNewVersion},
		{name: "put strong etag", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", `"3"`), status: 200},
		{name: "put weak etag", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", `W/"3"`), status: 200},
		{name: "put unchanged keeps version", method: "PUT", path: "/v1/products/" + liveID,
			body: `{"sku":"SKU-LIVE","name":"Shirt SKU-LIVE","price":{"amount":1999,"currency":"EUR"},"stock":12}`, header: hdr("If-Match", "3"), status: 200,
			check: checkVersionKept},
		{name: "put missing if-match", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, status: 428, problem: httpport.ProblemPreconditionRequired, fields: []string{"If-Match"}},
		{name: "put stale if-match", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", `"1"`), status: 409, problem: httpport.ProblemVersionConflict,
			check: checkCurrentVersionIs3},
		{name: "put if-match not a number", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", "abc"), status: 400, problem: httpport.ProblemInvalidParameter, fields: []string{"If-Match"}},
		{name: "put if-match zero", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", `"0"`), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "put if-match negative", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", "-3"), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "put if-match list", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", `"3", "4"`), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "put if-match star", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", "*"), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "put if-match overflow", method: "PUT", path: "/v1/products/" + liveID, body: fullBody, header: hdr("If-Match", "99999999999999999999"), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "put deleted", method: "PUT", path: "/v1/products/" + deletedID, body: fullBody, header: hdr("If-Match", "2"), status: 410, problem: httpport.ProblemProductDeleted},
		{name: "put unknown id", method: "PUT", path: "/v1/products/" + missingID, body: fullBody, header: hdr("If-Match", "1"), status: 404, problem: httpport.ProblemNotFound},
		{name: "put non-uuid id", method: "PUT", path: "/v1/products/nope", body: fullBody, header: hdr("If-Match", "1"), status: 400, problem: httpport.ProblemInvalidParameter, fields: []string{"id"}},
		{name: "put invalid product", method: "PUT", path: "/v1/products/" + liveID,
			body: `{"sku":"A","name":"n","price":{"amount":-5,"currency":"EUR"},"stock":1}`, header: hdr("If-Match", "3"),
			status: 422, problem: httpport.ProblemValidation, fields: []string{"price.amount"}},
		{name: "put malformed", method: "PUT", path: "/v1/products/" + liveID, body: `{`, header: hdr("If-Match", "3"), status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "put wrong content type", method: "PUT", path: "/v1/products/" + liveID, body: fullBody,
			header: hdr("If-Match", "3", "Content-Type", "application/xml"), status: 415, problem: httpport.ProblemUnsupportedMediaType},
		{name: "put oversize", method: "PUT", path: "/v1/products/" + liveID, body: big, header: hdr("If-Match", "3"), status: 413, problem: httpport.ProblemPayloadTooLarge},
		{name: "put null body", method: "PUT", path: "/v1/products/" + liveID, body: `null`, header: hdr("If-Match", "3"), status: 400, problem: httpport.ProblemMalformedRequest},
		{name: "put invalid utf-8", method: "PUT", path: "/v1/products/" + liveID,
			body: "{\"sku\":\"A\",\"name\":\"n\",\"price\":{\"amount\":1,\"currency\":\"\xffEUR\"},\"stock\":1}", header: hdr("If-Match", "3"),
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"price.currency"}},
		{name: "put duplicate member", method: "PUT", path: "/v1/products/" + liveID,
			body: `{"sku":"A","name":"n","price":{"amount":1,"currency":"EUR"},"stock":1,"stock":2}`, header: hdr("If-Match", "3"),
			status: 400, problem: httpport.ProblemMalformedRequest, fields: []string{"stock"}},
	}
}

// deleteCases are the cases of DELETE /v1/products/{id}.
func deleteCases() []endpointCase {
	return []endpointCase{
		// DELETE /v1/products/{id}
		{name: "delete", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", "3"), status: 204,
			check: checkNoBody},
		{name: "delete strong etag", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", `"3"`), status: 204},
		{name: "delete weak etag", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", `W/"3"`), status: 204},
		{name: "delete missing if-match", method: "DELETE", path: "/v1/products/" + liveID, status: 428, problem: httpport.ProblemPreconditionRequired, fields: []string{"If-Match"}},
		{name: "delete stale if-match", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", "2"), status: 409, problem: httpport.ProblemVersionConflict},
		{name: "delete bad if-match", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", "v3"), status: 400, problem: httpport.ProblemInvalidParameter},
		{name: "delete already deleted", method: "DELETE", path: "/v1/products/" + deletedID, header: hdr("If-Match", "2"), status: 410, problem: httpport.ProblemProductDeleted},
		{name: "delete never existed", method: "DELETE", path: "/v1/products/" + missingID, header: hdr("If-Match", "1"), status: 404, problem: httpport.ProblemNotFound},
		{name: "delete non-uuid id", method: "DELETE", path: "/v1/products/x", header: hdr("If-Match", "1"), status: 400, problem: httpport.ProblemInvalidParameter},
	}
}

// routingCases are the cases of routing and of server faults.
func routingCases() []endpointCase {
	return []endpointCase{
		// Routing and server faults.
		{name: "unknown path", method: "GET", path: "/v2/things", status: 404, problem: httpport.ProblemNotFound},
		{name: "method not allowed", method: "PATCH", path: "/v1/products/" + liveID, status: 405, problem: httpport.ProblemMethodNotAllowed,
			check: checkAllow},
		{name: "internal error", method: "GET", path: "/v1/products/" + liveID, status: 500, problem: httpport.ProblemInternal,
			setup: func(s *store) { s.fail = errors.New("dial tcp 10.0.0.7:5432: connection refused") },
			check: checkInternalErrorNotLeaked},
		{name: "timeout", method: "POST", path: "/v1/products", body: validBody, status: 503, problem: httpport.ProblemUnavailable,
			setup: func(s *store) { s.fail = fmt.Errorf("create product: %w", context.DeadlineExceeded) },
			check: checkRetryAfter},
		{name: "panic", method: "DELETE", path: "/v1/products/" + liveID, header: hdr("If-Match", "3"), status: 500, problem: httpport.ProblemInternal,
			setup: func(s *store) { s.panicWith = "boom at 10.0.0.7" },
			check: checkPanicNotLeaked},
	}
}

// runEndpointCase sends tc's request to a server on a freshly seeded store and checks the
// response: status, request id, the problem document of an error, tc's own check, and the
// OpenAPI description.
func runEndpointCase(t *testing.T, tc endpointCase) {
	s := seeded()
	if tc.setup != nil {
		tc.setup(s)
	}
	srv, logs := newServer(t, s)

	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
		if tc.unsized {
			body = io.MultiReader(body) // hides the length, as chunked encoding would
		}
	}
	req := httptest.NewRequest(tc.method, tc.path, body)
	for k, vs := range tc.header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)

	if rec.Code != tc.status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
	}
	reqID := rec.Header().Get(httpport.HeaderRequestID)
	if reqID == "" {
		t.Error("no X-Request-Id in the response")
	}
	if tc.status >= 400 {
		checkEndpointProblem(t, tc, rec, req.URL.Path, reqID, logs.String())
	}
	if tc.check != nil {
		tc.check(t, rec)
	}
	checkAgainstSpec(t, tc.method, tc.path, tc.body, tc.header, rec)
}

// checkEndpointProblem checks the problem document of an error response: its type, status,
// title and detail, the instance and request id, a reason for every field, the fields tc
// expects, and that a server fault was logged with the request id.
func checkEndpointProblem(t *testing.T, tc endpointCase, rec *httptest.ResponseRecorder, path, reqID, logs string) {
	t.Helper()
	p := decodeProblem(t, rec)
	if p.Type != tc.problem || p.Status != tc.status || p.Title == "" || p.Detail == "" {
		t.Errorf("problem = %+v, want type %s status %d", p, tc.problem, tc.status)
	}
	if p.Instance != path || p.RequestID != reqID {
		t.Errorf("instance %q request_id %q, want %q %q", p.Instance, p.RequestID, path, reqID)
	}
	var fields []string
	for _, f := range p.Errors {
		fields = append(fields, f.Field)
		if f.Reason == "" {
			t.Errorf("field %s without reason", f.Field)
		}
	}
	if tc.fields != nil && !slices.Equal(fields, tc.fields) {
		t.Errorf("errors fields = %v, want %v (%+v)", fields, tc.fields, p.Errors)
	}
	if tc.status >= 500 && !strings.Contains(logs, reqID) {
		t.Errorf("server fault not logged with request id %s:\n%s", reqID, logs)
	}
}

// checkCreatedMinimal is the check of case "create minimal".
func checkCreatedMinimal(t *testing.T, rec *httptest.ResponseRecorder) {
	p := decodeProduct(t, rec)
	if p.Version != 1 || p.SKU != "SKU-NEW" || p.Description != "" || p.Attributes == nil || len(p.Attributes) != 0 {
		t.Errorf("product = %+v", p)
	}
	if _, err := product.ParseID(p.ID); err != nil {
		t.Errorf("id %q: %v", p.ID, err)
	}
	if got := rec.Header().Get("Location"); got != "/v1/products/"+p.ID {
		t.Errorf("Location = %q", got)
	}
	if got := rec.Header().Get("ETag"); got != `"1"` {
		t.Errorf("ETag = %q", got)
	}
	if rec.Header().Get("Idempotent-Replayed") != "" {
		t.Error("Idempotent-Replayed set on a first create")
	}
	if !strings.HasSuffix(p.CreatedAt, "Z") || p.CreatedAt != p.UpdatedAt {
		t.Errorf("timestamps %q %q", p.CreatedAt, p.UpdatedAt)
	}
	if !strings.Contains(rec.Body.String(), `"attributes":{}`) {
		t.Errorf("attributes not {}: %s", rec.Body)
	}
}

// checkCreatedFull is the check of case "create full with charset".
func checkCreatedFull(t *testing.T, rec *httptest.ResponseRecorder) {
	p := decodeProduct(t, rec)
	if p.Brand != "Acme" || p.Category != "apparel" || p.Description != "Cotton" ||
		p.Price.Amount != 1999 || p.Price.Currency != "USD" || p.Stock != 7 || p.Attributes["size"] != "M" {
		t.Errorf("product = %+v", p)
	}
}

// checkSurrogatePairName is the check of case "create escaped surrogate pair ok".
func checkSurrogatePairName(t *testing.T, rec *httptest.ResponseRecorder) {
	if p := decodeProduct(t, rec); p.Name != "smile \U0001F600 \\u" {
		t.Errorf("name = %q", p.Name)
	}
}

// checkGotLive is the check of case "get".
func checkGotLive(t *testing.T, rec *httptest.ResponseRecorder) {
	p := decodeProduct(t, rec)
	if p.ID != liveID || p.Version != 3 || p.SKU != "SKU-LIVE" {
		t.Errorf("product = %+v", p)
	}
	if got := rec.Header().Get("ETag"); got != `"3"` {
		t.Errorf("ETag = %q", got)
	}
	if p.CreatedAt != "2025-01-02T03:04:06.123456Z" {
		t.Errorf("created_at = %q", p.CreatedAt)
	}
}

// checkProblemHasNoETag is the check of case "get deleted".
func checkProblemHasNoETag(t *testing.T, rec *httptest.ResponseRecorder) {
	if rec.Header().Get("ETag") != "" {
		t.Error("a problem carries an ETag")
	}
}

// checkPutNewVersion is the check of case "put bare version".
func checkPutNewVersion(t *testing.T, rec *httptest.ResponseRecorder) {
	p := decodeProduct(t, rec)
	if p.Version != 4 || p.SKU != "SKU-NEW" || p.ID != liveID || p.CreatedAt == p.UpdatedAt {
		t.Errorf("product = %+v", p)
	}
	if got := rec.Header().Get("ETag"); got != `"4"` {
		t.Errorf("ETag = %q", got)
	}
}

// checkVersionKept is the check of case "put unchanged keeps version".
func checkVersionKept(t *testing.T, rec *httptest.ResponseRecorder) {
	if p := decodeProduct(t, rec); p.Version != 3 {
		t.Errorf("version = %d, want 3", p.Version)
	}
}

// checkCurrentVersionIs3 is the check of case "put stale if-match".
func checkCurrentVersionIs3(t *testing.T, rec *httptest.ResponseRecorder) {
	p := decodeProblem(t, rec)
	if p.CurrentVersion == nil || *p.CurrentVersion != 3 {
		t.Errorf("current_version = %v, want 3", p.CurrentVersion)
	}
}

// checkNoBody is the check of case "delete".
func checkNoBody(t *testing.T, rec *httptest.ResponseRecorder) {
	if rec.Body.Len() != 0 {
		t.Errorf("204 with body %q", rec.Body)
	}
}

// checkAllow is the check of case "method not allowed".
func checkAllow(t *testing.T, rec *httptest.ResponseRecorder) {
	if got := rec.Header().Get("Allow"); got != "GET, PUT, DELETE" {
		t.Errorf("Allow = %q", got)
	}
}

// checkInternalErrorNotLeaked is the check of case "internal error".
func checkInternalErrorNotLeaked(t *testing.T, rec *httptest.ResponseRecorder) {
	if strings.Contains(rec.Body.String(), "10.0.0.7") {
		t.Errorf("internal error leaked: %s", rec.Body)
	}
}

// checkRetryAfter is the check of case "timeout".
func checkRetryAfter(t *testing.T, rec *httptest.ResponseRecorder) {
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// checkPanicNotLeaked is the check of case "panic".
func checkPanicNotLeaked(t *testing.T, rec *httptest.ResponseRecorder) {
	if strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("panic value leaked: %s", rec.Body)
	}
}

func TestIdempotentCreate(t *testing.T) {
	s := newStore()
	srv, _ := newServer(t, s)
	h := srv.Handler()
	key := hdr("Idempotency-Key", "order-42")

	first := do(h, "POST", "/v1/products", validBody, key)
	if first.Code != 201 || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", first.Code, first.Header(), first.Body)
	}
	fp := s.lastCreate.Fingerprint
	if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not hex sha256", fp)
	}
	created := decodeProduct(t, first)

	// Same request, other bytes: member order, whitespace, explicit defaults.
	same := `{ "stock": 1, "price": {"currency":"EUR", "amount":100}, "name":"New shirt",
		"sku":"SKU-NEW", "description":"", "attributes":{} }`
	replay := do(h, "POST", "/v1/products", same, key)
	if replay.Code != 201 || replay.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v %s", replay.Code, replay.Header(), replay.Body)
	}
	if s.lastCreate.Fingerprint != fp {
		t.Errorf("fingerprint changed with formatting: %s != %s", s.lastCreate.Fingerprint, fp)
	}
	if got := decodeProduct(t, replay); got.ID != created.ID || got.Version != 1 {
		t.Errorf("replay returned %+v, want %s", got, created.ID)
	}
	if got := replay.Header().Get("Location"); got != "/v1/products/"+created.ID {
		t.Errorf("replay Location = %q", got)
	}
	checkAgainstSpec(t, "POST", "/v1/products", same, key, replay)

	other := do(h, "POST", "/v1/products", strings.Replace(validBody, `"stock":1`, `"stock":2`, 1), key)
	if other.Code != 422 {
		t.Fatalf("reuse: %d %s", other.Code, other.Body)
	}
	if p := decodeProblem(t, other); p.Type != httpport.ProblemIdempotencyKeyReused {
		t.Errorf("reuse problem = %+v", p)
	}
	checkAgainstSpec(t, "POST", "/v1/products", validBody, key, other)

	// Without a key there is no fingerprint, and a second create is a new product.
	if rec := do(h, "POST", "/v1/products", strings.Replace(validBody, "SKU-NEW", "SKU-2", 1), nil); rec.Code != 201 {
		t.Fatalf("no key: %d %s", rec.Code, rec.Body)
	}
	if s.lastCreate.IdempotencyKey != "" || s.lastCreate.Fingerprint != "" {
		t.Errorf("command without key = %+v", s.lastCreate)
	}
}

func TestFingerprintDependsOnRequest(t *testing.T) {
	s := newStore()
	srv, _ := newServer(t, s)
	fps := map[string]string{}
	for i, body := range []string{
		validBody,
		strings.Replace(validBody, `"stock":1`, `"stock":2`, 1),
		strings.Replace(validBody, `"stock":1`, `"stock":1,"attributes":{"a":"b"}`, 1),
		strings.Replace(validBody, `"stock":1`, `"stock":1,"tags":["a"]`, 1),
	} {
		rec := do(srv.Handler(), "POST", "/v1/products", strings.Replace(body, "SKU-NEW", fmt.Sprintf("SKU-%d", i), 1), hdr("Idempotency-Key", fmt.Sprint("k", i)))
		if rec.Code != 201 {
			t.Fatalf("%d: %s", rec.Code, rec.Body)
		}
		fps[s.lastCreate.Fingerprint] = body
	}
	if len(fps) != 4 {
		t.Errorf("different requests share a fingerprint: %v", fps)
	}
}

func TestDeleteLifecycle(t *testing.T) {
	s := seeded()
	srv, _ := newServer(t, s)
	h := srv.Handler()
	path := "/v1/products/" + liveID
	for i, want := range []int{204, 410, 410} {
		var rec *httptest.ResponseRecorder
		if i == 1 {
			rec = do(h, "GET", path, "", nil)
		} else {
			rec = do(h, "DELETE", path, "", hdr("If-Match", "3"))
		}
		if rec.Code != want {
			t.Fatalf("step %d: status %d, want %d: %s", i, rec.Code, want, rec.Body)
		}
	}
	if rec := do(h, "PUT", path, validBody, hdr("If-Match", "4")); rec.Code != 410 {
		t.Errorf("PUT after delete: %d %s", rec.Code, rec.Body)
	}
}
