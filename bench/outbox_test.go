package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// forwarderEnvelope is Watermill's forwarder envelope (components/forwarder.messageEnvelope,
// unexported there): the payload of an outbox row as ProductRepository writes it through
// forwarder.NewPublisher. Same fields, same order, same tags, so the same JSON.
type forwarderEnvelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// outboxEvent is one product.created event as the repository would store it in the outbox,
// and the event message the relay would hand to Kafka.
type outboxEvent struct {
	lane        int16
	outboxUUID  string // the uuid column: the forwarder's wrapping message gets a fresh UUID
	outboxValue []byte // the payload column: the forwarder envelope JSON
	msg         *message.Message
}

// newOutboxEvent builds the i-th event exactly the way ProductRepository.Add does: product.New
// records product.created, envelope.Marshal turns it into a message, the forwarder publisher
// wraps it for topic, the lane is LaneOf(aggregate id).
func newOutboxEvent(topic, run string, i int) (outboxEvent, error) {
	now := time.Now()
	p, err := product.New(product.NewID(now), benchDetails(run, i), now)
	if err != nil {
		return outboxEvent{}, err
	}
	evs := p.PopEvents()
	if len(evs) != 1 {
		return outboxEvent{}, fmt.Errorf("product.New recorded %d events", len(evs))
	}
	msg, err := envelope.Marshal(evs[0])
	if err != nil {
		return outboxEvent{}, err
	}
	wrapped, err := json.Marshal(forwarderEnvelope{DestinationTopic: topic, UUID: msg.UUID, Payload: msg.Payload, Metadata: msg.Metadata})
	if err != nil {
		return outboxEvent{}, err
	}
	return outboxEvent{
		lane:        int16(postgres.LaneOf(p.ID().String(), postgres.DefaultLanes)),
		outboxUUID:  watermill.NewUUID(),
		outboxValue: wrapped,
		msg:         msg,
	}, nil
}

// emptyMetadata is the metadata column of a forwarder-wrapped message: json.Marshal of an
// empty message.Metadata.
var emptyMetadata = json.RawMessage(`{}`)

// eventSource streams generated events into COPY: one transaction's rows, all stamped with
// that transaction's id.
type eventSource struct {
	events <-chan outboxEvent
	left   int
	xid    uint64
	cur    outboxEvent
	keep   func(outboxEvent)
}

func (s *eventSource) Next() bool {
	if s.left == 0 {
		return false
	}
	e, ok := <-s.events
	if !ok {
		return false
	}
	s.left--
	s.cur = e
	if s.keep != nil {
		s.keep(e)
	}
	return true
}

func (s *eventSource) Values() ([]any, error) {
	return []any{s.cur.lane, s.cur.outboxUUID, s.cur.outboxValue, emptyMetadata, s.xid}, nil
}

func (s *eventSource) Err() error { return nil }

// prefillOutbox writes n events for topic into the outbox with COPY, in transactions of
// perTx rows each, every row stamped with its transaction's real pg_current_xact_id() as
// OutboxSchema.InsertQuery does. keep, if set, sees every event (for the raw baselines).
// It returns the bytes of payload written.
func prefillOutbox(ctx context.Context, db *postgres.DB, topic string, n, perTx int, keep func(outboxEvent)) (int64, error) {
	run := runID()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan outboxEvent, 4096)
	genErr := make(chan error, 1)
	go func() {
		defer close(events)
		for i := 0; i < n; i++ {
			e, err := newOutboxEvent(topic, run, i)
			if err != nil {
				genErr <- err
				return
			}
			select {
			case events <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	var bytes int64
	counting := func(e outboxEvent) {
		bytes += int64(len(e.outboxValue))
		if keep != nil {
			keep(e)
		}
	}
	for done := 0; done < n; {
		rows := min(perTx, n-done)
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			var xid uint64
			if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&xid); err != nil {
				return fmt.Errorf("xact id: %w", err)
			}
			src := &eventSource{events: events, left: rows, xid: xid, keep: counting}
			copied, err := tx.CopyFrom(ctx, pgx.Identifier{"outbox_messages"},
				[]string{"lane", "uuid", "payload", "metadata", "transaction_id"}, src)
			if err != nil {
				return fmt.Errorf("copy: %w", err)
			}
			if int(copied) != rows {
				select {
				case err := <-genErr:
					return err
				default:
				}
				return fmt.Errorf("copied %d rows, want %d", copied, rows)
			}
			return nil
		})
		if err != nil {
			return bytes, err
		}
		done += rows
	}
	// ANALYZE as autovacuum would soon after a bulk load, so the relay's plans see real stats.
	if _, err := db.Pool.Exec(ctx, `ANALYZE outbox_messages`); err != nil {
		return bytes, err
	}
	return bytes, nil
}

// saramaMessage is the record watermill-kafka's publisher produces for an event message with
// kafka.NewPublisher's marshaler: key = aggregate id, headers = UUID header + metadata.
func saramaMessage(topic string, m *message.Message) *sarama.ProducerMessage {
	headers := make([]sarama.RecordHeader, 0, len(m.Metadata)+1)
	headers = append(headers, sarama.RecordHeader{Key: []byte(wkafka.UUIDHeaderKey), Value: []byte(m.UUID)})
	for k, v := range m.Metadata {
		headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(m.Metadata.Get(envelope.MetaAggregateID)),
		Value:   sarama.ByteEncoder(m.Payload),
		Headers: headers,
	}
}

// kgoRecord is the same record for franz-go.
func kgoRecord(topic string, m *message.Message) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(m.Metadata)+1)
	headers = append(headers, kgo.RecordHeader{Key: wkafka.UUIDHeaderKey, Value: []byte(m.UUID)})
	for k, v := range m.Metadata {
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(m.Metadata.Get(envelope.MetaAggregateID)),
		Value:   m.Payload,
		Headers: headers,
	}
}
