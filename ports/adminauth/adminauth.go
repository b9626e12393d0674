// Package adminauth checks the admin token (ADMIN_TOKEN) that guards every operator action of
// the catalog: the gRPC admin services, and any HTTP page or endpoint that can change the read
// model. It is the one place that knows how a token is presented and compared, so every port
// that takes it accepts and refuses exactly the same requests.
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"
)

// Header is the request header (gRPC metadata key) that carries the token, as
// "Bearer <token>".
const Header = "authorization"

// ErrUnauthenticated is what a failed check returns. It says nothing about the token: not
// whether one was sent, nor how it differs, nor how long the right one is.
var ErrUnauthenticated = errors.New("admin authentication required: send the admin token as \"authorization: Bearer <ADMIN_TOKEN>\"")

// Verifier compares presented tokens with the configured one in constant time. It keeps only
// the token's SHA-256, so the comparison takes the same time whatever the lengths, and a
// memory dump of the verifier does not show the token itself.
type Verifier struct {
	sum [sha256.Size]byte
}

// NewVerifier returns the verifier of token; an empty token is an error (a deployment that
// wants no token runs without a Verifier).
func NewVerifier(token string) (*Verifier, error) {
	if token == "" {
		return nil, errors.New("adminauth: empty token")
	}
	return &Verifier{sum: sha256.Sum256([]byte(token))}, nil
}

// Check reports whether token is the admin token (a login form's field, for example).
func (v *Verifier) Check(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], v.sum[:]) == 1
}

// CheckAuthorization checks an "authorization" header value: "Bearer <token>", the scheme
// case-insensitive as RFC 9110 says. Anything else fails with ErrUnauthenticated.
func (v *Verifier) CheckAuthorization(value string) error {
	scheme, token, ok := strings.Cut(strings.TrimSpace(value), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !v.Check(strings.TrimSpace(token)) {
		return ErrUnauthenticated
	}
	return nil
}

// Bearer is the header value a client sends for token.
func Bearer(token string) string { return "Bearer " + token }
