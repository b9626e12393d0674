package postgres

import (
	stdsql "database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
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

// OutboxSchema is a watermill-sql SchemaAdapter over outbox_messages. Unlike watermill-sql's
// default PostgreSQL schema, whose poll sorts the whole unconsumed backlog, its poll is a range
// scan of the primary key (lane, transaction_id, offset) after the last acked position, so a
// backlog of millions drains as fast as an empty outbox.
type OutboxSchema struct {
	// BatchSize is the number of rows one poll reads and one transaction acks.
	BatchSize int
}

// InsertQuery writes messages into the lane named by the topic, stamped with the writing
// transaction's id (the relay never passes a transaction that is still open).
func (s OutboxSchema) InsertQuery(topic string, msgs message.Messages) (wsql.Query, error) {
	lane, err := laneFromTopic(topic)
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

// SelectQuery returns the next batch of the lane after the consumer group's position, only
// from transactions older than every open one, in commit-safe order.
func (s OutboxSchema) SelectQuery(topic string, consumerGroup string, offsets wsql.OffsetsAdapter) wsql.Query {
	lane, err := laneFromTopic(topic)
	if err != nil {
		// watermill-sql's interface has no error here; a query that fails with the reason
		// surfaces it through the subscriber's error path.
		return wsql.Query{Query: `SELECT 1/0 -- ` + strings.ReplaceAll(err.Error(), "\n", " ")}
	}
	next := offsets.NextOffsetQuery(topic, consumerGroup)
	batch := s.BatchSize
	if batch <= 0 {
		batch = 1000
	}
	// LATERAL makes the lane position an index condition of the primary key range scan; as a
	// plain join filter it made every poll re-read the lane's whole relayed history.
	l := strconv.Itoa(lane)
	q := `WITH last AS (` + next.Query + `)
SELECT m."offset", m.transaction_id, m.uuid, m.payload, m.metadata
FROM last CROSS JOIN LATERAL (
  SELECT o."offset", o.transaction_id, o.uuid, o.payload, o.metadata
  FROM outbox_messages o
  WHERE ` + unrelayedRows(l, "last") + `
  ORDER BY o.lane, o.transaction_id, o."offset"
  LIMIT ` + strconv.Itoa(batch) + `
) m
ORDER BY m.transaction_id, m."offset"`
	return wsql.Query{Query: q, Args: next.Args}
}

// unrelayedRows is the condition on outbox_messages o that selects the rows of lane (an SQL
// expression) after the position in the row pos of outbox_offsets, from transactions older than
// every open one. The relay's poll and its lock-free peek must agree on it exactly.
func unrelayedRows(lane, pos string) string {
	return `o.lane = ` + lane + `
    AND (o.lane, o.transaction_id, o."offset") > (` + lane + `, ` + pos + `.last_processed_transaction_id, ` + pos + `.offset_acked)
    AND o.transaction_id < pg_snapshot_xmin(pg_current_snapshot())`
}

// UnmarshalMessage turns a row into a message; the transaction id goes along for the ack.
func (s OutboxSchema) UnmarshalMessage(row wsql.Scanner) (wsql.Row, error) {
	var r wsql.Row
	var txid string
	if err := row.Scan(&r.Offset, &txid, &r.UUID, &r.Payload, &r.Metadata); err != nil {
		return wsql.Row{}, fmt.Errorf("outbox: scan: %w", err)
	}
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if r.Metadata != nil {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wsql.Row{}, fmt.Errorf("outbox: metadata of %s: %w", r.UUID, err)
		}
	}
	r.Msg = msg
	r.ExtraData = map[string]any{"transaction_id": txid}
	return r, nil
}

// SchemaInitializingQueries returns nothing: `catalog migrate` owns the schema, and creating
// tables implicitly inside a write transaction is exactly what must not happen.
func (s OutboxSchema) SchemaInitializingQueries(string) []wsql.Query { return nil }

// SubscribeIsolationLevel is REPEATABLE READ, as watermill-sql's PostgreSQL schema uses, so
// the snapshot that decides which transactions are complete is the one the rows come from.
func (s OutboxSchema) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelRepeatableRead
}

// OutboxOffsets is a watermill-sql OffsetsAdapter over outbox_offsets, one row per lane and
// consumer group. NextOffsetQuery takes the row FOR UPDATE SKIP LOCKED: a lane is owned by the
// one relay whose transaction holds its row; another relay polling the same lane gets nothing
// and moves on instead of blocking or double-sending.
type OutboxOffsets struct{}

// NextOffsetQuery locks and returns the lane's position for the group.
func (OutboxOffsets) NextOffsetQuery(topic, consumerGroup string) wsql.Query {
	lane, _ := laneFromTopic(topic)
	return wsql.Query{
		Query: `SELECT offset_acked, last_processed_transaction_id FROM outbox_offsets
WHERE lane = ` + strconv.Itoa(lane) + ` AND consumer_group = $1 FOR UPDATE SKIP LOCKED`,
		Args: []any{consumerGroup},
	}
}

// AckMessageQuery moves the lane's position to the last forwarded row.
func (OutboxOffsets) AckMessageQuery(topic string, row wsql.Row, consumerGroup string) wsql.Query {
	lane, _ := laneFromTopic(topic)
	return wsql.Query{
		Query: `UPDATE outbox_offsets SET offset_acked = $1, last_processed_transaction_id = $2::xid8, updated_at = now()
WHERE lane = ` + strconv.Itoa(lane) + ` AND consumer_group = $3`,
		Args: []any{row.Offset, row.ExtraData["transaction_id"], consumerGroup},
	}
}

// ConsumedMessageQuery is not needed: the row lock already gives single ownership.
func (OutboxOffsets) ConsumedMessageQuery(string, wsql.Row, string, []byte) wsql.Query {
	return wsql.Query{}
}

// SchemaInitializingQueries returns nothing; migrations own the schema.
func (OutboxOffsets) SchemaInitializingQueries(string) []wsql.Query { return nil }

// BeforeSubscribingQueries creates the lane's position row, which the poll locks.
func (OutboxOffsets) BeforeSubscribingQueries(topic, consumerGroup string) []wsql.Query {
	lane, _ := laneFromTopic(topic)
	return []wsql.Query{{
		Query: `INSERT INTO outbox_offsets (lane, consumer_group) VALUES (` + strconv.Itoa(lane) + `, $1) ON CONFLICT DO NOTHING`,
		Args:  []any{consumerGroup},
	}}
}
