package postgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/marketplace/catalog/adapters/postgres"
)

// outboxFeatures are what the outbox pub/sub (watermill-sql's publisher with OutboxSchema, and
// OutboxSubscriber) promises: consumer groups (one position per group), persistence,
// at-least-once, and order within a topic (a lane): a lane is read by one subscription at a
// time, which hands a consumer its next message only after the previous one was acked (or
// nacked, and then redelivers from it).
var outboxFeatures = tests.Features{
	ConsumerGroups:                   true,
	ExactlyOnceDelivery:              false,
	GuaranteedOrder:                  true,
	Persistent:                       true,
	NewSubscriberReceivesOldMessages: false,
}

// outboxEnv is one test's database: the suite's topics are mapped onto its lanes in the order
// they are first used (a test uses at most twenty topics; an outbox has up to 64 lanes).
type outboxEnv struct {
	db    *postgres.DB
	mu    sync.Mutex
	lanes map[string]int
}

func (e *outboxEnv) lane(topic string) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l, ok := e.lanes[topic]; ok {
		return l, nil
	}
	if len(e.lanes) >= postgres.MaxLanes {
		return 0, fmt.Errorf("test uses more than %d topics", postgres.MaxLanes)
	}
	e.lanes[topic] = len(e.lanes)
	return e.lanes[topic], nil
}

// outboxEnvs gives every test of the suite a database of its own, shared by all the pub/subs
// the test builds.
type outboxEnvs struct {
	mu   sync.Mutex
	envs map[*testing.T]*outboxEnv
}

func (o *outboxEnvs) of(t *testing.T) *outboxEnv {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.envs[t]; ok {
		return e
	}
	db, _ := migratedDB(t)
	e := &outboxEnv{db: db, lanes: map[string]int{}}
	o.envs[t] = e
	return e
}

func (o *outboxEnvs) pubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	e := o.of(t)
	pub, err := wsql.NewPublisher(e.db.SQL, wsql.PublisherConfig{SchemaAdapter: postgres.OutboxSchema{Lane: e.lane}}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := postgres.NewOutboxSubscriber(e.db, postgres.OutboxSubscriberConfig{
		ConsumerGroup:   group,
		PollInterval:    20 * time.Millisecond,
		AcquireInterval: 50 * time.Millisecond,
		FlushInterval:   50 * time.Millisecond,
		// TestContinueAfterErrors nacks 300 messages one after the other.
		NackResendInterval: 10 * time.Millisecond,
		CloseTimeout:       time.Second,
		Lane:               e.lane,
	}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// Some tests leave subscribers open (TestPublishSubscribeInOrder closes its multiplied
	// subscriber before subscribing it); their lanes hold connections the database's Close
	// would wait for. This cleanup runs before that one.
	t.Cleanup(func() { _ = sub.Close() })
	return pub, sub
}

func runOutboxConformance(t *testing.T, run func(*testing.T, tests.Features, tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor)) {
	envs := &outboxEnvs{envs: map[*testing.T]*outboxEnv{}}
	run(t, outboxFeatures,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return envs.pubSub(t, postgres.RelayConsumerGroup)
		},
		envs.pubSub)
}

// TestOutboxPubSubConformance runs Watermill's universal Pub/Sub tests against the outbox:
// OutboxSchema through watermill-sql's publisher (the write path) and OutboxSubscriber (the
// relay's read side), on the real PostgreSQL.
func TestOutboxPubSubConformance(t *testing.T) {
	runOutboxConformance(t, tests.TestPubSub)
}
