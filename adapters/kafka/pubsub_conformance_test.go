package kafka_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// conformanceFeatures are what the Kafka pub/sub (a publisher + ConcurrentSubscriber) promises:
// consumer groups and persistence, at-least-once (a message may come twice), and no order:
// the subscriber keeps many messages of a partition in flight and acks may come in any order.
// Topics are unique to each test and deleted afterwards (see conformanceTopics).
func conformanceFeatures(topics *conformanceTopics) tests.Features {
	return tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     false,
		Persistent:          true,
		// A new subscriber joins a group and reads from the group's committed offsets.
		NewSubscriberReceivesOldMessages: false,
		GenerateTopicFunc:                topics.name,
	}
}

// conformanceTopics names the suite's topics under one prefix, so they can be deleted from the
// shared broker when the suite is done.
type conformanceTopics struct{ prefix string }

func (c *conformanceTopics) name(tctx tests.TestContext) string {
	return c.prefix + string(tctx.TestID)
}

// dropAll deletes every topic of the suite (the tests add suffixes to the names they get).
func (c *conformanceTopics) dropAll(t *testing.T, cl testkafka.Cluster) {
	kc, err := kgo.NewClient(kgo.SeedBrokers(cl.Brokers...))
	if err != nil {
		t.Logf("drop conformance topics: %v", err)
		return
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Logf("drop conformance topics: %v", err)
		return
	}
	var mine []string
	for _, name := range listed.Names() {
		if strings.HasPrefix(name, c.prefix) {
			mine = append(mine, name)
		}
	}
	if len(mine) > 0 {
		if _, err := adm.DeleteTopics(ctx, mine...); err != nil {
			t.Logf("drop conformance topics: %v", err)
		}
	}
}

// conformancePublishers are the Watermill publishers of the adapter, each run through the
// suite with the ConcurrentSubscriber: the relay's pipelined Publisher and the projector's
// DLQPublisher.
var conformancePublishers = []struct {
	name string
	new  func(kafka.Config) (message.Publisher, error)
}{
	{"relay-publisher", func(c kafka.Config) (message.Publisher, error) {
		return kafka.NewPipelinedPublisher(c, kafka.PublisherConfig{}, quietLog())
	}},
	{"dlq-publisher", func(c kafka.Config) (message.Publisher, error) {
		return kafka.NewDLQPublisher(c, kafka.DLQPublisherConfig{}, quietLog())
	}},
}

// conformancePubSub builds the pair the suite runs: a publisher and a ConcurrentSubscriber in
// group, with short commit and resend intervals so the suite does not wait on them.
func conformancePubSub(t *testing.T, c testkafka.Cluster, newPub func(kafka.Config) (message.Publisher, error), group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	pub, err := newPub(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafka.NewConcurrentSubscriber(c.Config(), kafka.ConcurrentSubscriberConfig{
		ConsumerGroup:   group,
		FromOldest:      true,
		NackResendSleep: 50 * time.Millisecond,
		CommitInterval:  50 * time.Millisecond,
	}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

// groupOf is the consumer group of one test of the suite: every pub/sub a test builds joins
// the same group (the suite relies on that, for example to continue after a subscriber was
// closed), and tests running in parallel do not rebalance each other.
func groupOf(t *testing.T) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name()))
	return fmt.Sprintf("catalog-conformance-%x", h.Sum64())
}

func runConformance(t *testing.T, run func(*testing.T, tests.Features, tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor)) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		for _, p := range conformancePublishers {
			t.Run(p.name, func(t *testing.T) {
				topics := &conformanceTopics{prefix: strings.ReplaceAll(testenv.Name("conformance"), "_", ".") + "."}
				if c.Name != "embedded" {
					t.Cleanup(func() { topics.dropAll(t, c) })
				}
				run(t, conformanceFeatures(topics),
					func(t *testing.T) (message.Publisher, message.Subscriber) {
						return conformancePubSub(t, c, p.new, groupOf(t))
					},
					func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
						return conformancePubSub(t, c, p.new, group)
					})
			})
		}
	})
}

// TestPubSubConformance runs Watermill's universal Pub/Sub tests against each publisher of the
// adapter with the ConcurrentSubscriber, on the embedded broker and the real Kafka.
func TestPubSubConformance(t *testing.T) {
	runConformance(t, tests.TestPubSub)
}
