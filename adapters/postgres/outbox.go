package postgres

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// DefaultLanes is the number of outbox lanes. Writers and relays must agree on it: an event
// goes to lane hash(aggregate id) mod lanes, and a relay forwards lanes 0..lanes-1.
const DefaultLanes = 16

// MaxLanes bounds the lane count; each lane holds a database connection in every relay.
const MaxLanes = 64

const lanePrefix = "catalog_outbox_lane_"

// LaneTopic is the watermill-sql topic of one lane. All lanes share the outbox_messages
// table; the schema adapter turns the topic back into the lane number.
func LaneTopic(lane int) string { return lanePrefix + strconv.Itoa(lane) }

// LaneOf returns the lane of an aggregate: FNV-1a of its id, so a product's events always go
// to one lane and stay in commit order.
func LaneOf(aggregateID string, lanes int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aggregateID))
	return int(h.Sum32() % uint32(lanes))
}

func laneFromTopic(topic string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(topic, lanePrefix))
	if err != nil || !strings.HasPrefix(topic, lanePrefix) || n < 0 || n >= MaxLanes {
		return 0, fmt.Errorf("outbox: %q is not an outbox lane topic", topic)
	}
	return n, nil
}

// Outbox appends domain events to the transactional outbox on the writer's transaction: the
// one place that marshals an event into its envelope, picks its lane and inserts it, so that
// every writer of events (today the product repository) commits them with its change.
type Outbox struct {
	// Topic is the Kafka topic the relay forwards the events to (PRODUCT_EVENTS_TOPIC).
	Topic string
	// Lanes is the number of outbox lanes (OUTBOX_LANES); writers and relays must agree.
	Lanes int
	// Decorate, when set, adds metadata to each message before it is stored (the trace
	// context, CloudEvents headers).
	Decorate func(context.Context, *message.Message)
}

// Append marshals events into envelopes and inserts them, in order, into the lane of
// aggregateID through watermill-sql's publisher on tx, wrapped by Watermill's forwarder
// envelope. Nothing is written when events is empty.
func (o Outbox) Append(ctx context.Context, tx *stdsql.Tx, aggregateID string, events []product.Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs := make([]*message.Message, 0, len(events))
	for _, e := range events {
		m, err := envelope.Marshal(e)
		if err != nil {
			return err
		}
		if o.Decorate != nil {
			o.Decorate(ctx, m)
		}
		msgs = append(msgs, m)
	}
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: OutboxSchema{}}, nil)
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{
		ForwarderTopic: LaneTopic(LaneOf(aggregateID, o.Lanes)),
	})
	if err := fwd.Publish(o.Topic, msgs...); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// OutboxSchema is the watermill-sql SchemaAdapter the write path publishes through (with
// watermill-sql's publisher, wrapped by Watermill's forwarder publisher, on the write's own
// *sql.Tx): it writes a message into the lane its topic names, stamped with the writing
// transaction's id. The relay reads the outbox with OutboxSubscriber, not with watermill-sql's
// subscriber, so the read half of the interface is not used.
type OutboxSchema struct {
	// Lane maps a topic to its lane (default: the lane of a LaneTopic name).
	Lane func(topic string) (int, error)
}

// InsertQuery writes messages into the lane named by the topic, stamped with the writing
// transaction's id (the relay never passes a transaction that is still open).
func (s OutboxSchema) InsertQuery(topic string, msgs message.Messages) (wsql.Query, error) {
	laneOf := s.Lane
	if laneOf == nil {
		laneOf = laneFromTopic
	}
	lane, err := laneOf(topic)
	if err != nil {
		return wsql.Query{}, err
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO outbox_messages (lane, uuid, payload, metadata, transaction_id) VALUES `)
	args := make([]any, 0, len(msgs)*3)
	for i, m := range msgs {
		meta, err := json.Marshal(m.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("outbox: metadata of %s: %w", m.UUID, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		n := len(args)
		fmt.Fprintf(&b, "(%d,$%d,$%d,$%d,pg_current_xact_id())", lane, n+1, n+2, n+3)
		args = append(args, m.UUID, []byte(m.Payload), meta)
	}
	return wsql.Query{Query: b.String(), Args: args}, nil
}

// errReadWithOutboxSubscriber is why the read half of OutboxSchema refuses to work.
const errReadWithOutboxSubscriber = "the outbox is read by postgres.OutboxSubscriber, not by watermill-sql's subscriber"

// SelectQuery is not supported (see OutboxSubscriber): watermill-sql's interface has no error
// here, so it returns a query that fails with the reason.
func (s OutboxSchema) SelectQuery(string, string, wsql.OffsetsAdapter) wsql.Query {
	return wsql.Query{Query: `SELECT 1/0 -- ` + errReadWithOutboxSubscriber}
}

// UnmarshalMessage is not supported (see OutboxSubscriber).
func (s OutboxSchema) UnmarshalMessage(wsql.Scanner) (wsql.Row, error) {
	return wsql.Row{}, errors.New("outbox: " + errReadWithOutboxSubscriber)
}

// SchemaInitializingQueries returns nothing: `catalog migrate` owns the schema, and creating
// tables implicitly inside a write transaction is exactly what must not happen.
func (s OutboxSchema) SchemaInitializingQueries(string) []wsql.Query { return nil }

// SubscribeIsolationLevel is part of the read half, which is not supported.
func (s OutboxSchema) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelDefault
}
