// Package api holds the public contracts of the service that are documents rather than Go
// code: the AsyncAPI document of the event topics (asyncapi.yaml) and the JSON Schema of every
// data version of product events (events/). They are embedded, so the binary serves the
// documents that match its code and tests validate against the committed files.
package api

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
)

//go:embed asyncapi.yaml
var asyncAPI []byte

//go:embed events/*.schema.json
var events embed.FS

// AsyncAPIDocument returns a copy of the AsyncAPI document of product.events and
// dlq.product.events, so no caller can change what the server serves.
func AsyncAPIDocument() []byte { return bytes.Clone(asyncAPI) }

// EventSchemas is the directory of the event JSON Schemas, one file per data version
// (EventSchemaFile names them).
func EventSchemas() fs.FS { return events }

// EventSchemaFile is the path in EventSchemas of the JSON Schema of a product event whose data
// has version dataVersion. Every event type shares the product state as data, so one schema
// per data version covers them all.
func EventSchemaFile(dataVersion int) string {
	return fmt.Sprintf("events/product-event-v%d.schema.json", dataVersion)
}
