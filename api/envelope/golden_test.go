package envelope_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/eventschema"
)

// golden reads the committed fixture of data version v of event type t: real JSON as the
// release that wrote version v published it. Fixtures are never edited or removed; a new data
// version adds one per event type.
func golden(t testing.TB, typ product.EventType, v int) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "golden", fmt.Sprintf("%s.v%d.json", typ, v)))
	if err != nil {
		t.Fatalf("no golden fixture of %s data version %d (every version of every type needs one): %v", typ, v, err)
	}
	return raw
}

// Every data version ever published of every event type decodes and upcasts to the current
// shape, forever.
func TestGoldenFixturesOfEveryVersionDecode(t *testing.T) {
	for _, typ := range product.EventTypes() {
		newest := envelope.DataVersion(typ)
		if newest < 2 {
			t.Fatalf("%s: newest data version %d; tags made it 2", typ, newest)
		}
		current, err := envelope.Unmarshal(golden(t, typ, newest))
		if err != nil {
			t.Fatalf("%s v%d: %v", typ, newest, err)
		}
		for v := 1; v <= newest; v++ {
			raw := golden(t, typ, v)
			e, err := envelope.Unmarshal(raw)
			if err != nil {
				t.Errorf("%s v%d does not decode: %v", typ, v, err)
				continue
			}
			if e.Type != typ || e.AggregateVersion < 1 || e.ID == "" || e.State.Details.SKU == "" ||
				e.State.Details.Attributes == nil || e.State.Details.Tags == nil {
				t.Errorf("%s v%d decoded to %+v", typ, v, e)
			}
			// The fixtures of one type describe the same event; versions differ only in what
			// later versions added, which upcasting fills with what history implies.
			want := current
			if v < 2 {
				want.State.Details.Tags = []string{}
			}
			if d := diffEvents(e, want); d != "" {
				t.Errorf("%s v%d upcast differs from the current version: %s", typ, v, d)
			}
		}
		// The newest version is exactly what this build writes.
		msg, err := envelope.Marshal(current)
		if err != nil {
			t.Fatal(err)
		}
		var fixture bytes.Buffer
		if err := json.Compact(&fixture, golden(t, typ, newest)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg.Payload, fixture.Bytes()) {
			t.Errorf("%s: this build writes\n%s\nbut the fixture of v%d is\n%s", typ, msg.Payload, newest, fixture.Bytes())
		}
		if got := msg.Metadata.Get(envelope.MetaDataVersion); got != fmt.Sprint(newest) {
			t.Errorf("%s: data_version header %q, want %d", typ, got, newest)
		}
	}
}

func diffEvents(a, b product.Event) string {
	switch {
	case a.ID != b.ID || a.Type != b.Type || a.AggregateID != b.AggregateID || a.AggregateVersion != b.AggregateVersion ||
		!a.OccurredAt.Equal(b.OccurredAt):
		return fmt.Sprintf("identity %v %v %v %v %v vs %v %v %v %v %v", a.ID, a.Type, a.AggregateID, a.AggregateVersion, a.OccurredAt,
			b.ID, b.Type, b.AggregateID, b.AggregateVersion, b.OccurredAt)
	}
	x, y := envelope.FromSnapshot(a.State), envelope.FromSnapshot(b.State)
	jx, _ := json.Marshal(x)
	jy, _ := json.Marshal(y)
	if !bytes.Equal(jx, jy) {
		return fmt.Sprintf("state\n%s\nvs\n%s", jx, jy)
	}
	return ""
}

// Every golden fixture is valid under the JSON Schema of its data version, and the schemas
// tell versions apart: a version 1 event is not a version 2 event.
func TestGoldenFixturesMatchTheirSchemas(t *testing.T) {
	for _, typ := range product.EventTypes() {
		for v := 1; v <= envelope.DataVersion(typ); v++ {
			raw := golden(t, typ, v)
			if err := eventschema.Validate(raw); err != nil {
				t.Errorf("%s v%d: %v", typ, v, err)
			}
			for other := 1; other <= envelope.DataVersion(typ); other++ {
				if other != v && eventschema.ValidateAs(other, raw) == nil {
					t.Errorf("%s v%d also passes the schema of v%d: the schemas do not pin the version", typ, v, other)
				}
			}
		}
	}
}

// What this build writes validates against the schema of the newest version, for every event
// type and for the corner cases of the state (no attributes, no tags, a tombstone).
func TestProducedEventsMatchTheSchema(t *testing.T) {
	events := sampleEvents(t)
	d, err := product.NewDetails("S-2", "Bare", "", "", "", 0, "JPY", 0, nil, "only-tag")
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(events[0].OccurredAt), d, events[0].OccurredAt)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, p.PopEvents()...)
	for _, e := range events {
		msg, err := envelope.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := eventschema.Validate(msg.Payload); err != nil {
			t.Errorf("%s: %v\n%s", e.Type, err, msg.Payload)
		}
		if v, _ := eventschema.DataVersion(msg.Payload); v != envelope.DataVersion(e.Type) {
			t.Errorf("%s written as data version %d, want the newest %d", e.Type, v, envelope.DataVersion(e.Type))
		}
	}
	// The schema is not a rubber stamp.
	msg, _ := envelope.Marshal(events[0])
	broken := bytes.Replace(msg.Payload, []byte(`"tags":[`), []byte(`"labels":[`), 1)
	if eventschema.Validate(broken) == nil {
		t.Error("an event with an unversioned member change passes the schema")
	}
}

// History is not re-validated on the way in: an event written under looser rules (a name of
// 300 characters, a currency since withdrawn, a SKU with spaces) decodes as it was written.
// Only structural damage is refused.
func TestHistoryIsNotRevalidated(t *testing.T) {
	raw := golden(t, product.EventCreated, 1)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 300)
	data := m["data"].(map[string]any)
	data["name"], data["sku"] = long, "sku with spaces"
	data["price"] = map[string]any{"amount": 100, "currency": "DEM"}
	data["attributes"] = nil
	legacy, _ := json.Marshal(m)
	e, err := envelope.Unmarshal(legacy)
	if err != nil {
		t.Fatalf("a legacy event is refused: %v", err)
	}
	if e.State.Details.Name != long || e.State.Details.SKU != "sku with spaces" || e.State.Details.Price.Currency() != "DEM" ||
		e.State.Details.Attributes == nil || !slices.Equal(e.State.Details.Tags, []string{}) {
		t.Fatalf("decoded %+v", e.State.Details)
	}
	data["version"] = -1
	broken, _ := json.Marshal(m)
	if _, err := envelope.Unmarshal(broken); !errors.Is(err, envelope.ErrUndecodable) {
		t.Fatalf("negative version: %v, want ErrUndecodable", err)
	}
}
