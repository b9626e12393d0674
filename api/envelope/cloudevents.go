package envelope

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
)

// CloudEvents binary-mode headers (CloudEvents Kafka protocol binding 1.0): in binary mode
// the attributes travel as ce_ headers and the message value is the event data, here the
// whole envelope. They are written beside the catalog's own headers, never instead of them.
const (
	MetaCESpecVersion = "ce_specversion"
	MetaCEID          = "ce_id"
	MetaCESource      = "ce_source"
	MetaCEType        = "ce_type"
	MetaCETime        = "ce_time"
	MetaCESubject     = "ce_subject"
	MetaCEDataSchema  = "ce_dataschema"
	MetaContentType   = "content-type"
)

// DataSchema is the URI that identifies the JSON Schema of the events whose data has version
// v: the $id of api/events/product-event-v{v}.schema.json, and ce_dataschema.
func DataSchema(v int) string { return fmt.Sprintf("urn:catalog:events:product-event:v%d", v) }

// CloudEvents returns a decorator that adds the CloudEvents binary-mode headers to an event
// message made by Marshal, with source as ce_source (a URI-reference naming this producer,
// such as /catalog or urn:marketplace:catalog), so standard CloudEvents tooling can route the
// events without knowing the envelope.
func CloudEvents(source string) (func(*message.Message), error) {
	if err := ValidateCloudEventsSource(source); err != nil {
		return nil, err
	}
	return func(msg *message.Message) {
		m := msg.Metadata
		m.Set(MetaCESpecVersion, "1.0")
		m.Set(MetaCEID, m.Get(MetaEventID))
		m.Set(MetaCESource, source)
		m.Set(MetaCEType, m.Get(MetaEventType))
		m.Set(MetaCETime, m.Get(MetaOccurredAt))
		m.Set(MetaCESubject, m.Get(MetaAggregateID))
		var v int
		if _, err := fmt.Sscan(m.Get(MetaDataVersion), &v); err == nil && v > 0 {
			m.Set(MetaCEDataSchema, DataSchema(v))
		}
		m.Set(MetaContentType, "application/json")
	}, nil
}

// ValidateCloudEventsSource checks that source is a usable ce_source: a non-empty
// URI-reference without spaces or control characters.
func ValidateCloudEventsSource(source string) error {
	switch {
	case source == "":
		return errors.New("the CloudEvents source must not be empty")
	case strings.ContainsFunc(source, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("the CloudEvents source %q must be a URI-reference without spaces", source)
	}
	if _, err := url.Parse(source); err != nil {
		return fmt.Errorf("the CloudEvents source %q is not a URI-reference: %w", source, err)
	}
	return nil
}
