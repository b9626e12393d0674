// Package envelope is the public wire format of product events on Kafka, shared by the
// producing side (the outbox) and the consuming side (the projector, the rebuild): a JSON
// envelope with the event's identity and the full product state, mirrored in message metadata
// (Kafka headers) so tools can route and filter without parsing the value.
//
// Two versions describe a message. schema_version is the version of the envelope itself (the
// members around data); it has been 1 from the start. data_version is the version of the
// payload in data, per event type: writers always write the newest (DataVersion), readers
// accept every version ever published and upcast it step by step to the newest (upcast.go).
// Events written before data_version existed carry none and are version 1. The JSON Schema of
// every payload version is in api/events, and api/asyncapi.yaml describes the topics.
package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/domain/product"
)

// Metadata keys set on every event message; watermill-kafka turns them into Kafka headers.
const (
	MetaEventID          = "event_id"
	MetaEventType        = "event_type"
	MetaSchemaVersion    = "schema_version"
	MetaDataVersion      = "data_version"
	MetaAggregateID      = "aggregate_id"
	MetaAggregateVersion = "aggregate_version"
	MetaOccurredAt       = "occurred_at"
)

// SchemaVersion is the version of the envelope: the members around data. A change of data
// alone is a new data_version, not a new schema_version; consumers reject a schema_version
// they do not know instead of guessing.
const SchemaVersion = 1

// ErrUndecodable marks a message that is not a product event envelope. Retrying cannot fix it.
var ErrUndecodable = errors.New("undecodable event")

// ErrUnsupported marks an envelope whose type, schema version or data version this build does
// not know (a newer release wrote it). Retrying cannot fix it; upgrading the reader does.
var ErrUnsupported = errors.New("unsupported event")

// Envelope is the JSON value of a message on product.events, as writers write it.
type Envelope struct {
	EventID          string    `json:"event_id"`
	EventType        string    `json:"event_type"`
	SchemaVersion    int       `json:"schema_version"`
	DataVersion      int       `json:"data_version"`
	AggregateID      string    `json:"aggregate_id"`
	AggregateVersion int64     `json:"aggregate_version"`
	OccurredAt       time.Time `json:"occurred_at"`
	Data             Product   `json:"data"`
}

// Price is money in minor units.
type Price struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Product is the full product state carried by an event in the newest data version; the same
// shape as the REST API's product plus deleted_at.
type Product struct {
	ID          string            `json:"id"`
	SKU         string            `json:"sku"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Brand       string            `json:"brand"`
	Price       Price             `json:"price"`
	Stock       int64             `json:"stock"`
	Attributes  map[string]string `json:"attributes"`
	Tags        []string          `json:"tags"`
	Version     int64             `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	DeletedAt   *time.Time        `json:"deleted_at"`
}

// FromSnapshot converts domain state to its wire form.
func FromSnapshot(s product.Snapshot) Product {
	attrs := s.Details.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	tags := s.Details.Tags
	if tags == nil {
		tags = []string{}
	}
	var del *time.Time
	if s.DeletedAt != nil {
		t := s.DeletedAt.UTC()
		del = &t
	}
	return Product{
		ID: s.ID.String(), SKU: s.Details.SKU, Name: s.Details.Name, Description: s.Details.Description,
		Category: s.Details.Category, Brand: s.Details.Brand,
		Price: Price{Amount: s.Details.Price.Amount(), Currency: s.Details.Price.Currency()},
		Stock: s.Details.Stock, Attributes: attrs, Tags: tags, Version: s.Version,
		CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(), DeletedAt: del,
	}
}

// ToSnapshot converts the wire form to domain state. It trusts history: the details are taken
// as they were published (product.UnmarshalDetailsFromHistory), never checked against today's
// rules, so an event that was valid when it was written stays readable after a rule is
// tightened. Only what makes the state meaningless is refused: an id that is not a UUID, a
// version below 1.
func (p Product) ToSnapshot() (product.Snapshot, error) {
	id, err := product.ParseID(p.ID)
	if err != nil {
		return product.Snapshot{}, err
	}
	if p.Version < 1 {
		return product.Snapshot{}, fmt.Errorf("version %d is below 1", p.Version)
	}
	d := product.UnmarshalDetailsFromHistory(p.SKU, p.Name, p.Description, p.Category, p.Brand,
		p.Price.Amount, p.Price.Currency, p.Stock, p.Attributes, p.Tags)
	return product.Snapshot{ID: id, Details: d, Version: p.Version, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, DeletedAt: p.DeletedAt}, nil
}

// Marshal turns a domain event into a Watermill message whose UUID is the event id. It always
// writes the newest data version of the event's type.
func Marshal(e product.Event) (*message.Message, error) {
	if !e.Type.Valid() {
		return nil, fmt.Errorf("envelope: marshal %s: unknown event type %q", e.ID, e.Type)
	}
	env := Envelope{
		EventID: e.ID.String(), EventType: string(e.Type), SchemaVersion: SchemaVersion, DataVersion: DataVersion(e.Type),
		AggregateID: e.AggregateID.String(), AggregateVersion: e.AggregateVersion,
		OccurredAt: e.OccurredAt.UTC(), Data: FromSnapshot(e.State),
	}
	payload, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("envelope: marshal %s: %w", e.ID, err)
	}
	msg := message.NewMessage(env.EventID, payload)
	msg.Metadata.Set(MetaEventID, env.EventID)
	msg.Metadata.Set(MetaEventType, env.EventType)
	msg.Metadata.Set(MetaSchemaVersion, fmt.Sprint(env.SchemaVersion))
	msg.Metadata.Set(MetaDataVersion, fmt.Sprint(env.DataVersion))
	msg.Metadata.Set(MetaAggregateID, env.AggregateID)
	msg.Metadata.Set(MetaAggregateVersion, fmt.Sprint(env.AggregateVersion))
	msg.Metadata.Set(MetaOccurredAt, env.OccurredAt.Format(time.RFC3339Nano))
	return msg, nil
}

// incoming is an envelope as readers decode it: data stays raw until its version is known,
// and a missing data_version (nil) tells an event written before the member existed.
type incoming struct {
	EventID          string          `json:"event_id"`
	EventType        string          `json:"event_type"`
	SchemaVersion    int             `json:"schema_version"`
	DataVersion      *int            `json:"data_version"`
	AggregateID      string          `json:"aggregate_id"`
	AggregateVersion int64           `json:"aggregate_version"`
	OccurredAt       time.Time       `json:"occurred_at"`
	Data             json.RawMessage `json:"data"`
}

// Unmarshal decodes an envelope of any data version this build knows, upcast to the newest.
// Errors wrap ErrUndecodable (not an envelope, or structurally broken: ids, versions, a
// tombstone that disagrees with its type) or ErrUnsupported (unknown type, schema version or
// data version); neither is retryable. The product state itself is history and is not checked
// against today's rules.
func Unmarshal(payload []byte) (product.Event, error) {
	var env incoming
	if err := json.NewDecoder(bytes.NewReader(payload)).Decode(&env); err != nil {
		return product.Event{}, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if env.SchemaVersion != SchemaVersion {
		return product.Event{}, fmt.Errorf("%w: schema_version %d (this build knows %d)", ErrUnsupported, env.SchemaVersion, SchemaVersion)
	}
	typ := product.EventType(env.EventType)
	if !typ.Valid() {
		return product.Event{}, fmt.Errorf("%w: event_type %q", ErrUnsupported, env.EventType)
	}
	eventID, err := product.ParseID(env.EventID)
	if err != nil {
		return product.Event{}, fmt.Errorf("%w: event_id: %w", ErrUndecodable, err)
	}
	aggID, err := product.ParseID(env.AggregateID)
	if err != nil {
		return product.Event{}, fmt.Errorf("%w: aggregate_id: %w", ErrUndecodable, err)
	}
	if env.AggregateVersion < 1 {
		return product.Event{}, fmt.Errorf("%w: aggregate_version %d", ErrUndecodable, env.AggregateVersion)
	}
	version := 1
	if env.DataVersion != nil {
		version = *env.DataVersion
	}
	data, err := decodeData(typ, version, env.Data)
	if err != nil {
		return product.Event{}, err
	}
	state, err := data.ToSnapshot()
	if err != nil {
		return product.Event{}, fmt.Errorf("%w: data: %w", ErrUndecodable, err)
	}
	if state.ID != aggID || state.Version != env.AggregateVersion {
		return product.Event{}, fmt.Errorf("%w: data (id %s, version %d) disagrees with the envelope (id %s, version %d)",
			ErrUndecodable, state.ID, state.Version, aggID, env.AggregateVersion)
	}
	if (typ == product.EventDeleted) != state.Deleted() {
		return product.Event{}, fmt.Errorf("%w: %s with deleted_at=%v", ErrUndecodable, typ, state.DeletedAt)
	}
	return product.Event{ID: eventID, Type: typ, AggregateID: aggID, AggregateVersion: env.AggregateVersion, OccurredAt: env.OccurredAt, State: state}, nil
}
