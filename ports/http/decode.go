package httpport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/marketplace/catalog/application/command"
)

// Header names of the write contract.
const (
	headerIfMatch            = "If-Match"
	headerIdempotencyKey     = "Idempotency-Key"
	headerIdempotentReplayed = "Idempotent-Replayed"
	headerETag               = "ETag"
)

// maxIdempotencyKeyLength bounds the key the repository stores per request.
const maxIdempotencyKeyLength = 255

// productInputJSON is a product as a client sends it. Pointers tell a missing member from a
// zero one, so that a forgotten "stock" is reported instead of silently becoming 0.
type productInputJSON struct {
	SKU         *string           `json:"sku"`
	Name        *string           `json:"name"`
	Description *string           `json:"description"`
	Category    *string           `json:"category"`
	Brand       *string           `json:"brand"`
	Price       *priceInputJSON   `json:"price"`
	Stock       *int64            `json:"stock"`
	Attributes  map[string]string `json:"attributes"`
	// Tags is optional; absent (or null) on PUT keeps the stored tags.
	Tags *[]string `json:"tags"`
}

type priceInputJSON struct {
	Amount   *int64  `json:"amount"`
	Currency *string `json:"currency"`
}

// UnmarshalJSON exists only to report unknown members of price by their full path:
// encoding/json names just the member ("bar"), which is ambiguous for a nested object.
func (p *priceInputJSON) UnmarshalJSON(b []byte) error {
	type plain priceInputJSON // no UnmarshalJSON method, so no recursion
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v plain
	if err := dec.Decode(&v); err != nil {
		if name, ok := unknownField(err); ok {
			return &unknownFieldError{field: "price." + name}
		}
		return err
	}
	*p = priceInputJSON(v)
	return nil
}

type unknownFieldError struct{ field string }

func (e *unknownFieldError) Error() string { return "unknown field " + strconv.Quote(e.field) }

// unknownField extracts the member name from encoding/json's DisallowUnknownFields error,
// which has no type of its own. The "unknown field" cases of TestProductEndpoints pin the
// message format, so a change in encoding/json fails a test instead of a client.
func unknownField(err error) (string, bool) {
	rest, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return "", false
	}
	name, uerr := strconv.Unquote(rest)
	if uerr != nil {
		return rest, true
	}
	return name, true
}

// readOnlyFields are members of a product the server owns. Clients that PUT back what they
// GET send them; the error says why they are refused instead of calling them unknown.
var readOnlyFields = map[string]bool{"id": true, "version": true, "created_at": true, "updated_at": true}

// decodeProductInput reads the body of POST and PUT into the application's input. It rejects
// anything ambiguous (unknown members, trailing data, fractional numbers) with 400 and
// missing required members with 422, and leaves every business rule to the domain.
func (s *Server) decodeProductInput(w http.ResponseWriter, r *http.Request) (command.ProductInput, error) {
	if err := checkContentType(r); err != nil {
		return command.ProductInput{}, err
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return command.ProductInput{}, tooLarge(s.cfg.MaxBodyBytes, nil)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return command.ProductInput{}, s.decodeError(err)
	}
	// encoding/json replaces invalid UTF-8 with U+FFFD and lets a repeated member overwrite
	// the first: both would store something the client did not send, so they are refused
	// before the body is decoded.
	if err := checkJSONObject(body); err != nil {
		return command.ProductInput{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var in productInputJSON
	if err := dec.Decode(&in); err != nil {
		return command.ProductInput{}, s.decodeError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return command.ProductInput{}, malformed("the body must contain exactly one JSON object and nothing after it", err)
	}
	return in.toCommand()
}

// jsonFrame is an object or array being walked by checkJSONObject.
type jsonFrame struct {
	path    string
	object  bool
	names   map[string]bool // object: member names seen so far
	name    string          // object: the member whose value comes next
	wantKey bool            // object: the next token is a member name
	index   int             // array: the index of the next element
}

// child is the path of the value that comes next in f.
func (f *jsonFrame) child() string {
	if f.object {
		return joinPath(f.path, f.name)
	}
	return fmt.Sprintf("%s[%d]", f.path, f.index)
}

// valueDone moves f past one complete value.
func (f *jsonFrame) valueDone() {
	if f.object {
		f.wantKey = true
	} else {
		f.index++
	}
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// checkJSONObject refuses, with 400 and the field's path, a body that is not a JSON object
// (null, an array, a string: one status for every wrong type), a string or member name
// that is not valid UTF-8 (raw bytes, or an escaped lone surrogate, which encoding/json
// would both turn into U+FFFD), and a member name that occurs twice in one object. Syntax
// errors are left to the decoder, which reports them with their position.
func checkJSONObject(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var stack []*jsonFrame
	first := true
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil // end of input or a syntax error: the decoder reports the latter
		}
		raw := body[start:dec.InputOffset()]
		if first {
			first = false
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return malformed(fmt.Sprintf("the body must be a JSON object, not %s", jsonTokenKind(tok)), nil)
			}
			stack = append(stack, &jsonFrame{object: true, names: map[string]bool{}, wantKey: true})
			continue
		}
		if len(stack) == 0 {
			return nil // trailing data: the decoder reports it
		}
		top := stack[len(stack)-1]
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].valueDone()
			}
			continue
		}
		if top.object && top.wantKey {
			name, _ := tok.(string)
			if !validJSONString(raw) {
				field := top.path
				if field == "" {
					field = "(body)"
				}
				return malformed(fmt.Sprintf("a member name in %s is not valid UTF-8", field), nil,
					FieldProblem{Field: field, Reason: "has a member name that is not valid UTF-8"})
			}
			if top.names[name] {
				field := joinPath(top.path, name)
				return malformed(fmt.Sprintf("member %q occurs more than once", field), nil,
					FieldProblem{Field: field, Reason: "occurs more than once; send each member once"})
			}
			top.names[name], top.name, top.wantKey = true, name, false
			continue
		}
		path := top.child()
		switch t := tok.(type) {
		case json.Delim: // '{' or '['
			stack = append(stack, &jsonFrame{path: path, object: t == '{', names: map[string]bool{}, wantKey: true})
			continue
		case string:
			if !validJSONString(raw) {
				return malformed(fmt.Sprintf("%s is not valid UTF-8", path), nil,
					FieldProblem{Field: path, Reason: "is not valid UTF-8"})
			}
		}
		top.valueDone()
	}
}

// validJSONString reports whether the raw bytes of a string token (with the delimiters
// around it) are valid UTF-8 and escape no lone UTF-16 surrogate.
func validJSONString(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i+5 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // skip the escaped character, which may itself be a backslash
			continue
		}
		r, ok := hexRune(raw[i+2:])
		if !ok {
			return false
		}
		switch {
		case utf16.IsSurrogate(r) && r < 0xDC00: // a high surrogate needs a low one next
			if i+11 >= len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' {
				return false
			}
			lo, ok := hexRune(raw[i+8:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 11
		case utf16.IsSurrogate(r): // a low surrogate on its own
			return false
		default:
			i += 5
		}
	}
	return true
}

func hexRune(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}

// jsonTokenKind names the JSON type of a first token for an error message.
func jsonTokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "another JSON value"
}

func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil // curl without -H and many tools omit it; the body is parsed as JSON anyway
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &requestError{
		status: http.StatusUnsupportedMediaType, typ: ProblemUnsupportedMediaType, title: "Unsupported media type",
		detail: fmt.Sprintf("the body must be application/json (UTF-8), not %q", ct), cause: err,
	}
}

func tooLarge(limit int64, cause error) error {
	return &requestError{
		status: http.StatusRequestEntityTooLarge, typ: ProblemPayloadTooLarge, title: "Payload too large",
		detail: fmt.Sprintf("the body must not exceed %d bytes", limit), cause: cause,
	}
}

// decodeError classifies a json.Decoder error; the messages name fields, never Go types.
func (s *Server) decodeError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
		ufe *unknownFieldError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(s.cfg.MaxBodyBytes, err)
	case errors.Is(err, io.EOF):
		return malformed("the body is empty; it must be a JSON object", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the body ends in the middle of a JSON value", err)
	case errors.As(err, &se):
		return malformed(fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset), err)
	case errors.As(err, &te):
		if te.Field == "" {
			return malformed("the body must be a JSON object", err)
		}
		reason := "must be " + jsonKind(te.Type.Kind())
		return malformed(fmt.Sprintf("%s %s", te.Field, reason), err, FieldProblem{Field: te.Field, Reason: reason})
	case errors.As(err, &ufe):
		return malformed(fmt.Sprintf("unknown member %q", ufe.field), err, FieldProblem{Field: ufe.field, Reason: "is not a known field"})
	}
	if name, ok := unknownField(err); ok {
		reason := "is not a known field"
		if readOnlyFields[name] {
			reason = "is read-only; the server sets it"
		}
		return malformed(fmt.Sprintf("member %q is not accepted", name), err, FieldProblem{Field: name, Reason: reason})
	}
	return malformed("the body could not be read", err)
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer that fits in 64 bits"
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "a boolean"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "of another type"
	}
}

// toCommand checks that required members are present and fills the documented defaults.
// When something is missing it still runs the domain's validation on the rest, so the 422
// lists every problem of the request at once.
func (in productInputJSON) toCommand() (command.ProductInput, error) {
	var missing []FieldProblem
	req := func(present bool, field string) {
		if !present {
			missing = append(missing, FieldProblem{Field: field, Reason: "is required"})
		}
	}
	req(in.SKU != nil, "sku")
	req(in.Name != nil, "name")
	if in.Price == nil {
		req(false, "price")
	} else {
		req(in.Price.Amount != nil, "price.amount")
		req(in.Price.Currency != nil, "price.currency")
	}
	req(in.Stock != nil, "stock")

	out := command.ProductInput{
		SKU: deref(in.SKU), Name: deref(in.Name), Description: deref(in.Description),
		Category: deref(in.Category), Brand: deref(in.Brand), Stock: deref(in.Stock),
		Attributes: in.Attributes,
	}
	if in.Price != nil {
		out.Amount = deref(in.Price.Amount)
		out.Currency = deref(in.Price.Currency)
	}
	if out.Attributes == nil {
		out.Attributes = map[string]string{}
	}
	if in.Tags == nil {
		out.TagsOmitted = true
	} else {
		out.Tags = *in.Tags
	}
	if len(missing) == 0 {
		return out, nil
	}
	fields := missing
	if _, err := out.Details(); err != nil {
		fields = mergeFieldProblems(missing, err)
	}
	return command.ProductInput{}, &requestError{
		status: http.StatusUnprocessableEntity, typ: ProblemValidation, title: "Invalid product",
		detail: fmt.Sprintf("the product has %d invalid field(s); see errors", len(fields)), fields: fields,
	}
}

// mergeFieldProblems adds the domain's complaints to the missing members, skipping fields
// already reported missing (an absent sku is "required", not also "empty").
func mergeFieldProblems(missing []FieldProblem, err error) []FieldProblem {
	p, _ := problemFor(err)
	seen := make(map[string]bool, len(missing))
	for _, m := range missing {
		seen[m.Field] = true
		if m.Field == "price" {
			seen["price.amount"], seen["price.currency"] = true, true
		}
	}
	out := missing
	for _, f := range p.Errors {
		if !seen[f.Field] {
			out = append(out, f)
		}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// fingerprint identifies a create request for the idempotency check. It hashes the decoded
// and defaulted input, not the raw bytes, so a retry that re-serialises the same product
// with other whitespace, member order or explicit defaults is still the same request.
func fingerprint(r *http.Request, in command.ProductInput) string {
	canonical := struct {
		SKU         string            `json:"sku"`
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Category    string            `json:"category"`
		Brand       string            `json:"brand"`
		Amount      int64             `json:"amount"`
		Currency    string            `json:"currency"`
		Stock       int64             `json:"stock"`
		Attributes  map[string]string `json:"attributes"` // encoding/json sorts map keys
		// omitempty: a request without tags keeps the fingerprint it had before tags
		// existed, so a retry across the upgrade is still recognised.
		Tags []string `json:"tags,omitempty"`
	}{in.SKU, in.Name, in.Description, in.Category, in.Brand, in.Amount, in.Currency, in.Stock, in.Attributes, in.Tags}
	b, err := json.Marshal(canonical)
	if err != nil {
		panic(fmt.Sprintf("httpport: marshal fingerprint: %v", err)) // strings and ints always marshal
	}
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencyKey returns the Idempotency-Key header, "" when absent.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values(headerIdempotencyKey)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", invalidParameter(headerIdempotencyKey, "must be sent once")
	}
	key := strings.TrimSpace(vals[0])
	switch {
	case key == "":
		return "", invalidParameter(headerIdempotencyKey, "must not be empty")
	case len(key) > maxIdempotencyKeyLength:
		return "", invalidParameter(headerIdempotencyKey, fmt.Sprintf("must be at most %d characters", maxIdempotencyKeyLength))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", invalidParameter(headerIdempotencyKey, "must contain printable ASCII characters only")
		}
	}
	return key, nil
}

// ifMatchVersion parses If-Match as a product version. It accepts the bare version, the
// strong entity tag we send ("3") and its weak form (W/"3"), because clients and proxies
// differ in which they echo back.
func ifMatchVersion(r *http.Request) (version int64, present bool, err error) {
	vals := r.Header.Values(headerIfMatch)
	if len(vals) == 0 {
		return 0, false, nil
	}
	if len(vals) > 1 {
		return 0, true, invalidParameter(headerIfMatch, "must name exactly one version")
	}
	s := strings.TrimSpace(vals[0])
	s = strings.TrimPrefix(s, "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
		return 0, true, invalidParameter(headerIfMatch, `must be a product version such as 3 or "3"`)
	}
	v, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || v < 1 {
		return 0, true, invalidParameter(headerIfMatch, "must be a positive integer version")
	}
	return v, true, nil
}

// requiredIfMatch returns the If-Match version of a write that must carry one, or 428 whose
// detail ends with why (the write's own risk).
func requiredIfMatch(r *http.Request, why string) (int64, error) {
	version, present, err := ifMatchVersion(r)
	if err != nil {
		return 0, err
	}
	if !present {
		return 0, &requestError{
			status: http.StatusPreconditionRequired, typ: ProblemPreconditionRequired, title: "Precondition required",
			detail: "send If-Match with the version (ETag) you last read, " + why,
			fields: []FieldProblem{{Field: headerIfMatch, Reason: "is required"}},
		}
	}
	return version, nil
}

// etag is the entity tag of a product representation. The version changes with every change
// of the product, so it is a strong validator.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }
