package query

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// cursorFormat is the version of the cursor envelope; cursors of another format are invalid.
const cursorFormat = 1

// cursorEnvelope is what a NextCursor holds: base64url of this JSON. It is opaque to clients;
// the sort and the hash tie it to its search, and Position is the read model's own place after
// the last hit (engine sort values, say), which the read model checks before using it.
type cursorEnvelope struct {
	Format   int             `json:"f"`
	Sort     SortOrder       `json:"s"`
	Hash     string          `json:"h"`
	Position json.RawMessage `json:"p"`
}

// EncodeCursor is the cursor of the page after position for the search of this sort and hash
// (SearchProducts.Hash). Every read model issues its cursors through it, so that they all
// refuse a foreign or tampered cursor alike.
func EncodeCursor(sort SortOrder, hash string, position any) (string, error) {
	pos, err := json.Marshal(position)
	if err != nil {
		return "", fmt.Errorf("cursor: %w", err)
	}
	raw, err := json.Marshal(cursorEnvelope{Format: cursorFormat, Sort: sort, Hash: hash, Position: pos})
	if err != nil {
		return "", fmt.Errorf("cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// DecodeCursor decodes into position (strictly: no unknown fields, nothing after it) the
// position of a cursor issued by EncodeCursor for this sort and hash. Anything else is an
// ErrInvalidCursor error. Whether the position fits the engine is the caller's to check.
func DecodeCursor(s string, sort SortOrder, hash string, position any) error {
	invalid := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidCursor, why) }
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return invalid("not a cursor of this service")
	}
	var c cursorEnvelope
	if err := strictJSON(raw, &c); err != nil {
		return invalid("not a cursor of this service")
	}
	switch {
	case c.Format != cursorFormat:
		return invalid("not a cursor of this service")
	case c.Sort != sort:
		return invalid(fmt.Sprintf("the cursor belongs to sort %q, not %q", c.Sort, sort))
	case c.Hash != hash:
		return invalid("the cursor belongs to another search")
	case len(c.Position) == 0 || strictJSON(c.Position, position) != nil:
		return invalid("malformed position")
	}
	return nil
}

func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the value")
	}
	return nil
}
