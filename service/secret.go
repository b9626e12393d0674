package service

import (
	"log/slog"
)

// Redacted is what a secret shows instead of its value everywhere it could be printed.
const Redacted = "[redacted]"

// Secret is a credential from the environment or a file (a password, an API key, the admin
// token). Printing it in any way (%v, %s, %#v, a slog attribute, JSON, text encoding) shows
// Redacted, so a configuration that ends up in a log line or an error by mistake cannot leak
// it; Reveal is the one way to read the value, at the place that hands it to a client.
type Secret struct{ v string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the credential itself. Call it only where a client library takes it.
func (s Secret) Reveal() string { return s.v }

// IsSet reports whether the secret has a value.
func (s Secret) IsSet() bool { return s.v != "" }

// String implements fmt.Stringer without the value.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer without the value (%#v).
func (s Secret) GoString() string { return `service.Secret("` + s.String() + `")` }

// LogValue implements slog.LogValuer without the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler (and so JSON) without the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
