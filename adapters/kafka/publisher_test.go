package kafka_test

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/internal/testkafka"
)

// TestPublisherWritesWhatWatermillKafkaWrote: the pipelined publisher replaces watermill-kafka's
// Sarama publisher on the relay, so its records must be the same for consumers: key = the
// aggregate id, the message UUID in watermill-kafka's header, the metadata as headers, and the
// partition Sarama's default hash partitioner picks for the key (a product's new events must
// land on the partition its earlier events went to).
func TestPublisherWritesWhatWatermillKafkaWrote(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		const partitions = 12
		topic := testkafka.CreateTopic(t, c, "pipelined_pub", partitions)
		var mu sync.Mutex
		var enqueued []string
		pub, err := kafka.NewPipelinedPublisher(kafka.Config{Brokers: c.Brokers}, kafka.PublisherConfig{
			Enqueued: func(m *message.Message) { mu.Lock(); enqueued = append(enqueued, m.UUID); mu.Unlock() },
		}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		var msgs []*message.Message
		for i := range 200 {
			m := message.NewMessage(fmt.Sprintf("uuid-%d", i), fmt.Appendf(nil, "payload-%d", i))
			m.Metadata.Set(envelope.MetaAggregateID, fmt.Sprintf("product-%d", i%37))
			m.Metadata.Set("k", "v")
			msgs = append(msgs, m)
		}
		if err := pub.Publish(topic, msgs...); err != nil {
			t.Fatal(err)
		}
		if len(enqueued) != len(msgs) {
			t.Fatalf("Enqueued saw %d messages, want %d", len(enqueued), len(msgs))
		}
		for i, id := range enqueued {
			if id != msgs[i].UUID {
				t.Fatalf("Enqueued saw %s at %d, want %s: not in publish order", id, i, msgs[i].UUID)
			}
		}
		recs := testkafka.ReadUntil(t, c, topic, 30*time.Second, func(r []testkafka.Record) bool { return len(r) >= len(msgs) })
		sp := sarama.NewHashPartitioner(topic)
		seen := map[string]int{}
		for _, r := range recs {
			want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(r.Key)}, partitions)
			if err != nil {
				t.Fatal(err)
			}
			if r.Partition != want {
				t.Errorf("key %s on partition %d, Sarama's hash partitioner says %d", r.Key, r.Partition, want)
			}
			uuid := r.Headers["_watermill_message_uuid"]
			seen[uuid]++
			if r.Headers["k"] != "v" || r.Headers[envelope.MetaAggregateID] != r.Key {
				t.Errorf("record %s: headers %v, key %q", uuid, r.Headers, r.Key)
			}
		}
		for _, m := range msgs {
			if seen[m.UUID] != 1 {
				t.Errorf("message %s is on the topic %d times", m.UUID, seen[m.UUID])
			}
		}

		// watermill-kafka's own publisher, given the same messages, writes the same records.
		wtopic := testkafka.CreateTopic(t, c, "watermill_pub", partitions)
		wpub, err := kafka.NewPublisher(c.Config(), quietLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wpub.Close() })
		if err := wpub.Publish(wtopic, msgs...); err != nil {
			t.Fatal(err)
		}
		theirs := map[string]testkafka.Record{}
		for _, r := range testkafka.ReadUntil(t, c, wtopic, 30*time.Second, func(r []testkafka.Record) bool { return len(r) >= len(msgs) }) {
			theirs[r.Headers["_watermill_message_uuid"]] = r
		}
		for _, ours := range recs {
			w, ok := theirs[ours.Headers["_watermill_message_uuid"]]
			if !ok || w.Key != ours.Key || w.Partition != ours.Partition || string(w.Value) != string(ours.Value) || !maps.Equal(w.Headers, ours.Headers) {
				t.Errorf("record %s: ours key %q partition %d headers %v; watermill-kafka's key %q partition %d headers %v",
					ours.Headers["_watermill_message_uuid"], ours.Key, ours.Partition, ours.Headers, w.Key, w.Partition, w.Headers)
			}
		}
	})
}
