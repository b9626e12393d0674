package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/marketplace/catalog/domain/product"
)

// upcaster turns the data of one version into the next. It works on the members of the data
// object, so a step needs no Go type of an old version and old versions need no code but
// their step.
type upcaster func(data map[string]json.RawMessage) error

// upcasters holds, per event type, the steps from data version 1 on: upcasters[t][i] turns
// version i+1 into version i+2, and the newest version of t is len(upcasters[t])+1. This is
// the one place where old payloads meet the current shape.
//
// A new data version of a type appends a step here, a golden fixture of the new version under
// testdata/golden, its JSON Schema under api/events and its message in api/asyncapi.yaml;
// tests fail until all four exist. Steps are never removed: the event log and the DLQ keep
// old events for as long as their retention says, and a rebuild from Kafka reads them all.
//
// The versions so far:
//
//	1  the product state as first published (no data_version member in the envelope)
//	2  tags added (a list of strings); a product published before tags existed had none
var upcasters = map[product.EventType][]upcaster{
	product.EventCreated:      {addTags},
	product.EventUpdated:      {addTags},
	product.EventPriceChanged: {addTags},
	product.EventStockChanged: {addTags},
	product.EventDeleted:      {addTags},
}

// DataVersion is the newest data version of event type t: the version writers write.
func DataVersion(t product.EventType) int { return len(upcasters[t]) + 1 }

// addTags is version 1 to 2: tags did not exist, so the product had none.
func addTags(data map[string]json.RawMessage) error {
	data["tags"] = json.RawMessage(`[]`)
	return nil
}

// decodeData decodes data of the given version of t and upcasts it to the newest version.
// Data of the newest version is decoded directly, so the live path pays for no upcasting.
func decodeData(t product.EventType, version int, raw json.RawMessage) (Product, error) {
	newest := DataVersion(t)
	switch {
	case version < 1:
		return Product{}, fmt.Errorf("%w: data_version %d", ErrUndecodable, version)
	case version > newest:
		return Product{}, fmt.Errorf("%w: data_version %d of %s (this build reads 1 to %d; a newer release wrote it)",
			ErrUnsupported, version, t, newest)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Product{}, fmt.Errorf("%w: data is not an object", ErrUndecodable)
	}
	if version < newest {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return Product{}, fmt.Errorf("%w: data: %w", ErrUndecodable, err)
		}
		for v, step := range upcasters[t][version-1:] {
			if err := step(members); err != nil {
				return Product{}, fmt.Errorf("%w: data: upcast %s from version %d: %w", ErrUndecodable, t, version+v, err)
			}
		}
		up, err := json.Marshal(members)
		if err != nil {
			return Product{}, fmt.Errorf("%w: data: %w", ErrUndecodable, err)
		}
		raw = up
	}
	var p Product
	if err := json.Unmarshal(raw, &p); err != nil {
		return Product{}, fmt.Errorf("%w: data: %w", ErrUndecodable, err)
	}
	return p, nil
}
