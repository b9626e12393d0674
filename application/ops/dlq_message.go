package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of a message reference.
var (
	// ErrDLQMessageNotFound: no message at that partition and offset (never written, removed
	// by retention, or beyond the end of the partition).
	ErrDLQMessageNotFound = errors.New("dlq: no such message")
	// ErrDLQInvalidRef: a message reference that is not <partition>:<offset>.
	ErrDLQInvalidRef = errors.New("dlq: invalid message reference")
)

// DLQ header names: the DLQ's wire contract, owned here. The projector (ports/projector)
// stamps them on every dead-lettered message, the DLQ tooling reads them; Watermill's
// poison-queue middleware adds the *_poisoned ones.
const (
	DLQHeaderErrorClass        = "dlq_error_class"
	DLQHeaderReason            = "dlq_reason"
	DLQHeaderHandler           = "dlq_handler"
	DLQHeaderOriginalTopic     = "dlq_original_topic"
	DLQHeaderOriginalPartition = "dlq_original_partition"
	DLQHeaderOriginalOffset    = "dlq_original_offset"
	DLQHeaderAttempts          = "dlq_attempts"
	DLQHeaderFailedAt          = "dlq_failed_at"

	// DLQHeaderPrefix starts every header the projector adds when it dead-letters a message;
	// a replay strips them all.
	DLQHeaderPrefix = "dlq_"

	// DLQHeaderReasonPoisoned and its siblings are Watermill's poison-queue metadata.
	DLQHeaderReasonPoisoned     = "reason_poisoned"
	DLQHeaderTopicPoisoned      = "topic_poisoned"
	DLQHeaderHandlerPoisoned    = "handler_poisoned"
	DLQHeaderSubscriberPoisoned = "subscriber_poisoned"

	// DLQHeaderPayloadTruncated and its siblings are set by the DLQ publisher on a dead
	// letter whose payload it had to cut to fit the topic: "true", the original size, the
	// number of bytes cut, and why.
	DLQHeaderPayloadTruncated = "dlq_payload_truncated"
	DLQHeaderPayloadBytes     = "dlq_payload_bytes"
	DLQHeaderPayloadCutBytes  = "dlq_payload_cut_bytes"
	DLQHeaderTruncationReason = "dlq_truncation_reason"

	// ReplayHeaderReplayedFrom is added to a replayed event: "<dlq topic>/<partition>:<offset>"
	// of the DLQ message it came from. Should the event fail again, its new DLQ copy says
	// which replay it was.
	ReplayHeaderReplayedFrom = "replayed_from"
)

// Event headers (api/envelope's metadata keys) the DLQ tooling reads.
const (
	DLQEventHeaderEventID          = "event_id"
	DLQEventHeaderEventType        = "event_type"
	DLQEventHeaderAggregateID      = "aggregate_id"
	DLQEventHeaderAggregateVersion = "aggregate_version"
)

// DLQRef identifies one message of the DLQ topic.
type DLQRef struct {
	// Partition is the DLQ topic's partition.
	Partition int32
	// Offset is the message's offset in that partition.
	Offset int64
}

// String renders the reference as operators type it: "<partition>:<offset>".
func (r DLQRef) String() string {
	return strconv.FormatInt(int64(r.Partition), 10) + ":" + strconv.FormatInt(r.Offset, 10)
}

// ParseDLQRef parses "<partition>:<offset>".
func ParseDLQRef(s string) (DLQRef, error) {
	p, o, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return DLQRef{}, fmt.Errorf("%w: %q: want <partition>:<offset>, e.g. 3:1742", ErrDLQInvalidRef, s)
	}
	part, err := strconv.ParseInt(p, 10, 32)
	if err != nil || part < 0 {
		return DLQRef{}, fmt.Errorf("%w: %q: partition must be a non-negative integer", ErrDLQInvalidRef, s)
	}
	off, err := strconv.ParseInt(o, 10, 64)
	if err != nil || off < 0 {
		return DLQRef{}, fmt.Errorf("%w: %q: offset must be a non-negative integer", ErrDLQInvalidRef, s)
	}
	return DLQRef{Partition: int32(part), Offset: off}, nil
}

// DLQHeader is one Kafka record header.
type DLQHeader struct {
	// Key is the header name.
	Key string
	// Value is the header value.
	Value string
}

// DLQMessage is one record of the DLQ topic together with what its headers and payload say
// about the failure. Build it with NewDLQMessage; the derived fields are empty (or -1 for
// positions) when the record does not carry them.
type DLQMessage struct {
	// Ref is where the message sits in the DLQ topic.
	Ref DLQRef
	// Key is the record key (the aggregate id for product events).
	Key string
	// Timestamp is the record's timestamp: when it was written to the DLQ.
	Timestamp time.Time
	// Headers are every record header, in record order.
	Headers []DLQHeader
	// Payload is the record value: the original event, byte for byte.
	Payload []byte

	// FailedAt is dlq_failed_at, or the record timestamp when that is missing or invalid.
	FailedAt time.Time
	// Class is the failure class (dlq_error_class): undecodable, unsupported, validation,
	// rejected, panic.
	Class string
	// Reason is the error message (dlq_reason, else Watermill's reason_poisoned).
	Reason string
	// Handler is the handler that failed (dlq_handler, else handler_poisoned).
	Handler string
	// OriginalTopic is the topic the event was consumed from (dlq_original_topic, else
	// topic_poisoned).
	OriginalTopic string
	// OriginalPartition is the partition it was consumed from, -1 when unknown.
	OriginalPartition int32
	// OriginalOffset is the offset it was consumed from, -1 when unknown.
	OriginalOffset int64
	// Attempts is how often the handler ran before giving up, 0 when unknown.
	Attempts int
	// AggregateID is the product id, from the headers or the payload, else the record key.
	AggregateID string
	// AggregateVersion is the product version the event carries, 0 when unknown.
	AggregateVersion int64
	// EventID is the event's id, from the headers or the payload.
	EventID string
	// EventType is the event type, from the headers or the payload.
	EventType string
	// ReplayedFrom is set when this message is itself a replay that failed again: the DLQ
	// message the replay came from.
	ReplayedFrom string
	// Truncated is true when the payload is not the whole event: it was too large for the
	// DLQ topic and was cut (dlq_payload_truncated). Such a message cannot be replayed.
	Truncated bool
	// PayloadBytes is the size of the original payload: len(Payload) unless Truncated.
	PayloadBytes int
	// TruncationReason says why the payload was cut, for a Truncated message.
	TruncationReason string
}

// NewDLQMessage decodes what a DLQ record says about its failure. It never fails: a record
// with missing or malformed headers and an undecodable payload is still a DLQ message an
// operator must be able to see and replay.
func NewDLQMessage(ref DLQRef, key string, timestamp time.Time, headers []DLQHeader, payload []byte) DLQMessage {
	m := DLQMessage{Ref: ref, Key: key, Timestamp: timestamp, Headers: headers, Payload: payload,
		OriginalPartition: -1, OriginalOffset: -1}
	m.FailedAt = timestamp
	if t, err := time.Parse(time.RFC3339Nano, m.Header(DLQHeaderFailedAt)); err == nil {
		m.FailedAt = t
	}
	m.Class = m.Header(DLQHeaderErrorClass)
	m.Reason = dlqFirstNonEmpty(m.Header(DLQHeaderReason), m.Header(DLQHeaderReasonPoisoned))
	m.Handler = dlqFirstNonEmpty(m.Header(DLQHeaderHandler), m.Header(DLQHeaderHandlerPoisoned))
	m.OriginalTopic = dlqFirstNonEmpty(m.Header(DLQHeaderOriginalTopic), m.Header(DLQHeaderTopicPoisoned))
	if p, err := strconv.ParseInt(m.Header(DLQHeaderOriginalPartition), 10, 32); err == nil {
		m.OriginalPartition = int32(p)
	}
	if o, err := strconv.ParseInt(m.Header(DLQHeaderOriginalOffset), 10, 64); err == nil {
		m.OriginalOffset = o
	}
	if a, err := strconv.Atoi(m.Header(DLQHeaderAttempts)); err == nil {
		m.Attempts = a
	}
	m.ReplayedFrom = m.Header(ReplayHeaderReplayedFrom)
	m.PayloadBytes = len(payload)
	if m.Truncated = m.Header(DLQHeaderPayloadTruncated) == "true"; m.Truncated {
		m.TruncationReason = m.Header(DLQHeaderTruncationReason)
		if n, err := strconv.Atoi(m.Header(DLQHeaderPayloadBytes)); err == nil && n > len(payload) {
			m.PayloadBytes = n
		}
	}

	// The payload is the envelope when it decodes at all; only its identity
	// fields matter here, and a payload that is not JSON simply leaves them empty.
	var env struct {
		EventID          string          `json:"event_id"`
		EventType        string          `json:"event_type"`
		AggregateID      string          `json:"aggregate_id"`
		AggregateVersion json.RawMessage `json:"aggregate_version"`
	}
	_ = json.Unmarshal(payload, &env)
	// The record key is the product id (the relay keys events by it, the DLQ keeps it): it
	// names the product of a message whose headers and payload are garbage.
	m.AggregateID = dlqFirstNonEmpty(m.Header(DLQEventHeaderAggregateID), env.AggregateID, key)
	m.EventID = dlqFirstNonEmpty(m.Header(DLQEventHeaderEventID), env.EventID)
	m.EventType = dlqFirstNonEmpty(m.Header(DLQEventHeaderEventType), env.EventType)
	version := dlqFirstNonEmpty(m.Header(DLQEventHeaderAggregateVersion), string(env.AggregateVersion))
	if v, err := strconv.ParseInt(version, 10, 64); err == nil && v > 0 {
		m.AggregateVersion = v
	}
	return m
}

// Header returns the value of the last header named key, or "".
func (m DLQMessage) Header(key string) string {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if m.Headers[i].Key == key {
			return m.Headers[i].Value
		}
	}
	return ""
}

// IsDLQHeader reports whether a header was added by dead-lettering (the projector's dlq_*
// headers, Watermill's *_poisoned ones) or by an earlier replay, so a replay must drop it.
func IsDLQHeader(key string) bool {
	switch key {
	case DLQHeaderReasonPoisoned, DLQHeaderTopicPoisoned, DLQHeaderHandlerPoisoned, DLQHeaderSubscriberPoisoned,
		ReplayHeaderReplayedFrom:
		return true
	}
	return strings.HasPrefix(key, DLQHeaderPrefix)
}

func dlqFirstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
