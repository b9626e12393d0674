package kafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/internal/testenv"
)

const (
	smokePartitions = 6
	smokeMessages   = 100
)

// TestSmokeWatermillRoundTrip checks the real Kafka broker of `make deps` (or KAFKA_BROKERS) with
// the libraries the service uses: a topic created with franz-go's admin client, 100 messages
// published and consumed through watermill-kafka (Sarama) with a consumer group, all of them
// arriving, and the topic deleted again.
func TestSmokeWatermillRoundTrip(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	topic := testenv.Name("smoke_kafka")
	group := testenv.Name("smoke_group")

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("franz-go client: %v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	created, err := adm.CreateTopic(ctx, smokePartitions, 1, nil, topic)
	if err == nil {
		err = created.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	deleted := false
	t.Cleanup(func() {
		if deleted {
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer ccancel()
		_, _ = adm.DeleteTopic(cctx, topic)
	})
	waitForLeaders(ctx, t, adm, topic)

	logger := watermill.NopLogger{}

	subConfig := kafka.DefaultSaramaSubscriberConfig()
	subConfig.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := kafka.NewSubscriber(kafka.SubscriberConfig{
		Brokers:               brokers,
		Unmarshaler:           kafka.DefaultMarshaler{},
		OverwriteSaramaConfig: subConfig,
		ConsumerGroup:         group,
	}, logger)
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	defer func() { _ = sub.Close() }()

	// Keys spread the messages over the partitions, as aggregate ids do in the service.
	marshaler := kafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
		return msg.UUID, nil
	})
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers:               brokers,
		Marshaler:             marshaler,
		OverwriteSaramaConfig: kafka.DefaultSaramaSyncPublisherConfig(),
	}, logger)
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	defer func() { _ = pub.Close() }()

	want := make(map[string]bool, smokeMessages)
	for i := range smokeMessages {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		msg.Metadata.Set("n", fmt.Sprint(i))
		if err := pub.Publish(topic, msg); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		want[msg.UUID] = true
	}

	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	got := make(map[string]bool, smokeMessages)
	for len(got) < smokeMessages {
		select {
		case msg, ok := <-msgs:
			if !ok {
				t.Fatalf("subscription closed after %d of %d messages", len(got), smokeMessages)
			}
			if !want[msg.UUID] {
				t.Fatalf("received a message that was not published: uuid %q payload %q", msg.UUID, msg.Payload)
			}
			if msg.Metadata.Get("n") == "" {
				t.Fatalf("message %s lost its metadata (Kafka headers)", msg.UUID)
			}
			got[msg.UUID] = true
			msg.Ack()
		case <-ctx.Done():
			t.Fatalf("received %d of %d messages before the deadline: %v", len(got), smokeMessages, ctx.Err())
		}
	}

	if err := pub.Close(); err != nil {
		t.Errorf("close publisher: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("close subscriber: %v", err)
	}

	// The consumer group committed offsets on the broker for the acked messages.
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			committed += o.At
		}
	})
	if committed != smokeMessages {
		t.Errorf("group %s committed %d offsets in total on %s, want %d", group, committed, topic, smokeMessages)
	}

	resp, err := adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	deleted = true
	if _, err := adm.DeleteGroup(ctx, group); err != nil {
		t.Logf("delete group %s: %v", group, err)
	}
}

// waitForLeaders polls the metadata until every partition of topic has a leader: topic creation
// returns when the controller accepted it, a moment before the broker serves the partitions.
func waitForLeaders(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		topics, err := adm.ListTopics(ctx, topic)
		if err == nil {
			d, ok := topics[topic]
			ready := ok && d.Err == nil && len(d.Partitions) == smokePartitions
			if ready {
				for _, p := range d.Partitions {
					if p.Leader < 0 || p.Err != nil {
						ready = false
					}
				}
			}
			if ready {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s: partitions without leader before the deadline (last error %v)", topic, err)
		case <-tick.C:
		}
	}
}
