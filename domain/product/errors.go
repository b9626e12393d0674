package product

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the product domain. Adapters wrap them with %w; ports map them to
// protocol status codes, so callers test with errors.Is and never compare messages.
var (
	// ErrNotFound means no product has the requested id.
	ErrNotFound = errors.New("product not found")
	// ErrDeleted means the product exists only as a tombstone.
	ErrDeleted = errors.New("product deleted")
	// ErrVersionConflict means the caller's expected version is not the stored one.
	ErrVersionConflict = errors.New("product version conflict")
	// ErrDuplicateSKU means another product already uses the SKU.
	ErrDuplicateSKU = errors.New("sku already in use")
	// ErrInvalidID means a product id is not a UUID.
	ErrInvalidID = errors.New("invalid product id")
	// ErrInvalid is matched by every ValidationError.
	ErrInvalid = errors.New("invalid product")
	// ErrIdempotencyKeyReused means an idempotency key was sent again with a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
)

// FieldError names one invalid field and why it is invalid.
type FieldError struct {
	// Field is the JSON path of the field, e.g. "price.currency".
	Field string
	// Reason says what is wrong in words a client can act on.
	Reason string
}

// ValidationError lists every invalid field of a request, so a client fixes them in one round.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Reason
	}
	return "invalid product: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for every ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// VersionConflictError carries both versions so the client can refetch and retry.
type VersionConflictError struct {
	// Expected is the version the caller based its change on.
	Expected int64
	// Actual is the stored version.
	Actual int64
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("product version conflict: expected %d, stored %d", e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

type fieldErrors []FieldError

func (f *fieldErrors) add(field, reason string) { *f = append(*f, FieldError{field, reason}) }

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &ValidationError{Fields: f}
}
