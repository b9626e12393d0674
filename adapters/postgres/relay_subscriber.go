package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// After a commit notification a lane that found nothing reads again quickRepolls times,
// quickRepoll apart: the committed row can be hidden behind an older transaction that is still
// open (the relay never passes one), and that transaction's commit may wake another lane or
// none.
const (
	quickRepolls = 4
	quickRepoll  = 5 * time.Millisecond
	// dbTimeout bounds every statement of a lane, so a dead connection is noticed.
	dbTimeout = 30 * time.Second
)

// errLaneLost: the lane's position moved under this reader, or its lock's session is gone.
var errLaneLost = errors.New("outbox: lane ownership lost")

// OutboxSubscriberConfig configures an OutboxSubscriber.
type OutboxSubscriberConfig struct {
	// ConsumerGroup names the lane positions (outbox_offsets.consumer_group) and the lane locks
	// (default RelayConsumerGroup).
	ConsumerGroup string
	// BatchSize is how many rows one read returns (default 1000).
	BatchSize int
	// MaxInFlight is how many messages of a lane may be delivered from the oldest one not yet
	// acked on (default BatchSize): a window, which a message that waits for its ack stops
	// once it is full. The next message is delivered only after the previous one was acked,
	// nacked or Dispatched, so a plain consumer sees one message at a time, in order.
	MaxInFlight int
	// PollInterval is the longest an idle lane waits before reading again when no commit
	// notification arrived (default 100ms). A read takes no lock and no transaction id.
	PollInterval time.Duration
	// AcquireInterval is how often a subscription tries again to take a lane another relay owns
	// (default 1s): it bounds the takeover time after an owner died.
	AcquireInterval time.Duration
	// FlushInterval is the longest an acked position waits before it is written (default
	// 200ms); it is also written after every BatchSize acked rows, and when the lane stops.
	FlushInterval time.Duration
	// RetryInterval is the wait after a failed read or a lost lane (default 1s).
	RetryInterval time.Duration
	// NackResendInterval is the wait before a lane delivers again from a nacked message
	// (default 100ms).
	NackResendInterval time.Duration
	// CloseTimeout bounds how long a stopping lane waits for its messages in flight to be
	// acked before it writes its position and releases the lane (default 30s); the contexts
	// of messages still in flight then end.
	CloseTimeout time.Duration
	// Lane maps a topic to its lane (default: the lane of a LaneTopic name).
	Lane func(topic string) (int, error)
}

func (c *OutboxSubscriberConfig) setDefaults() {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = RelayConsumerGroup
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = c.BatchSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.AcquireInterval == 0 {
		c.AcquireInterval = time.Second
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = time.Second
	}
	if c.NackResendInterval == 0 {
		c.NackResendInterval = 100 * time.Millisecond
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Lane == nil {
		c.Lane = laneFromTopic
	}
}

// Validate reports a configuration that cannot work.
func (c OutboxSubscriberConfig) Validate() error {
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("outbox subscriber: batch size %d is not positive", c.BatchSize)
	case c.MaxInFlight < 1:
		return fmt.Errorf("outbox subscriber: MaxInFlight %d is not positive", c.MaxInFlight)
	case c.PollInterval <= 0, c.AcquireInterval <= 0, c.FlushInterval <= 0, c.RetryInterval <= 0, c.NackResendInterval < 0, c.CloseTimeout < 0:
		return errors.New("outbox subscriber: intervals must be positive")
	}
	return nil
}

// OutboxSubscriber is a Watermill subscriber of the outbox: one topic is one lane, read in
// commit-safe order (transaction id, offset) after the lane's position in outbox_offsets, and
// only from transactions older than every open one, so no committed row is ever skipped.
//
// It replaces watermill-sql's subscriber on the relay, which reads a batch in a transaction
// that locks the lane's position row and then delivers one message at a time, each waiting
// for the previous one's ack: a lane could have one event in flight, and its transaction id,
// held while it waited for Kafka, hid every later commit of every other lane. Here:
//
//   - A lane is owned by the one subscription that holds its session advisory lock (taken on
//     a connection it keeps while it owns the lane; other relays try again every
//     AcquireInterval and take over when the owner's session ends). A lock takes no
//     transaction id.
//   - Reads are single read-only statements: no transaction id, no WAL, no locks.
//   - Up to MaxInFlight messages are delivered before the first is acked. The next message is
//     delivered once the previous one was acked or nacked, or its publisher called Dispatched
//     (it was handed over in order, as the pipelined Kafka publisher does right after
//     enqueueing its record), so the lane's order is the order of delivery to Kafka.
//   - The position moves over the contiguous prefix of acked messages only, in a short
//     transaction of its own that also checks the lock is still held; a crash redelivers,
//     never skips (at-least-once).
//   - A nack stops delivery; once every message in flight settled, the lane goes back to its
//     acked position and delivers again from the nacked message (the messages after it may
//     come twice).
//
// Each Subscribe reads its lane on its own; cancelling its context or Close stops it: the
// channel closes, the messages in flight get CloseTimeout to be acked, the position is
// written and the lane released.
type OutboxSubscriber struct {
	db      *DB
	cfg     OutboxSubscriberConfig
	log     *slog.Logger
	lockKey int32

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	lanes   sync.WaitGroup
}

// NewOutboxSubscriber returns a subscriber of the outbox in db.
func NewOutboxSubscriber(db *DB, cfg OutboxSubscriberConfig, log *slog.Logger) (*OutboxSubscriber, error) {
	if db == nil || db.Pool == nil {
		return nil, errors.New("outbox subscriber: nil database")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &OutboxSubscriber{db: db, cfg: cfg, log: log, lockKey: laneLockKey(cfg.ConsumerGroup), closing: make(chan struct{})}, nil
}

// laneLockKey is the first half of a lane's advisory lock key (the lane is the second): one
// per consumer group, so groups own their lanes independently.
func laneLockKey(group string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("catalog outbox lane " + group))
	return int32(h.Sum32() & 0x7fffffff)
}

// Subscribe reads the lane of topic until ctx is done or the subscriber is closed.
func (s *OutboxSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	lane, err := s.cfg.Lane(topic)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("outbox subscriber: closed")
	}
	out := make(chan *message.Message)
	r := &laneReader{s: s, lane: lane, out: out, log: s.log.With("lane", lane, "group", s.cfg.ConsumerGroup),
		base: context.WithoutCancel(ctx)}
	s.lanes.Add(1)
	go func() {
		defer s.lanes.Done()
		r.run(ctx)
	}()
	return out, nil
}

// Close stops every subscription and waits until each has written its position and released
// its lane.
func (s *OutboxSubscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.lanes.Wait()
	return nil
}

// Dispatched tells the OutboxSubscriber that delivered msg (or a message unwrapped from it,
// which carries its context) has been handed over to its destination in order, so its lane
// may deliver the next message before this one is acked. Publishers that keep the order of
// what they were handed (the pipelined Kafka publisher: its Enqueued hook) call it; for any
// other message it does nothing.
func Dispatched(msg *message.Message) {
	if d, ok := msg.Context().Value(deliveryKey{}).(*delivery); ok {
		d.release()
	}
}

type deliveryKey struct{}

// position is a place in a lane: rows are read in (transaction id, offset) order.
type position struct {
	xid    uint64
	offset int64
}

// delivery is a message of a lane on its way.
type delivery struct {
	msg      *message.Message
	pos      position
	cancel   context.CancelFunc
	released chan struct{}
	once     sync.Once
}

func (d *delivery) release() { d.once.Do(func() { close(d.released) }) }

// settled reports whether the message was acked or nacked.
func (d *delivery) settled() (acked, nacked bool) {
	select {
	case <-d.msg.Acked():
		return true, false
	case <-d.msg.Nacked():
		return false, true
	default:
		return false, false
	}
}

// handedOver reports whether the next message may be delivered.
func (d *delivery) handedOver() bool {
	select {
	case <-d.released:
		return true
	default:
	}
	a, n := d.settled()
	return a || n
}

// laneReader is one subscription: it owns its lane while it can and delivers its rows.
type laneReader struct {
	s    *OutboxSubscriber
	lane int
	out  chan *message.Message
	log  *slog.Logger
	base context.Context // the Subscribe context without its cancellation: messages' parent

	outClosed bool
}

func (r *laneReader) closeOut() {
	if !r.outClosed {
		r.outClosed = true
		close(r.out)
	}
}

// run owns and reads the lane until ctx is done or the subscriber closes.
func (r *laneReader) run(ctx context.Context) {
	defer r.closeOut()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	wake, unsubscribe := r.s.db.notify.subscribe(r.lane, r.s.log)
	defer unsubscribe()
	for ctx.Err() == nil {
		conn := r.acquire(ctx)
		if conn == nil {
			return
		}
		err := r.own(ctx, conn, wake)
		if err == nil || ctx.Err() != nil {
			return
		}
		switch {
		case sessionEnded(err):
			// A terminated session (pg_terminate_backend, failover) heals with the next
			// connection: not a fault.
			r.log.Warn("relay: database session ended; the lane is taken again on a new one", "err", err, "retry_in", r.s.cfg.RetryInterval)
		case errors.Is(err, errLaneLost):
			r.log.Warn("relay: the lane's lock was lost; taking it again", "err", err, "retry_in", r.s.cfg.RetryInterval)
		default:
			r.log.Error("relay: lane failed; it is taken again after the retry interval", "err", err, "retry_in", r.s.cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.s.cfg.RetryInterval):
		}
	}
}

// acquire waits until this reader holds the lane's lock, and returns the connection that
// holds it; nil once ctx is done.
func (r *laneReader) acquire(ctx context.Context) *pgxpool.Conn {
	failing := false // a failure is logged once, not every AcquireInterval
	for {
		conn, err := r.s.db.Pool.Acquire(ctx)
		if err == nil {
			var ok bool
			qctx, cancel := context.WithTimeout(ctx, dbTimeout)
			err = conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1, $2)`, r.s.lockKey, int32(r.lane)).Scan(&ok)
			cancel()
			switch {
			case err == nil && ok:
				if failing {
					r.log.Info("relay: lane acquired again")
				} else {
					r.log.Debug("relay: lane acquired")
				}
				return conn
			case err != nil:
				discard(conn) // the lock may or may not have been taken: never pool it
			default:
				conn.Release()
			}
		}
		if err != nil && ctx.Err() == nil && !failing {
			r.log.Warn("relay: cannot take the lane; trying again every acquire interval", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.s.cfg.AcquireInterval):
		}
	}
}

// discard closes a pooled connection instead of returning it to the pool.
func discard(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Conn().Close(ctx)
	conn.Release()
}

// release unlocks the lane and returns its connection to the pool.
func (r *laneReader) release(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, $2)`, r.s.lockKey, int32(r.lane)).Scan(&ok); err != nil || !ok {
		discard(conn)
		return
	}
	conn.Release()
}

// row is an outbox row read for delivery.
type row struct {
	pos      position
	uuid     string
	payload  []byte
	metadata []byte
}

// lane is the state of an owned lane.
type lane struct {
	conn      *pgxpool.Conn
	acked     position // the contiguous acked prefix ends here
	flushed   position // what outbox_offsets holds
	sinceSave int      // rows acked since the last write
	inflight  []*delivery
}

// own reads and delivers the lane while conn holds its lock. It returns nil when ctx is done
// (after draining), an error when the lane has to be taken again.
func (r *laneReader) own(ctx context.Context, conn *pgxpool.Conn, wake <-chan struct{}) (err error) {
	cfg := r.s.cfg
	start, err := r.position(ctx, conn)
	if err != nil {
		discard(conn)
		return err
	}
	l := &lane{conn: conn, acked: start, flushed: start}
	defer func() { r.stop(l, err) }()

	cursor := start // the last row read
	var (
		buf      []row
		next     *delivery // buf[0], prepared for sending
		last     *delivery // the message delivered last
		readDue  = true
		quick    int
		rewind   bool
		readT    = time.NewTimer(cfg.PollInterval)
		flushT   = time.NewTimer(cfg.FlushInterval)
		resendT  = time.NewTimer(0)
		resendAt time.Time
	)
	defer readT.Stop()
	defer flushT.Stop()
	defer resendT.Stop()
	<-resendT.C
	defer func() {
		if next != nil {
			next.cancel()
		}
	}()

	for {
		if err := r.settle(l, &rewind); err != nil {
			return err
		}
		if rewind && r.allSettled(l) {
			// Deliver again from the first unacked message, once its resend wait is over.
			for _, d := range l.inflight {
				d.cancel()
			}
			l.inflight, buf, last, rewind, readDue = nil, nil, nil, false, true
			if next != nil {
				next.cancel()
				next = nil
			}
			cursor = l.acked
			resendAt = time.Now().Add(cfg.NackResendInterval)
			resendT.Reset(cfg.NackResendInterval)
		}
		waiting := time.Now().Before(resendAt)
		if !rewind && !waiting && len(buf) == 0 && readDue && len(l.inflight) < cfg.MaxInFlight {
			rows, err := r.read(ctx, conn, cursor)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			buf = rows
			if len(rows) > 0 {
				cursor = rows[len(rows)-1].pos
			} else {
				readDue = false
				wait := cfg.PollInterval
				if quick > 0 {
					quick--
					wait = quickRepoll
				}
				readT.Reset(wait)
			}
		}

		var send chan<- *message.Message
		if !rewind && !waiting && len(buf) > 0 && len(l.inflight) < cfg.MaxInFlight && (last == nil || last.handedOver()) {
			if next == nil {
				next = r.deliveryOf(buf[0])
			}
			send = r.out
		}
		var lastReleased, lastAck, lastNack <-chan struct{}
		if send == nil && last != nil && len(buf) > 0 && !last.handedOver() {
			lastReleased, lastAck, lastNack = last.released, last.msg.Acked(), last.msg.Nacked()
		}
		// While the lane has messages to hand over, acks are taken as they come (settle, at
		// the top of the loop) instead of waking the lane for each one.
		var headAck, headNack <-chan struct{}
		if len(l.inflight) > 0 && (rewind || (send == nil && lastReleased == nil)) {
			headAck, headNack = l.inflight[0].msg.Acked(), l.inflight[0].msg.Nacked()
			if rewind {
				// Wait for the first message still unsettled instead.
				headAck, headNack = nil, nil
				for _, d := range l.inflight {
					if a, n := d.settled(); !a && !n {
						headAck, headNack = d.msg.Acked(), d.msg.Nacked()
						break
					}
				}
			}
		}
		var flushC <-chan time.Time
		if l.acked != l.flushed {
			flushC = flushT.C
		}
		var sendMsg *message.Message
		if send != nil {
			sendMsg = next.msg
		}

		select {
		case send <- sendMsg:
			l.inflight = append(l.inflight, next)
			last, next = next, nil
			buf[0] = row{}
			buf = buf[1:]
			if len(buf) == 0 {
				readDue = true // a full batch is likely followed by more
			}
		case <-headAck:
		case <-headNack:
		case <-lastReleased:
		case <-lastAck:
		case <-lastNack:
		case <-wake:
			readDue, quick = true, quickRepolls
		case <-readT.C:
			readDue = true
		case <-resendT.C:
		case <-flushC:
			if err := r.flush(l); err != nil {
				return err
			}
			flushT.Reset(cfg.FlushInterval)
		case <-ctx.Done():
			return nil
		}
	}
}

// settle moves the acked prefix over the acked messages at the head, writes the position when
// a batch of them is acked, and notes a nack at the head.
func (r *laneReader) settle(l *lane, rewind *bool) error {
	for len(l.inflight) > 0 {
		h := l.inflight[0]
		acked, nacked := h.settled()
		if nacked {
			*rewind = true
		}
		if !acked {
			break
		}
		h.cancel()
		l.acked = h.pos
		l.inflight[0] = nil
		l.inflight = l.inflight[1:]
		l.sinceSave++
	}
	if l.sinceSave >= r.s.cfg.BatchSize {
		return r.flush(l)
	}
	return nil
}

// allSettled reports whether every message in flight was acked or nacked.
func (r *laneReader) allSettled(l *lane) bool {
	for _, d := range l.inflight {
		if a, n := d.settled(); !a && !n {
			return false
		}
	}
	return true
}

// deliveryOf makes the message of a row: the outbox row's UUID, payload (the forwarder
// envelope) and metadata, with a context that carries the delivery for Dispatched.
func (r *laneReader) deliveryOf(rw row) *delivery {
	msg := message.NewMessage(rw.uuid, rw.payload)
	if len(rw.metadata) > 0 && string(rw.metadata) != "{}" && string(rw.metadata) != "null" {
		if err := json.Unmarshal(rw.metadata, &msg.Metadata); err != nil {
			// Metadata is written by OutboxSchema.InsertQuery from a message's metadata, so
			// this cannot happen short of a hand-edited row; deliver the payload anyway.
			r.log.Error("relay: outbox row with undecodable metadata", "uuid", rw.uuid, "err", err)
		}
	}
	d := &delivery{msg: msg, pos: rw.pos, released: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.WithValue(r.base, deliveryKey{}, d))
	d.cancel = cancel
	msg.SetContext(ctx)
	return d
}

// position returns the lane's position for the group, creating its row on first use.
func (r *laneReader) position(ctx context.Context, conn *pgxpool.Conn) (position, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var p position
	err := conn.QueryRow(ctx, `SELECT last_processed_transaction_id, offset_acked FROM outbox_offsets WHERE lane = $1 AND consumer_group = $2`,
		int16(r.lane), r.s.cfg.ConsumerGroup).Scan(&p.xid, &p.offset)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err = conn.Exec(ctx, `INSERT INTO outbox_offsets (lane, consumer_group) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			int16(r.lane), r.s.cfg.ConsumerGroup)
		if err != nil {
			return position{}, fmt.Errorf("outbox: create position of lane %d: %w", r.lane, err)
		}
		return r.position(ctx, conn)
	}
	if err != nil {
		return position{}, fmt.Errorf("outbox: position of lane %d: %w", r.lane, err)
	}
	return p, nil
}

// relayHorizon is the transaction id below which every transaction that could have written
// to this database's outbox has ended, as of the statement's snapshot: the smallest transaction
// still in progress in the snapshot, leaving out those running in other databases of the
// cluster (they cannot write here, and a long one there would otherwise hold the relay back).
// pg_stat_activity shows every session's transaction id and database to every role. A
// transaction is left out only while it shows running in another database; one that ended
// since the snapshot, one of a background process without a database, or a prepared
// transaction (it has no session) counts, so the horizon errs on the early side, never past a
// transaction of this database.
const relayHorizon = `(SELECT least(pg_snapshot_xmax(s), (
    SELECT min(x) FROM pg_snapshot_xip(s) AS x
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                      WHERE a.backend_xid = x::xid
                        AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))))
  FROM pg_current_snapshot() AS s)`

// readRows is the next batch of a lane after a position, only from transactions below the
// horizon (a row of a transaction that is still open may commit with a smaller id than rows
// already read: reading past it would skip it), in the order of the primary key, which makes
// it a range scan however long the relayed history is. One statement, read-only: no
// transaction id, no WAL.
const readRows = `SELECT o.transaction_id, o."offset", o.uuid, o.payload, o.metadata
FROM outbox_messages o
WHERE o.lane = $1 AND (o.lane, o.transaction_id, o."offset") > ($1, $2, $3)
  AND o.transaction_id < ` + relayHorizon + `
ORDER BY o.lane, o.transaction_id, o."offset"
LIMIT $4`

func (r *laneReader) read(ctx context.Context, conn *pgxpool.Conn, after position) ([]row, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	rows, err := conn.Query(ctx, readRows, int16(r.lane), after.xid, after.offset, r.s.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("outbox: read lane %d: %w", r.lane, err)
	}
	out := make([]row, 0, r.s.cfg.BatchSize)
	for rows.Next() {
		var rw row
		if err := rows.Scan(&rw.pos.xid, &rw.pos.offset, &rw.uuid, &rw.payload, &rw.metadata); err != nil {
			rows.Close()
			return nil, fmt.Errorf("outbox: read lane %d: %w", r.lane, err)
		}
		out = append(out, rw)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: read lane %d: %w", r.lane, err)
	}
	return out, nil
}

// savePosition moves a lane's position forward in a transaction of its own, only while this
// session holds the lane's lock. The commit does not wait for the WAL flush: a position lost
// in a database crash means events relayed again, never events skipped, and the transaction
// (and its id, which holds every lane's reads back) ends sooner.
const savePosition = `UPDATE outbox_offsets SET last_processed_transaction_id = $1, offset_acked = $2, updated_at = now()
WHERE lane = $3 AND consumer_group = $4
  AND (last_processed_transaction_id, offset_acked) < ($1, $2)
  AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
              AND classid = $5::int4::oid AND objid = $3::int4::oid AND objsubid = 2)`

// flush writes the acked position.
func (r *laneReader) flush(l *lane) error {
	if l.acked == l.flushed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(savePosition, l.acked.xid, l.acked.offset, int16(r.lane), r.s.cfg.ConsumerGroup, r.s.lockKey)
	b.Queue("COMMIT")
	br := l.conn.SendBatch(ctx, b)
	var n int64
	var err error
	for i := range 4 {
		tag, e := br.Exec()
		if e != nil && err == nil {
			err = e
		}
		if i == 2 {
			n = tag.RowsAffected()
		}
	}
	if e := br.Close(); e != nil && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("outbox: save position of lane %d: %w", r.lane, err)
	}
	if n != 1 {
		return fmt.Errorf("outbox: save position of lane %d: %w", r.lane, errLaneLost)
	}
	l.flushed, l.sinceSave = l.acked, 0
	return nil
}

// stop ends an owned lane. When the subscription ends (cause nil): no more deliveries (the
// channel closes), the messages in flight get CloseTimeout to be acked, the acked position is
// written and the lane released. After an error the lock may be gone with its session, so the
// connection is closed instead; the channel stays open for the lane's next owner in this
// subscription, which delivers again what was in flight.
func (r *laneReader) stop(l *lane, cause error) {
	if cause == nil {
		r.closeOut()
	}
	if cause == nil && len(l.inflight) > 0 {
		deadline := time.NewTimer(r.s.cfg.CloseTimeout)
	drain:
		for len(l.inflight) > 0 {
			h := l.inflight[0]
			select {
			case <-h.msg.Acked():
				var rewind bool
				_ = r.settle(l, &rewind)
			case <-h.msg.Nacked():
				break drain
			case <-deadline.C:
				r.log.Warn("relay: lane stopped with messages in flight; they are relayed again", "in_flight", len(l.inflight))
				break drain
			}
		}
		deadline.Stop()
	}
	for _, d := range l.inflight {
		d.cancel()
	}
	l.inflight = nil
	if cause != nil {
		discard(l.conn)
		return
	}
	if err := r.flush(l); err != nil {
		r.log.Warn("relay: cannot save the lane position at stop; its last events are relayed again", "err", err)
		discard(l.conn)
		return
	}
	r.release(l.conn)
}
