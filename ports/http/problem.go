package httpport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

// Problem type URIs (RFC 9457 "type"). They identify a class of problem and never change
// once published, so clients switch on them instead of parsing titles or details. They are
// identifiers, not links: nothing has to be served at these addresses. openapi.yaml lists
// them with their meaning.
const (
	problemBase = "https://catalog.example/problems/"

	// ProblemMalformedRequest: the body is not a single JSON object of the expected shape
	// (syntax error, wrong type, unknown or read-only member, trailing data, empty body).
	ProblemMalformedRequest = problemBase + "malformed-request"
	// ProblemInvalidParameter: a path parameter or header is malformed (non-UUID id,
	// If-Match that is not a version, Idempotency-Key too long).
	ProblemInvalidParameter = problemBase + "invalid-parameter"
	// ProblemPayloadTooLarge: the body exceeds the server's limit.
	ProblemPayloadTooLarge = problemBase + "payload-too-large"
	// ProblemUnsupportedMediaType: the body is declared as something other than JSON.
	ProblemUnsupportedMediaType = problemBase + "unsupported-media-type"
	// ProblemValidation: the request is well-formed but breaks the product's rules; the
	// errors member lists every offending field.
	ProblemValidation = problemBase + "validation"
	// ProblemIdempotencyKeyReused: an Idempotency-Key was sent again with another request.
	ProblemIdempotencyKeyReused = problemBase + "idempotency-key-reused"
	// ProblemNotFound: no product has the id, or no route has the path.
	ProblemNotFound = problemBase + "not-found"
	// ProblemMethodNotAllowed: the path exists but not for this method (see Allow).
	ProblemMethodNotAllowed = problemBase + "method-not-allowed"
	// ProblemProductDeleted: the product existed and was deleted; its id is never reused.
	ProblemProductDeleted = problemBase + "product-deleted"
	// ProblemVersionConflict: If-Match names a version that is no longer current.
	ProblemVersionConflict = problemBase + "version-conflict"
	// ProblemDuplicateSKU: another product already uses the SKU.
	ProblemDuplicateSKU = problemBase + "duplicate-sku"
	// ProblemPreconditionRequired: the request must carry If-Match.
	ProblemPreconditionRequired = problemBase + "precondition-required"
	// ProblemUnavailable: the server could not finish in time; retrying later may succeed.
	ProblemUnavailable = problemBase + "unavailable"
	// ProblemReadModelBehind: a read with wait=strict did not see the versions it waited for
	// (wait_for) within wait_timeout; retry later, or read without wait=strict.
	ProblemReadModelBehind = problemBase + "read-model-behind"
	// ProblemInternal: a server fault. The detail is deliberately generic; the log entry
	// with the same request id has the cause.
	ProblemInternal = problemBase + "internal"
)

// problemContentType is the media type of every error body (RFC 9457 §3).
const problemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document, the body of every error response. It is exported
// so that clients and tests in Go decode errors with the same type the server encodes.
type Problem struct {
	// Type is one of the Problem* URIs.
	Type string `json:"type"`
	// Title is a short summary that is the same for every occurrence of Type.
	Title string `json:"title"`
	// Status repeats the HTTP status, for clients that lost it (logs, proxies).
	Status int `json:"status"`
	// Detail explains this occurrence in words a client developer can act on.
	Detail string `json:"detail"`
	// Instance is the request path the problem occurred on.
	Instance string `json:"instance,omitempty"`
	// Errors lists the offending fields, so a client fixes them all in one round trip.
	Errors []FieldProblem `json:"errors,omitempty"`
	// CurrentVersion is the stored version on a version conflict, so a client knows what
	// it has to refetch without another request.
	CurrentVersion *int64 `json:"current_version,omitempty"`
	// RequestID matches X-Request-Id and the server's log lines for this request.
	RequestID string `json:"request_id,omitempty"`
}

// FieldProblem names one offending field or header and why it is wrong.
type FieldProblem struct {
	// Field is the JSON path ("price.currency") or the header name ("If-Match").
	Field string `json:"field"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
}

// requestError is a client mistake found by this port before the application ran. Handlers
// return it like any other error, so one function decides every error response.
type requestError struct {
	status int
	typ    string
	title  string
	detail string
	fields []FieldProblem
	cause  error
}

func (e *requestError) Error() string {
	if e.cause != nil {
		return e.detail + ": " + e.cause.Error()
	}
	return e.detail
}

func (e *requestError) Unwrap() error { return e.cause }

func malformed(detail string, cause error, fields ...FieldProblem) *requestError {
	return &requestError{status: http.StatusBadRequest, typ: ProblemMalformedRequest, title: "Malformed request body", detail: detail, fields: fields, cause: cause}
}

func invalidParameter(field, reason string) *requestError {
	return &requestError{
		status: http.StatusBadRequest, typ: ProblemInvalidParameter, title: "Invalid parameter",
		detail: field + " " + reason, fields: []FieldProblem{{Field: field, Reason: reason}},
	}
}

// problemFor maps an error to its problem. It is the only place where domain errors become
// HTTP statuses. The second result is true for server faults, which the caller logs.
func problemFor(err error) (Problem, bool) {
	var (
		re *requestError
		ve *product.ValidationError
		vc *product.VersionConflictError
		be *query.BehindError
	)
	switch {
	case errors.As(err, &re):
		return Problem{Type: re.typ, Title: re.title, Status: re.status, Detail: re.detail, Errors: re.fields}, false
	case errors.As(err, &ve):
		fields := make([]FieldProblem, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = FieldProblem{Field: f.Field, Reason: f.Reason}
		}
		return Problem{
			Type: ProblemValidation, Title: "Invalid product", Status: http.StatusUnprocessableEntity,
			Detail: fmt.Sprintf("the product has %d invalid field(s); see errors", len(fields)), Errors: fields,
		}, false
	case errors.Is(err, product.ErrInvalid):
		return Problem{Type: ProblemValidation, Title: "Invalid product", Status: http.StatusUnprocessableEntity, Detail: "the product is invalid"}, false
	case errors.Is(err, product.ErrVersionConflict):
		p := Problem{
			Type: ProblemVersionConflict, Title: "Version conflict", Status: http.StatusConflict,
			Detail: "the product changed since the version in If-Match; fetch it again and retry",
		}
		if errors.As(err, &vc) && vc.Actual > 0 {
			v := vc.Actual
			p.CurrentVersion = &v
			p.Detail = fmt.Sprintf("If-Match names version %d but the product is at version %d; fetch it again and retry", vc.Expected, vc.Actual)
		}
		return p, false
	case errors.Is(err, product.ErrDeleted):
		return Problem{Type: ProblemProductDeleted, Title: "Product deleted", Status: http.StatusGone, Detail: "the product was deleted"}, false
	case errors.Is(err, product.ErrNotFound):
		return Problem{Type: ProblemNotFound, Title: "Not found", Status: http.StatusNotFound, Detail: "no product has this id"}, false
	case errors.Is(err, product.ErrDuplicateSKU):
		return Problem{
			Type: ProblemDuplicateSKU, Title: "Duplicate SKU", Status: http.StatusConflict,
			Detail: "another product already uses this sku", Errors: []FieldProblem{{Field: "sku", Reason: "is already in use"}},
		}, false
	case errors.Is(err, product.ErrInvalidID):
		return Problem{
			Type: ProblemInvalidParameter, Title: "Invalid parameter", Status: http.StatusBadRequest,
			Detail: "the product id must be a UUID", Errors: []FieldProblem{{Field: "id", Reason: "must be a UUID"}},
		}, false
	case errors.Is(err, product.ErrIdempotencyKeyReused):
		return Problem{
			Type: ProblemIdempotencyKeyReused, Title: "Idempotency key reused", Status: http.StatusUnprocessableEntity,
			Detail: "this Idempotency-Key was already used with a different request; use a new key for a new request",
		}, false
	case errors.As(err, &be):
		return Problem{
			Type: ProblemReadModelBehind, Title: "Read model behind", Status: http.StatusServiceUnavailable,
			Detail: be.Error() + "; retry later, or read without wait=strict to get what the read model has",
		}, false
	case errors.Is(err, query.ErrInvalidSearch):
		return Problem{Type: ProblemInvalidParameter, Title: "Invalid search", Status: http.StatusBadRequest, Detail: searchDetail(err)}, false
	case errors.Is(err, query.ErrReadModelUnavailable):
		return Problem{Type: ProblemUnavailable, Title: "Search unavailable", Status: http.StatusServiceUnavailable, Detail: "the search read model cannot answer now; retry later"}, true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// A timeout or a client that went away is not a bug in the server; it is still
		// logged, because a rising rate of them is how an overloaded dependency shows.
		return Problem{Type: ProblemUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "the request could not be completed in time; retry later"}, true
	default:
		return internalProblem(), true
	}
}

func internalProblem() Problem {
	return Problem{
		Type: ProblemInternal, Title: "Internal server error", Status: http.StatusInternalServerError,
		Detail: "an unexpected error occurred; quote the request id when reporting it",
	}
}

// writeProblem sends p. Instance and RequestID come from the request so that no caller can
// forget them.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.Instance = r.URL.Path
	p.RequestID = RequestID(r.Context())
	h := w.Header()
	h.Set("Content-Type", problemContentType)
	h.Set("Cache-Control", "no-store")
	// A problem never carries a representation's validator.
	h.Del("ETag")
	h.Del("Location")
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p) // the client may be gone; nothing useful to do then
}
