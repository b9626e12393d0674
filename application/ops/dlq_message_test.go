package ops_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/marketplace/catalog/application/ops"
)

func TestParseDLQRef(t *testing.T) {
	for in, want := range map[string]ops.DLQRef{"3:17": {3, 17}, " 0:0 ": {0, 0}, "11:9000000000": {11, 9_000_000_000}} {
		got, err := ops.ParseDLQRef(in)
		if err != nil || got != want {
			t.Errorf("ParseDLQRef(%q) = %v, %v; want %v", in, got, err, want)
		}
		if strings.TrimSpace(in) != got.String() {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.TrimSpace(in))
		}
	}
	for _, in := range []string{"", "3", "3:", ":4", "a:1", "1:b", "-1:3", "1:-3", "1:2:3", "99999999999:1"} {
		if _, err := ops.ParseDLQRef(in); !errors.Is(err, ops.ErrDLQInvalidRef) {
			t.Errorf("ParseDLQRef(%q): err %v, want ErrDLQInvalidRef", in, err)
		}
	}
}

func TestNewDLQMessageDecodes(t *testing.T) {
	m := dlqMsg(2, 9, "rejected", dlqAggA, "e-1", dlqBase)
	if m.Class != "rejected" || m.Handler != "product_search_projector" || m.OriginalTopic != "product.events" ||
		m.OriginalPartition != 4 || m.OriginalOffset != 77 || m.Attempts != 1 || !m.FailedAt.Equal(dlqBase) ||
		m.AggregateID != dlqAggA || m.EventID != "e-1" || m.EventType != "product.created" || m.AggregateVersion != 1 {
		t.Fatalf("decoded %+v", m)
	}

	// No headers at all: identity from the payload, failure time from the record timestamp.
	payload := []byte(`{"event_id":"e-9","event_type":"product.updated","aggregate_id":"` + dlqAggB + `","aggregate_version":7}`)
	m = ops.NewDLQMessage(ops.DLQRef{}, "", dlqBase, nil, payload)
	if m.AggregateID != dlqAggB || m.EventID != "e-9" || m.AggregateVersion != 7 || !m.FailedAt.Equal(dlqBase) ||
		m.Class != "" || m.OriginalPartition != -1 || m.OriginalOffset != -1 {
		t.Fatalf("decoded from payload %+v", m)
	}

	// Garbage everywhere: nothing decoded but the product named by the record key, nothing panics.
	m = ops.NewDLQMessage(ops.DLQRef{}, dlqAggA, dlqBase, []ops.DLQHeader{{Key: ops.DLQHeaderFailedAt, Value: "yesterday"},
		{Key: ops.DLQHeaderOriginalOffset, Value: "x"}, {Key: ops.DLQHeaderReasonPoisoned, Value: "boom"}}, []byte(`{"not json`))
	if m.AggregateID != dlqAggA || m.EventID != "" || !m.FailedAt.Equal(dlqBase) || m.OriginalOffset != -1 || m.Reason != "boom" {
		t.Fatalf("decoded garbage %+v", m)
	}
}

func TestIsDLQHeader(t *testing.T) {
	for _, k := range []string{"dlq_error_class", "dlq_anything", "reason_poisoned", "topic_poisoned", "handler_poisoned", "subscriber_poisoned", "replayed_from"} {
		if !ops.IsDLQHeader(k) {
			t.Errorf("%s is a DLQ header", k)
		}
	}
	for _, k := range []string{"_watermill_message_uuid", "event_id", "aggregate_id", "traceparent", "tracestate"} {
		if ops.IsDLQHeader(k) {
			t.Errorf("%s is not a DLQ header", k)
		}
	}
}

func TestNewDLQMessageDecodesACutPayload(t *testing.T) {
	m := truncatedMsg(3, 1)
	if !m.Truncated || m.PayloadBytes != 2_000_000 || m.TruncationReason != "too large" || m.AggregateID != dlqAggB {
		t.Fatalf("decoded %+v", m)
	}
	if m := dlqMsg(0, 0, "rejected", dlqAggA, "e-1", dlqBase); m.Truncated || m.PayloadBytes != len(m.Payload) {
		t.Fatalf("whole payload decoded as %+v", m)
	}
}
