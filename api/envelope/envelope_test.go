package envelope_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

func sampleEvents(t *testing.T) []product.Event {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	d, err := product.NewDetails("SKU-1", "Lamp", "Bright", "home", "Acme", 1999, "EUR", 5, map[string]string{"color": "red"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ChangePrice(mustMoney(t, 999), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(now.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return p.PopEvents()
}

func mustMoney(t *testing.T, a int64) product.Money {
	m, err := product.NewMoney(a, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTripAndContract(t *testing.T) {
	for _, e := range sampleEvents(t) {
		msg, err := envelope.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if msg.UUID != e.ID.String() || msg.Metadata.Get(envelope.MetaAggregateID) != e.AggregateID.String() ||
			msg.Metadata.Get(envelope.MetaEventType) != string(e.Type) {
			t.Fatalf("metadata %v does not mirror the event", msg.Metadata)
		}
		// The public contract (docs/ARCHITECTURE.md, "Public contract"): these top-level fields, RFC 3339 UTC times.
		var raw map[string]any
		if err := json.Unmarshal(msg.Payload, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"event_id", "event_type", "schema_version", "aggregate_id", "aggregate_version", "occurred_at", "data"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("envelope lacks %s: %s", k, msg.Payload)
			}
		}
		if !strings.HasSuffix(raw["occurred_at"].(string), "Z") {
			t.Errorf("occurred_at %v is not UTC", raw["occurred_at"])
		}
		back, err := envelope.Unmarshal(msg.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if back.ID != e.ID || back.Type != e.Type || back.AggregateVersion != e.AggregateVersion ||
			!back.OccurredAt.Equal(e.OccurredAt) || back.State.Details.Price != e.State.Details.Price ||
			back.State.Deleted() != e.State.Deleted() || back.State.Details.Attributes["color"] != "red" {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, back)
		}
	}
}

func TestUnmarshalRejectsWhatIsNotAProductEvent(t *testing.T) {
	good, err := envelope.Marshal(sampleEvents(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(good.Payload, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := map[string]struct {
		payload []byte
		want    error
	}{
		"not json":            {[]byte(`{"this is":"not an event"`), envelope.ErrUndecodable},
		"empty":               {nil, envelope.ErrUndecodable},
		"unknown type":        {mutate(func(m map[string]any) { m["event_type"] = "product.renamed" }), envelope.ErrUnsupported},
		"future schema":       {mutate(func(m map[string]any) { m["schema_version"] = 2 }), envelope.ErrUnsupported},
		"bad aggregate id":    {mutate(func(m map[string]any) { m["aggregate_id"] = "x" }), envelope.ErrUndecodable},
		"version mismatch":    {mutate(func(m map[string]any) { m["aggregate_version"] = 7 }), envelope.ErrUndecodable},
		"state without id":    {mutate(func(m map[string]any) { delete(m["data"].(map[string]any), "id") }), envelope.ErrUndecodable},
		"data not an object":  {mutate(func(m map[string]any) { m["data"] = []any{1} }), envelope.ErrUndecodable},
		"data missing":        {mutate(func(m map[string]any) { delete(m, "data") }), envelope.ErrUndecodable},
		"mistyped data":       {mutate(func(m map[string]any) { m["data"].(map[string]any)["tags"] = "a,b" }), envelope.ErrUndecodable},
		"future data version": {mutate(func(m map[string]any) { m["data_version"] = 99 }), envelope.ErrUnsupported},
		"data version 0":      {mutate(func(m map[string]any) { m["data_version"] = 0 }), envelope.ErrUndecodable},
		"delete without tomb": {mutate(func(m map[string]any) { m["event_type"] = "product.deleted" }), envelope.ErrUndecodable},
	}
	for name, c := range cases {
		if _, err := envelope.Unmarshal(c.payload); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", name, err, c.want)
		}
	}
}

func TestCloudEventsHeaders(t *testing.T) {
	e := sampleEvents(t)[2] // the tombstone
	msg, err := envelope.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	add, err := envelope.CloudEvents("/catalog")
	if err != nil {
		t.Fatal(err)
	}
	add(msg)
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": e.ID.String(), "ce_source": "/catalog", "ce_type": "product.deleted",
		"ce_time": e.OccurredAt.UTC().Format(time.RFC3339Nano), "ce_subject": e.AggregateID.String(),
		"ce_dataschema": envelope.DataSchema(envelope.DataVersion(e.Type)), "content-type": "application/json",
	}
	for k, v := range want {
		if got := msg.Metadata.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// The catalog's own headers stay.
	if msg.Metadata.Get(envelope.MetaEventType) != "product.deleted" || msg.Metadata.Get(envelope.MetaDataVersion) == "" {
		t.Errorf("own headers lost: %v", msg.Metadata)
	}
	for _, bad := range []string{"", "has space", "ctl\x01"} {
		if _, err := envelope.CloudEvents(bad); err == nil {
			t.Errorf("source %q accepted", bad)
		}
	}
}
