// The DLQ tooling: list and show dead-lettered messages, replay them deliberately or resolve
// (drop) them, with an audit log. Nothing here ever replays on its own.

package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
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

// Errors of the DLQ use cases.
var (
	// ErrDLQMessageNotFound: no message at that partition and offset (never written, removed
	// by retention, or beyond the end of the partition).
	ErrDLQMessageNotFound = errors.New("dlq: no such message")
	// ErrDLQInvalidRef: a message reference that is not <partition>:<offset>.
	ErrDLQInvalidRef = errors.New("dlq: invalid message reference")
	// ErrDLQInvalidFilter: a filter that can match nothing by construction (an empty time
	// range, an empty class).
	ErrDLQInvalidFilter = errors.New("dlq: invalid filter")
	// ErrReplayInvalidRequest: a replay request that selects nothing, everything implicitly,
	// or two ways at once. Nothing was replayed.
	ErrReplayInvalidRequest = errors.New("dlq replay: invalid request")
	// ErrReplayUnavailable: the service was built without a publisher or audit log.
	ErrReplayUnavailable = errors.New("dlq replay: no publisher or audit log configured")
	// ErrResolveInvalidRequest: a resolve request that selects nothing, everything
	// implicitly, or two ways at once, or gives no reason. Nothing was resolved.
	ErrResolveInvalidRequest = errors.New("dlq resolve: invalid request")
	// ErrAuditUnavailable: the service was built without an audit log.
	ErrAuditUnavailable = errors.New("dlq: no audit log configured")
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

// DLQReader reads the DLQ topic. Reads are bounded: they end at the topic's end offsets
// captured when the call starts, so messages dead-lettered meanwhile (a replay failing again,
// say) are not seen by that call and a read never waits for new messages.
type DLQReader interface {
	// DLQTopic names the topic read.
	DLQTopic() string
	// ScanDLQ calls fn with every message of the topic, in offset order within a partition.
	// A non-zero since is a hint: messages written well before it may be skipped; the caller
	// still filters. An error from fn stops the scan and is returned wrapped.
	ScanDLQ(ctx context.Context, since time.Time, fn func(DLQMessage) error) error
	// GetDLQ returns one message, or an error wrapping ErrDLQMessageNotFound.
	GetDLQ(ctx context.Context, ref DLQRef) (DLQMessage, error)
}

// ReplayMessage is an event to put back on the events topic.
type ReplayMessage struct {
	// Key is the record key: the aggregate id, so the event lands on its product's partition.
	Key string
	// Headers are the original event's headers without the DLQ ones, plus replayed_from.
	Headers []DLQHeader
	// Payload is the original event, byte for byte.
	Payload []byte
}

// ReplayTarget is where a replayed event was written.
type ReplayTarget struct {
	// Partition is the events topic's partition.
	Partition int32
	// Offset is the record's offset there.
	Offset int64
}

// ReplayPublisher writes replayed events to the events topic.
type ReplayPublisher interface {
	// TargetTopic names the events topic.
	TargetTopic() string
	// PublishReplay writes msg and returns once the cluster acknowledged it (acks=all).
	PublishReplay(ctx context.Context, msg ReplayMessage) (ReplayTarget, error)
}

// Actions of an audit entry.
const (
	// AuditActionReplay: the message was republished to the events topic.
	AuditActionReplay = "replay"
	// AuditActionResolve: an operator decided to drop the message; it counts as handled.
	AuditActionResolve = "resolve"
)

// Results of an audit entry. A resolution is recorded as ok at once.
const (
	// ReplayResultPending: the entry was recorded and the publish not yet confirmed; an entry
	// left pending means the process died in between (the event may or may not be in Kafka).
	ReplayResultPending = "pending"
	// ReplayResultOK: the events topic acknowledged the replayed event. It says nothing about
	// the projection: a message whose cause is not fixed comes back to the DLQ.
	ReplayResultOK = "ok"
	// ReplayResultError: publishing failed; Error says why.
	ReplayResultError = "error"
)

// ReplayAuditEntry is one entry of the DLQ audit log: a replayed or a resolved message.
type ReplayAuditEntry struct {
	// ID is assigned by the audit log.
	ID int64
	// Action is AuditActionReplay or AuditActionResolve.
	Action string
	// RunID groups the entries of one replay or resolve command.
	RunID string
	// ReplayedAt is when the entry was recorded (by the audit log's clock).
	ReplayedAt time.Time
	// Operator is who replayed (the --operator string).
	Operator string
	// DLQTopic is the DLQ topic the message was read from.
	DLQTopic string
	// Ref is the message's position in the DLQ topic.
	Ref DLQRef
	// ErrorClass is the message's failure class.
	ErrorClass string
	// AggregateID is the product id, "" when unknown.
	AggregateID string
	// EventID is the event id, "" when unknown.
	EventID string
	// TargetTopic is the topic the event was republished to; empty for a resolution.
	TargetTopic string
	// Note is the operator's reason, for a resolution.
	Note string
	// Result is ReplayResultPending, ReplayResultOK or ReplayResultError.
	Result string
	// Error is the publish error for ReplayResultError.
	Error string
	// Target is where the event was written, for ReplayResultOK.
	Target *ReplayTarget
	// FinishedAt is when the result was recorded; zero while pending.
	FinishedAt time.Time
}

// ReplayAudit is the audit log of the DLQ, in the system of record: every replay and every
// resolution. A replay's entry is recorded before the publish and completed after it, so
// every publish attempt leaves a trace even if the process dies in between.
type ReplayAudit interface {
	// BeginReplay records a pending replay entry and returns its id.
	BeginReplay(ctx context.Context, e ReplayAuditEntry) (int64, error)
	// FinishReplay records the result of entry id: ReplayResultOK with target, or
	// ReplayResultError with errText.
	FinishReplay(ctx context.Context, id int64, result string, target *ReplayTarget, errText string) error
	// RecordResolution records a resolution (result ok) and returns its id.
	RecordResolution(ctx context.Context, e ReplayAuditEntry) (int64, error)
	// HandledDLQRefs returns, for those of refs that were handled before (replayed with
	// result ok, or resolved), the latest such entry.
	HandledDLQRefs(ctx context.Context, dlqTopic string, refs []DLQRef) (map[DLQRef]ReplayAuditEntry, error)
	// ListAudit returns the entries f selects, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]ReplayAuditEntry, error)
}

// AuditFilter selects audit entries. Empty fields do not filter.
type AuditFilter struct {
	// DLQTopic keeps the entries of one DLQ topic.
	DLQTopic string
	// RunID keeps the entries of one command.
	RunID string
	// AggregateID keeps the entries of one product.
	AggregateID string
	// Ref keeps the entries of one message (with DLQTopic).
	Ref *DLQRef
	// Action keeps replays or resolutions.
	Action string
	// Limit caps the number of entries (the newest); 0 means DefaultAuditLimit.
	Limit int
}

// DefaultAuditLimit is how many audit entries a listing returns unless told otherwise.
const DefaultAuditLimit = 100

// DLQFilter selects DLQ messages. Empty fields do not filter.
type DLQFilter struct {
	// Classes keeps messages whose failure class is one of these (case-insensitive).
	Classes []string
	// AggregateID keeps messages of one product (case-insensitive).
	AggregateID string
	// Since keeps messages that failed at or after it.
	Since time.Time
	// Until keeps messages that failed before it.
	Until time.Time
}

// Selects reports whether the filter narrows anything down, i.e. whether it is a replay
// selector. A filter that selects nothing specific would mean "everything".
func (f DLQFilter) Selects() bool {
	return len(f.Classes) > 0 || f.AggregateID != "" || !f.Since.IsZero() || !f.Until.IsZero()
}

// Matches reports whether m passes the filter.
func (f DLQFilter) Matches(m DLQMessage) bool {
	if len(f.Classes) > 0 && !slices.ContainsFunc(f.Classes, func(c string) bool { return strings.EqualFold(c, m.Class) }) {
		return false
	}
	if f.AggregateID != "" && !strings.EqualFold(f.AggregateID, m.AggregateID) {
		return false
	}
	if !f.Since.IsZero() && m.FailedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !m.FailedAt.Before(f.Until) {
		return false
	}
	return true
}

func (f DLQFilter) validate() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return fmt.Errorf("%w: until (%s) must be after since (%s)", ErrDLQInvalidFilter,
			f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	for _, c := range f.Classes {
		if strings.TrimSpace(c) == "" {
			return fmt.Errorf("%w: empty error class", ErrDLQInvalidFilter)
		}
	}
	return nil
}

// DLQService is the DLQ tooling: list and show dead-lettered messages, and replay them
// deliberately. Nothing here runs on its own; every replay is an operator's command.
type DLQService struct {
	reader DLQReader
	pub    ReplayPublisher
	audit  ReplayAudit
}

// NewDLQService returns the DLQ use cases over reader. pub and audit may be nil for a service
// that only lists and shows; Replay then fails with ErrReplayUnavailable.
func NewDLQService(reader DLQReader, pub ReplayPublisher, audit ReplayAudit) (*DLQService, error) {
	if reader == nil {
		return nil, errors.New("dlq: nil reader")
	}
	return &DLQService{reader: reader, pub: pub, audit: audit}, nil
}

// DLQTopic names the DLQ topic the service reads.
func (s *DLQService) DLQTopic() string { return s.reader.DLQTopic() }

// DLQListResult is the answer of List.
type DLQListResult struct {
	// Messages are the matching messages, oldest failure first; with a limit, the newest
	// limit of them.
	Messages []DLQMessage
	// Matched is how many messages matched, including those the limit left out.
	Matched int
}

// List returns the messages that match f, oldest failure first. limit > 0 keeps the newest
// limit matches (like tail), so the latest failures are never hidden behind old ones; 0 keeps
// all of them. unhandledOnly drops the messages replayed successfully or resolved (it needs
// the audit log): what the status counts as unhandled.
func (s *DLQService) List(ctx context.Context, f DLQFilter, limit int, unhandledOnly bool) (DLQListResult, error) {
	if err := f.validate(); err != nil {
		return DLQListResult{}, err
	}
	if limit < 0 {
		return DLQListResult{}, fmt.Errorf("%w: negative limit %d", ErrDLQInvalidFilter, limit)
	}
	if unhandledOnly && s.audit == nil {
		return DLQListResult{}, ErrAuditUnavailable
	}
	var res DLQListResult
	var keep []DLQMessage
	err := s.eachSelected(ctx, "dlq list", nil, f, func(batch []DLQMessage) error {
		if unhandledOnly {
			handled, err := s.handled(ctx, batch)
			if err != nil {
				return fmt.Errorf("dlq list: audit log: %w", err)
			}
			batch = slices.DeleteFunc(batch, func(m DLQMessage) bool { _, ok := handled[m.Ref]; return ok })
		}
		res.Matched += len(batch)
		keep = append(keep, batch...)
		if limit > 0 && len(keep) >= 2*limit+64 {
			dlqSort(keep)
			keep = slices.Delete(keep, 0, len(keep)-limit)
		}
		return nil
	})
	if err != nil {
		return DLQListResult{}, err
	}
	dlqSort(keep)
	if limit > 0 && len(keep) > limit {
		keep = slices.Delete(keep, 0, len(keep)-limit)
	}
	res.Messages = keep
	return res, nil
}

// dlqSort orders by failure time, then position, so output is stable.
func dlqSort(ms []DLQMessage) {
	slices.SortStableFunc(ms, func(a, b DLQMessage) int {
		if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
			return c
		}
		if a.Ref.Partition != b.Ref.Partition {
			return int(a.Ref.Partition - b.Ref.Partition)
		}
		return int(min(max(a.Ref.Offset-b.Ref.Offset, -1), 1))
	})
}

// Show returns one message.
func (s *DLQService) Show(ctx context.Context, ref DLQRef) (DLQMessage, error) {
	m, err := s.reader.GetDLQ(ctx, ref)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("dlq show %s: %w", ref, err)
	}
	return m, nil
}

// ReplayRequest says which DLQ messages to replay. Exactly one way of selecting is allowed:
// Refs, a Filter that Selects, or All. Nothing is ever replayed implicitly.
type ReplayRequest struct {
	// Refs are explicit messages.
	Refs []DLQRef
	// Filter selects messages by class, aggregate and failure time.
	Filter DLQFilter
	// All selects every message of the DLQ; it must be asked for explicitly.
	All bool
	// Limit stops after this many messages were replayed (or would be, in a dry run); 0 means
	// no limit.
	Limit int
	// DryRun reports what would be replayed and changes nothing: no publish, no audit entry.
	DryRun bool
	// Force replays messages that were handled before (an earlier replay published them, or
	// an operator resolved them); by default they are skipped, so running the same command
	// twice does not replay twice.
	Force bool
	// Operator is recorded in the audit log: who replayed.
	Operator string
}

// Validate reports a request Replay refuses (ErrReplayInvalidRequest), without touching
// anything, so a caller can reject it before connecting anywhere.
func (r ReplayRequest) Validate() error {
	return validateSelection(ErrReplayInvalidRequest, r.Refs, r.Filter, r.All, r.Limit, r.Operator)
}

// validateSelection checks what a replay and a resolution have in common: exactly one way
// of selecting messages, a limit, an operator for the audit log.
func validateSelection(kind error, refs []DLQRef, f DLQFilter, all bool, limit int, operator string) error {
	modes := 0
	if len(refs) > 0 {
		modes++
	}
	if f.Selects() {
		modes++
	}
	if all {
		modes++
	}
	switch {
	case modes == 0:
		return fmt.Errorf("%w: select messages: a <partition>:<offset>, an aggregate, an error class or a time range (or --all for every message)", kind)
	case modes > 1:
		return fmt.Errorf("%w: choose one way of selecting messages: explicit references, filters, or --all", kind)
	case limit < 0:
		return fmt.Errorf("%w: negative limit %d", kind, limit)
	case strings.TrimSpace(operator) == "":
		return fmt.Errorf("%w: the operator is required for the audit log", kind)
	case len(operator) > 200:
		return fmt.Errorf("%w: operator longer than 200 bytes", kind)
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return nil
}

// ReplayAction is what a replay did with one message.
type ReplayAction string

// Replay actions.
const (
	// ReplayActionReplayed: published to the events topic and audited as ok.
	ReplayActionReplayed ReplayAction = "replayed"
	// ReplayActionWouldReplay: a dry run would have replayed it.
	ReplayActionWouldReplay ReplayAction = "would-replay"
	// ReplayActionFailed: publishing failed; audited as error. The replay stops there.
	ReplayActionFailed ReplayAction = "failed"
	// ReplayActionSkippedReplayed: an earlier replay already published it (see Force).
	ReplayActionSkippedReplayed ReplayAction = "skipped-already-replayed"
	// ReplayActionSkippedResolved: an operator resolved (dropped) it (see Force).
	ReplayActionSkippedResolved ReplayAction = "skipped-resolved"
	// ReplayActionSkippedDuplicate: another copy of the same event was replayed in this run.
	ReplayActionSkippedDuplicate ReplayAction = "skipped-duplicate"
	// ReplayActionSkippedTruncated: the payload was cut to fit the DLQ, so it is not the
	// event any more and is never replayed, Force or not; resolve it once its product is
	// repaired (an update rewrites the read model's document).
	ReplayActionSkippedTruncated ReplayAction = "skipped-truncated"
)

// ReplayOutcome is the fate of one message in a replay.
type ReplayOutcome struct {
	// Message is the DLQ message.
	Message DLQMessage
	// Action is what happened to it.
	Action ReplayAction
	// AuditID is its audit entry, for replayed and failed messages.
	AuditID int64
	// Target is where it was written, for replayed messages.
	Target ReplayTarget
	// Err is the publish error, for failed messages.
	Err error
	// Previous is the earlier handling (a replay or a resolution), for skipped-already-replayed
	// and skipped-resolved messages.
	Previous *ReplayAuditEntry
	// DuplicateOf is the copy replayed instead, for skipped-duplicate messages.
	DuplicateOf DLQRef
}

// ReplaySummary counts a replay's outcomes.
type ReplaySummary struct {
	// RunID groups the run's audit entries.
	RunID string
	// DryRun is true when nothing was changed.
	DryRun bool
	// Selected is how many messages the request selected.
	Selected int
	// Replayed is how many were published (or would be, in a dry run).
	Replayed int
	// Failed is how many could not be published.
	Failed int
	// SkippedReplayed is how many were skipped as already replayed.
	SkippedReplayed int
	// SkippedResolved is how many were skipped as resolved.
	SkippedResolved int
	// SkippedDuplicate is how many were skipped as copies of an event replayed in this run.
	SkippedDuplicate int
	// SkippedTruncated is how many were skipped because their payload was cut.
	SkippedTruncated int
	// LimitReached is true when the limit stopped the run early.
	LimitReached bool
}

// replayBatch is how many selected messages are checked against the audit log at once.
const replayBatch = 256

// errReplayStop ends a scan early without being an error of the replay.
var errReplayStop = errors.New("replay: stop")

// eachSelected hands the selected messages to fn in batches of at most replayBatch: the
// referenced ones, every one of which must exist before fn is called (a typo must not leave a
// half-done run behind), or those the filter matches (every message for a filter that
// selects nothing, which the requests allow only with All). An error of fn stops the run
// and is returned as it is; op prefixes the reader's errors.
func (s *DLQService) eachSelected(ctx context.Context, op string, refs []DLQRef, f DLQFilter, fn func([]DLQMessage) error) error {
	if len(refs) > 0 {
		msgs := make([]DLQMessage, 0, len(refs))
		for _, ref := range refs {
			m, err := s.reader.GetDLQ(ctx, ref)
			if err != nil {
				return fmt.Errorf("%s %s: %w", op, ref, err)
			}
			msgs = append(msgs, m)
		}
		for len(msgs) > 0 {
			n := min(len(msgs), replayBatch)
			if err := fn(msgs[:n]); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
		return nil
	}
	var batch []DLQMessage
	var fnErr error
	err := s.reader.ScanDLQ(ctx, f.Since, func(m DLQMessage) error {
		if !f.Matches(m) {
			return nil
		}
		batch = append(batch, m)
		if len(batch) < replayBatch {
			return nil
		}
		fnErr = fn(batch)
		batch = batch[:0]
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("%s: read %s: %w", op, s.reader.DLQTopic(), err)
	case len(batch) > 0:
		return fn(batch)
	}
	return nil
}

// Replay republishes the selected DLQ messages to the events topic, each with its original
// payload and headers (minus the DLQ ones), keyed by aggregate id. Versions make this safe:
// a replayed event older than the read model's document changes nothing. Messages handled
// before (replayed, resolved) are skipped unless Force; messages whose payload was cut are
// never replayed.
//
// Every publish is audited: the entry is recorded before the publish and completed after it,
// so it exists even when the publish fails (result error) or the process dies (pending). When
// the audit log cannot be written nothing is published. The first publish failure stops the
// run: the rest are not attempted (a broken cluster would fail them all, one timeout each).
//
// onOutcome, if not nil, is called for every selected message as it is dealt with, so a
// long replay shows progress. The summary is returned with the error, if any.
func (s *DLQService) Replay(ctx context.Context, req ReplayRequest, onOutcome func(ReplayOutcome)) (ReplaySummary, error) {
	if err := req.Validate(); err != nil {
		return ReplaySummary{}, err
	}
	if s.pub == nil || s.audit == nil {
		return ReplaySummary{}, ErrReplayUnavailable
	}
	if onOutcome == nil {
		onOutcome = func(ReplayOutcome) {}
	}
	r := &replayRun{s: s, req: req, onOutcome: onOutcome, sum: ReplaySummary{RunID: newRunID(), DryRun: req.DryRun},
		replayedEvents: map[string]DLQRef{}, seenRefs: map[DLQRef]bool{}}
	err := s.eachSelected(ctx, "dlq replay", req.Refs, req.Filter, func(batch []DLQMessage) error { return r.process(ctx, batch) })
	return r.sum, replayIgnoreStop(err)
}

// replayIgnoreStop turns the early end of a run (the limit) into success.
func replayIgnoreStop(err error) error {
	if errors.Is(err, errReplayStop) {
		return nil
	}
	return err
}

type replayRun struct {
	s         *DLQService
	req       ReplayRequest
	onOutcome func(ReplayOutcome)
	sum       ReplaySummary
	// replayedEvents maps an event id to the copy replayed (or to be replayed) in this run.
	replayedEvents map[string]DLQRef
	seenRefs       map[DLQRef]bool
}

// process deals with one batch of selected messages in order.
func (r *replayRun) process(ctx context.Context, batch []DLQMessage) error {
	var previous map[DLQRef]ReplayAuditEntry
	if !r.req.Force {
		var err error
		if previous, err = r.s.handled(ctx, batch); err != nil {
			return fmt.Errorf("dlq replay: audit log: %w", err)
		}
	}
	for _, m := range batch {
		if r.seenRefs[m.Ref] {
			continue // the same reference given twice
		}
		r.seenRefs[m.Ref] = true
		r.sum.Selected++
		if m.Truncated {
			r.sum.SkippedTruncated++
			r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionSkippedTruncated})
			continue
		}
		if prev, ok := previous[m.Ref]; ok {
			action := ReplayActionSkippedReplayed
			if prev.Action == AuditActionResolve {
				action = ReplayActionSkippedResolved
				r.sum.SkippedResolved++
			} else {
				r.sum.SkippedReplayed++
			}
			r.onOutcome(ReplayOutcome{Message: m, Action: action, Previous: &prev})
			continue
		}
		if m.EventID != "" {
			if first, ok := r.replayedEvents[m.EventID]; ok {
				r.sum.SkippedDuplicate++
				r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionSkippedDuplicate, DuplicateOf: first})
				continue
			}
		}
		if r.req.Limit > 0 && r.sum.Replayed >= r.req.Limit {
			r.sum.Selected-- // not dealt with: the limit stops the run before it
			r.sum.LimitReached = true
			return errReplayStop
		}
		if m.EventID != "" {
			r.replayedEvents[m.EventID] = m.Ref
		}
		if r.req.DryRun {
			r.sum.Replayed++
			r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionWouldReplay})
			continue
		}
		if err := r.replayOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// handled returns the earlier handling of each message of batch that has one.
func (s *DLQService) handled(ctx context.Context, batch []DLQMessage) (map[DLQRef]ReplayAuditEntry, error) {
	refs := make([]DLQRef, len(batch))
	for i, m := range batch {
		refs[i] = m.Ref
	}
	return s.audit.HandledDLQRefs(ctx, s.reader.DLQTopic(), refs)
}

// replayOne audits, publishes and completes the audit entry of one message.
func (r *replayRun) replayOne(ctx context.Context, m DLQMessage) error {
	dlqTopic, target := r.s.reader.DLQTopic(), r.s.pub.TargetTopic()
	id, err := r.s.audit.BeginReplay(ctx, ReplayAuditEntry{
		Action: AuditActionReplay, RunID: r.sum.RunID, Operator: r.req.Operator, DLQTopic: dlqTopic, Ref: m.Ref, ErrorClass: m.Class,
		AggregateID: m.AggregateID, EventID: m.EventID, TargetTopic: target, Result: ReplayResultPending,
	})
	if err != nil {
		return fmt.Errorf("dlq replay %s: audit log (nothing published): %w", m.Ref, err)
	}
	pos, perr := r.s.pub.PublishReplay(ctx, replayMessage(dlqTopic, m))
	if perr != nil {
		r.sum.Failed++
		// Record the failure even when ctx was cancelled: the entry must not stay pending
		// for a publish that is known to have failed.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		errText := perr.Error()
		if errors.Is(perr, context.Canceled) || errors.Is(perr, context.DeadlineExceeded) {
			// An interrupted produce may still have reached Kafka; the entry must not claim
			// more than is known.
			errText = "interrupted before Kafka acknowledged it (the event may or may not have been published): " + errText
		}
		ferr := r.s.audit.FinishReplay(fctx, id, ReplayResultError, nil, errText)
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionFailed, AuditID: id, Err: perr})
		if ferr != nil {
			return fmt.Errorf("dlq replay %s: publish to %s: %w (and recording the failure in the audit log: %w)", m.Ref, target, perr, ferr)
		}
		return fmt.Errorf("dlq replay %s: publish to %s: %w", m.Ref, target, perr)
	}
	r.sum.Replayed++
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.s.audit.FinishReplay(fctx, id, ReplayResultOK, &pos, ""); err != nil {
		r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionReplayed, AuditID: id, Target: pos})
		return fmt.Errorf("dlq replay %s: published to %s partition %d offset %d, but the audit entry %d stays pending: %w",
			m.Ref, target, pos.Partition, pos.Offset, id, err)
	}
	r.onOutcome(ReplayOutcome{Message: m, Action: ReplayActionReplayed, AuditID: id, Target: pos})
	return nil
}

// ResolveRequest says which DLQ messages an operator drops: they stay in the topic until its
// retention removes them, but count as handled from now on (the status stops reporting them,
// replays skip them). Selecting works as for a replay.
type ResolveRequest struct {
	// Refs are explicit messages.
	Refs []DLQRef
	// Filter selects messages by class, aggregate and failure time.
	Filter DLQFilter
	// All selects every message of the DLQ; it must be asked for explicitly.
	All bool
	// Limit stops after this many messages were resolved (or would be); 0 means no limit.
	Limit int
	// DryRun reports what would be resolved and changes nothing.
	DryRun bool
	// Operator is recorded in the audit log: who resolved.
	Operator string
	// Reason is recorded in the audit log: why the messages may be dropped. Required.
	Reason string
}

// Validate reports a request Resolve refuses (ErrResolveInvalidRequest), without touching
// anything.
func (r ResolveRequest) Validate() error {
	if err := validateSelection(ErrResolveInvalidRequest, r.Refs, r.Filter, r.All, r.Limit, r.Operator); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(r.Reason) == "":
		return fmt.Errorf("%w: say why the messages may be dropped (the reason goes to the audit log)", ErrResolveInvalidRequest)
	case len(r.Reason) > 2000:
		return fmt.Errorf("%w: reason longer than 2000 bytes", ErrResolveInvalidRequest)
	}
	return nil
}

// ResolveAction is what a resolution did with one message.
type ResolveAction string

// Resolve actions.
const (
	// ResolveActionResolved: recorded as resolved in the audit log.
	ResolveActionResolved ResolveAction = "resolved"
	// ResolveActionWouldResolve: a dry run would have resolved it.
	ResolveActionWouldResolve ResolveAction = "would-resolve"
	// ResolveActionSkippedReplayed: a replay already published it, so it is handled.
	ResolveActionSkippedReplayed ResolveAction = "skipped-already-replayed"
	// ResolveActionSkippedResolved: it was resolved before.
	ResolveActionSkippedResolved ResolveAction = "skipped-already-resolved"
)

// ResolveOutcome is the fate of one message in a resolution.
type ResolveOutcome struct {
	// Message is the DLQ message.
	Message DLQMessage
	// Action is what happened to it.
	Action ResolveAction
	// AuditID is its audit entry, for resolved messages.
	AuditID int64
	// Previous is the earlier handling, for skipped messages.
	Previous *ReplayAuditEntry
}

// ResolveSummary counts a resolution's outcomes.
type ResolveSummary struct {
	// RunID groups the run's audit entries.
	RunID string
	// DryRun is true when nothing was changed.
	DryRun bool
	// Selected is how many messages the request selected.
	Selected int
	// Resolved is how many were resolved (or would be, in a dry run).
	Resolved int
	// SkippedHandled is how many were handled already (replayed or resolved).
	SkippedHandled int
	// LimitReached is true when the limit stopped the run early.
	LimitReached bool
}

// Resolve records the selected DLQ messages as resolved: an operator decided to drop them.
// Nothing is published and the messages stay in the topic; each gets an audit entry with the
// operator and the reason. Messages handled before are skipped. onOutcome, if not nil, is
// called for every selected message. The summary is returned with the error, if any.
func (s *DLQService) Resolve(ctx context.Context, req ResolveRequest, onOutcome func(ResolveOutcome)) (ResolveSummary, error) {
	if err := req.Validate(); err != nil {
		return ResolveSummary{}, err
	}
	if s.audit == nil {
		return ResolveSummary{}, ErrAuditUnavailable
	}
	if onOutcome == nil {
		onOutcome = func(ResolveOutcome) {}
	}
	sum := ResolveSummary{RunID: newRunID(), DryRun: req.DryRun}
	seen := map[DLQRef]bool{}
	err := s.eachSelected(ctx, "dlq resolve", req.Refs, req.Filter, func(batch []DLQMessage) error {
		previous, err := s.handled(ctx, batch)
		if err != nil {
			return fmt.Errorf("dlq resolve: audit log: %w", err)
		}
		for _, m := range batch {
			if seen[m.Ref] {
				continue
			}
			seen[m.Ref] = true
			sum.Selected++
			if prev, ok := previous[m.Ref]; ok {
				action := ResolveActionSkippedReplayed
				if prev.Action == AuditActionResolve {
					action = ResolveActionSkippedResolved
				}
				sum.SkippedHandled++
				onOutcome(ResolveOutcome{Message: m, Action: action, Previous: &prev})
				continue
			}
			if req.Limit > 0 && sum.Resolved >= req.Limit {
				sum.Selected--
				sum.LimitReached = true
				return errReplayStop
			}
			if req.DryRun {
				sum.Resolved++
				onOutcome(ResolveOutcome{Message: m, Action: ResolveActionWouldResolve})
				continue
			}
			id, err := s.audit.RecordResolution(ctx, ReplayAuditEntry{
				Action: AuditActionResolve, RunID: sum.RunID, Operator: req.Operator, DLQTopic: s.reader.DLQTopic(), Ref: m.Ref,
				ErrorClass: m.Class, AggregateID: m.AggregateID, EventID: m.EventID, Note: strings.TrimSpace(req.Reason), Result: ReplayResultOK,
			})
			if err != nil {
				return fmt.Errorf("dlq resolve %s: audit log: %w", m.Ref, err)
			}
			sum.Resolved++
			onOutcome(ResolveOutcome{Message: m, Action: ResolveActionResolved, AuditID: id})
		}
		return nil
	})
	return sum, replayIgnoreStop(err)
}

// Audit returns the audit log entries f selects in this service's DLQ topic, newest first
// (see ReadAudit): the console's trail beside the dead letters.
func (s *DLQService) Audit(ctx context.Context, f AuditFilter) ([]ReplayAuditEntry, error) {
	f.DLQTopic = s.DLQTopic()
	return ReadAudit(ctx, s.audit, f)
}

// ReadAudit returns the entries of the DLQ audit log that f selects, newest first: every
// replay and resolution, with who, when, why and the result. f.DLQTopic is required, so one
// deployment's entries are not mixed with another's.
func ReadAudit(ctx context.Context, audit ReplayAudit, f AuditFilter) ([]ReplayAuditEntry, error) {
	if audit == nil {
		return nil, ErrAuditUnavailable
	}
	switch {
	case f.DLQTopic == "":
		return nil, fmt.Errorf("%w: no DLQ topic", ErrDLQInvalidFilter)
	case f.Action != "" && f.Action != AuditActionReplay && f.Action != AuditActionResolve:
		return nil, fmt.Errorf("%w: action %q: want %s or %s", ErrDLQInvalidFilter, f.Action, AuditActionReplay, AuditActionResolve)
	case f.Limit < 0:
		return nil, fmt.Errorf("%w: negative limit %d", ErrDLQInvalidFilter, f.Limit)
	case f.Limit == 0:
		f.Limit = DefaultAuditLimit
	}
	entries, err := audit.ListAudit(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("dlq audit: %w", err)
	}
	return entries, nil
}

// replayMessage is the event to republish: the original payload and headers without the
// DLQ ones, keyed by aggregate id (the DLQ record's key when the id is unknown).
func replayMessage(dlqTopic string, m DLQMessage) ReplayMessage {
	headers := make([]DLQHeader, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if !IsDLQHeader(h.Key) {
			headers = append(headers, h)
		}
	}
	headers = append(headers, DLQHeader{Key: ReplayHeaderReplayedFrom, Value: dlqTopic + "/" + m.Ref.String()})
	return ReplayMessage{Key: dlqFirstNonEmpty(m.AggregateID, m.Key), Headers: headers, Payload: m.Payload}
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func dlqFirstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
