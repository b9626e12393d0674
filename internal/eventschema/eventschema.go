// Package eventschema validates product event payloads against the committed JSON Schemas of
// api/events with santhosh-tekuri/jsonschema, for tests of every package that produces or
// reads events: the schema of an event is chosen by its data_version (absent means 1).
package eventschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/marketplace/catalog/api"
)

var (
	mu       sync.Mutex
	compiled = map[int]*jsonschema.Schema{}
)

// Schema returns the compiled schema of data version v; formats (date-time) are asserted.
func Schema(v int) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := compiled[v]; ok {
		return s, nil
	}
	file := api.EventSchemaFile(v)
	raw, err := fs.ReadFile(api.EventSchemas(), file)
	if err != nil {
		return nil, fmt.Errorf("event schema of data version %d: %w", v, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(file, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s, err := c.Compile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	compiled[v] = s
	return s, nil
}

// DataVersion reads the data_version of an event payload; 1 when it has none.
func DataVersion(payload []byte) (int, error) {
	var env struct {
		DataVersion *int `json:"data_version"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return 0, fmt.Errorf("not a JSON object: %w", err)
	}
	if env.DataVersion == nil {
		return 1, nil
	}
	return *env.DataVersion, nil
}

// Validate checks payload against the schema of its own data version.
func Validate(payload []byte) error {
	v, err := DataVersion(payload)
	if err != nil {
		return err
	}
	return ValidateAs(v, payload)
}

// ValidateAs checks payload against the schema of data version v.
func ValidateAs(v int, payload []byte) error {
	s, err := Schema(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("against %s: %w", api.EventSchemaFile(v), err)
	}
	return nil
}
