package kafka_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testkafka"
)

func newDLQPublisher(t *testing.T, c testkafka.Cluster, pc kafka.DLQPublisherConfig) *kafka.DLQPublisher {
	t.Helper()
	p, err := kafka.NewDLQPublisher(kafka.Config{Brokers: c.Brokers}, pc, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestDLQPublisherKeepsTheKeyAndCutsAnOversizedPayload: records consumed by the concurrent
// subscriber reach the DLQ under their original key, once each: a small one as it is, a
// 2 MB one (snappy-compressed far below the broker's limit, as a producer may send it) with
// its headers and the head of its payload, and headers that say why and how much was cut.
func TestDLQPublisherKeepsTheKeyAndCutsAnOversizedPayload(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		events := testkafka.CreateTopic(t, c, "dlqpub_events", 2)
		dlqTopic := testkafka.CreateTopic(t, c, "dlqpub_dlq", 2)
		big := bytes.Repeat([]byte("x"), 2_000_000)
		prod := newProducer(t, c, kgo.ProducerBatchMaxBytes(16<<20), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
		recs := []*kgo.Record{
			{Topic: events, Key: []byte("product-big"), Value: big, Headers: []kgo.RecordHeader{{Key: "event_type", Value: []byte("product.created")}}},
			{Topic: events, Key: []byte("product-small"), Value: []byte("not json")},
			{Topic: events, Value: []byte(`{"x":1}`), Headers: []kgo.RecordHeader{{Key: "aggregate_id", Value: []byte("from-header")}}},
		}
		if err := prod.ProduceSync(ctxT(t, 30*time.Second), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		_, ch := newConcurrentSub(t, c, events, kafka.ConcurrentSubscriberConfig{ConsumerGroup: events + ".g"})
		pub := newDLQPublisher(t, c, kafka.DLQPublisherConfig{})
		for range recs {
			msg := receive(t, ch, 30*time.Second)
			if k, ok := kafka.KeyFromContext(msg.Context()); !ok || (len(msg.Payload) == len(big) && string(k) != "product-big") {
				t.Fatalf("key in the message context: %q, %v", k, ok)
			}
			msg.Metadata.Set("dlq_error_class", "undecodable")
			if err := pub.Publish(dlqTopic, msg); err != nil {
				t.Fatalf("publish %d bytes: %v", len(msg.Payload), err)
			}
			msg.Ack()
		}
		testkafka.ReadUntil(t, c, dlqTopic, 30*time.Second, func(rs []testkafka.Record) bool { return len(rs) >= 3 })
		time.Sleep(time.Second) // a duplicate would show up now
		got := testkafka.ReadUntil(t, c, dlqTopic, 5*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 3 })
		if len(got) != 3 {
			t.Fatalf("%d records in the DLQ, want 3", len(got))
		}
		byKey := map[string]testkafka.Record{}
		for _, r := range got {
			byKey[r.Key] = r
		}
		small := byKey["product-small"]
		if string(small.Value) != "not json" || small.Headers["dlq_payload_truncated"] != "" || small.Headers["dlq_error_class"] != "undecodable" {
			t.Errorf("small record %+v", small)
		}
		if r, ok := byKey["from-header"]; !ok || string(r.Value) != `{"x":1}` {
			t.Errorf("a record without key is keyed by its aggregate_id header: %+v", got)
		}
		b, ok := byKey["product-big"]
		if !ok {
			t.Fatalf("the 2 MB record is not in the DLQ under its key: %+v", got)
		}
		cut, _ := strconv.Atoi(b.Headers["dlq_payload_cut_bytes"])
		if b.Headers["dlq_payload_truncated"] != "true" || b.Headers["dlq_payload_bytes"] != "2000000" || cut+len(b.Value) != len(big) ||
			len(b.Value) < 900_000 || len(b.Value) > kafka.DefaultDLQMaxRecordBytes || !bytes.Equal(b.Value, big[:len(b.Value)]) ||
			!strings.Contains(b.Headers["dlq_truncation_reason"], "exceeds the DLQ record limit") ||
			b.Headers["event_type"] != "product.created" || b.Headers["dlq_error_class"] != "undecodable" {
			t.Errorf("2 MB record in the DLQ: %d bytes, headers %v", len(b.Value), b.Headers)
		}
	})
}

// TestDLQPublisherFitsATopicWithASmallerLimit: a DLQ topic whose max.message.bytes is below
// the publisher's own limit refuses the record; the publisher cuts further until it fits.
func TestDLQPublisherFitsATopicWithASmallerLimit(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "dlqpub_small", 1)
		cl := newProducer(t, c)
		limit := "200000"
		resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctxT(t, 10*time.Second),
			[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &limit}}, topic)
		if err == nil {
			err = resp[0].Err
		}
		if err != nil {
			t.Fatalf("set max.message.bytes: %v", err)
		}
		pub := newDLQPublisher(t, c, kafka.DLQPublisherConfig{})
		payload := make([]byte, 600_000) // random, so compression cannot shrink it below the limit
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage("m-1", payload)
		msg.SetContext(context.Background())
		// A broker may take a moment to apply the topic's new limit.
		deadline := time.Now().Add(20 * time.Second)
		for {
			if err := pub.Publish(topic, msg); err != nil {
				t.Fatal(err)
			}
			recs := testkafka.ReadUntil(t, c, topic, 10*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 })
			last := recs[len(recs)-1]
			if strings.Contains(last.Headers["dlq_truncation_reason"], "MESSAGE_TOO_LARGE") {
				if len(last.Value) > 200_000 || last.Headers["dlq_payload_bytes"] != "600000" {
					t.Fatalf("record %d bytes, headers %v", len(last.Value), last.Headers)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the broker never refused %d bytes; last record %d bytes, headers %v", len(payload), len(last.Value), last.Headers)
			}
			time.Sleep(time.Second)
		}
	})
}

func TestDLQPublisherConfig(t *testing.T) {
	for _, pc := range []kafka.DLQPublisherConfig{{MaxRecordBytes: 100}, {MaxRecordBytes: 2_000_000}, {DeliveryTimeout: -time.Second}} {
		if _, err := kafka.NewDLQPublisher(kafka.Config{Brokers: []string{"127.0.0.1:1"}}, pc, nil); err == nil {
			t.Errorf("%+v accepted", pc)
		}
	}
}
