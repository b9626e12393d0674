package product

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// ID identifies a product. It is a UUID in its canonical lower-case text form.
type ID string

// NewID returns a fresh UUIDv7. Time-ordered ids keep the products primary key and the read
// model's document ids append-mostly, which matters for B-tree locality on a hot write path.
func NewID(now time.Time) ID {
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("product: crypto/rand failed: %v", err)) // the kernel's RNG does not fail
	}
	ms := uint64(now.UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(b[0:6], ts[2:8])
	b[6] = (b[6] & 0x0f) | 0x70 // version 7
	b[8] = (b[8] & 0x3f) | 0x80 // RFC 4122 variant
	return ID(formatUUID(b))
}

// ParseID validates s as a UUID and returns it in canonical form.
func ParseID(s string) (ID, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalidID, s)
	}
	// Exactly 32 hex digits must remain: a dash anywhere else would shorten the digits, and
	// hex.Decode silently decodes a shorter even-length input into fewer bytes.
	raw := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	var b [16]byte
	if n, err := hex.Decode(b[:], []byte(raw)); err != nil || n != len(b) {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalidID, s)
	}
	return ID(formatUUID(b)), nil
}

// String returns the canonical text form.
func (id ID) String() string { return string(id) }

func formatUUID(b [16]byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
