package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
)

// RelayConsumerGroup is the outbox consumer group of the relay; its per-lane position lives in
// outbox_offsets.
const RelayConsumerGroup = "catalog-relay"

const notifyChannel = "catalog_outbox"

// After a commit notification the lane looks again quickRepolls times, quickRepoll apart.
const (
	quickRepolls = 4
	quickRepoll  = 5 * time.Millisecond
	// forcedPollEvery: an idle lane polls for real at least every this many poll intervals,
	// whatever the peek says, so that no bug in the peek could ever strand a row for long.
	forcedPollEvery = 10
)

// outboxPeek says, without locking anything, whether a lane has rows the relay's poll would
// return (same position, same visibility rule as OutboxSchema.SelectQuery). A poll locks the
// lane's position row, and a row lock takes a transaction id and makes the commit write and
// sync WAL: 16 idle lanes polling every 100 ms cost about 160 transaction ids and 50 WAL syncs
// a second. A peek is a read-only statement: no transaction id, no WAL.
var outboxPeek = `SELECT EXISTS (
  SELECT 1 FROM outbox_offsets p
  CROSS JOIN LATERAL (SELECT 1 FROM outbox_messages o WHERE ` + unrelayedRows("$1", "p") + ` LIMIT 1) m
  WHERE p.lane = $1 AND p.consumer_group = $2)`

// RelayConfig configures the outbox relay.
type RelayConfig struct {
	// Lanes is the number of outbox lanes; it must match the writers' (DefaultLanes).
	Lanes int
	// PollInterval is the longest a lane waits before polling again when it found nothing and
	// no commit notification arrived. It bounds latency when LISTEN/NOTIFY is unavailable.
	PollInterval time.Duration
	// BatchSize is the number of rows a lane reads, forwards and acks in one transaction.
	BatchSize int
	// RetryInterval is the wait after a failed poll (database unreachable and the like).
	RetryInterval time.Duration
	// AckDeadline bounds how long one message may take to reach Kafka before it is retried.
	AckDeadline time.Duration
	// CloseTimeout bounds graceful shutdown: in-flight forwards finish within it.
	CloseTimeout time.Duration
	// Middlewares wrap the forwarding of each message (metrics, tracing).
	Middlewares []message.HandlerMiddleware
	// RouterDecorator, when set, is called with each lane's router before its forwarder is
	// added (router metrics).
	RouterDecorator func(*message.Router)
}

func (c *RelayConfig) setDefaults() {
	if c.Lanes == 0 {
		c.Lanes = DefaultLanes
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = time.Second
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 30 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c RelayConfig) Validate() error {
	switch {
	case c.Lanes < 1 || c.Lanes > MaxLanes:
		return fmt.Errorf("relay: lanes must be 1..%d, got %d", MaxLanes, c.Lanes)
	case c.PollInterval <= 0:
		return errors.New("relay: poll interval must be positive")
	case c.BatchSize < 1:
		return errors.New("relay: batch size must be positive")
	}
	return nil
}

// Relay forwards the outbox to Kafka: one Watermill forwarder per lane, each reading its lane
// through watermill-sql's subscriber and publishing to the Kafka publisher it is given. A row
// is acked (its lane position moved) only after the publisher returned, i.e. after Kafka
// acknowledged it, so a crash causes duplicates and never loss.
type Relay struct {
	db    *DB
	pub   message.Publisher
	cfg   RelayConfig
	log   *slog.Logger
	wakes []chan struct{}
}

// NewRelay builds a relay that publishes to pub (the Kafka publisher).
func NewRelay(db *DB, pub message.Publisher, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wakes := make([]chan struct{}, cfg.Lanes)
	for i := range wakes {
		wakes[i] = make(chan struct{}, 1)
	}
	return &Relay{db: db, pub: pub, cfg: cfg, log: log, wakes: wakes}, nil
}

// Run relays until ctx is cancelled, then lets in-flight forwards finish.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.checkStrayLanes(ctx); err != nil {
		return err
	}
	wlog := sessionEndLogger{watermill.NewSlogLoggerWithLevelMapping(r.log.With("component", "relay"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, // watermill's per-subscription info lines are noise here
	})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.listen(ctx) }()

	errs := make(chan error, r.cfg.Lanes)
	for lane := 0; lane < r.cfg.Lanes; lane++ {
		ackDeadline := r.cfg.AckDeadline
		sub, err := wsql.NewSubscriber(r.db.SQL, wsql.SubscriberConfig{
			ConsumerGroup:  RelayConsumerGroup,
			PollInterval:   r.cfg.PollInterval,
			ResendInterval: r.cfg.PollInterval,
			RetryInterval:  r.cfg.RetryInterval,
			AckDeadline:    &ackDeadline,
			BackoffManager: &laneBackoff{wake: r.wakes[lane], done: ctx.Done(), peek: r.peeker(lane),
				poll: r.cfg.PollInterval, retry: r.cfg.RetryInterval, log: r.log.With("lane", lane)},
			SchemaAdapter:  OutboxSchema{BatchSize: r.cfg.BatchSize},
			OffsetsAdapter: OutboxOffsets{},
		}, wlog)
		if err != nil {
			return fmt.Errorf("relay: subscriber lane %d: %w", lane, err)
		}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, wlog)
		if err != nil {
			return fmt.Errorf("relay: router lane %d: %w", lane, err)
		}
		if r.cfg.RouterDecorator != nil {
			r.cfg.RouterDecorator(router)
		}
		fwd, err := forwarder.NewForwarder(sub, r.pub, wlog, forwarder.Config{
			ForwarderTopic: LaneTopic(lane),
			Middlewares:    r.cfg.Middlewares,
			CloseTimeout:   r.cfg.CloseTimeout,
			Router:         router,
		})
		if err != nil {
			return fmt.Errorf("relay: forwarder lane %d: %w", lane, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fwd.Run(ctx); err != nil {
				errs <- fmt.Errorf("relay lane %d: %w", lane, err)
				cancel()
			}
		}()
	}
	r.log.Info("relay started", "lanes", r.cfg.Lanes, "poll_interval", r.cfg.PollInterval, "batch_size", r.cfg.BatchSize)
	<-ctx.Done()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	r.log.Info("relay stopped")
	return errors.Join(all...)
}

// peeker is the lock-free check of whether lane has rows to relay.
func (r *Relay) peeker(lane int) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		var ok bool
		err := r.db.Pool.QueryRow(ctx, outboxPeek, lane, RelayConsumerGroup).Scan(&ok)
		return ok, err
	}
}

// checkStrayLanes refuses to start when rows sit in lanes this relay would never read, which
// happens when writers and relays disagree on the lane count.
func (r *Relay) checkStrayLanes(ctx context.Context) error {
	var stray int
	err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM outbox_messages m
WHERE m.lane >= $1 AND (m.transaction_id, m."offset") > coalesce(
  (SELECT (o.last_processed_transaction_id, o.offset_acked) FROM outbox_offsets o WHERE o.lane = m.lane AND o.consumer_group = $2),
  ('0'::xid8, 0::bigint)) LIMIT 1) s`, r.cfg.Lanes, RelayConsumerGroup).Scan(&stray)
	if err != nil {
		return fmt.Errorf("relay: check lanes: %w", err)
	}
	if stray > 0 {
		return fmt.Errorf("relay: unrelayed outbox rows in lanes >= %d: writers use more lanes than this relay (OUTBOX_LANES)", r.cfg.Lanes)
	}
	return nil
}

// listen wakes lanes on commit (the outbox trigger NOTIFYs the lane number). It reconnects on
// failure; polling covers the gap, so a lost notification costs at most one poll interval.
func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("relay: LISTEN connection lost; polling every interval until it is back", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.RetryInterval):
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	pc, err := r.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // a LISTEN connection must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		lane, err := strconv.Atoi(n.Payload)
		if err != nil || lane < 0 || lane >= len(r.wakes) {
			continue
		}
		select {
		case r.wakes[lane] <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// laneBackoff is the subscriber's BackoffManager, and decides when a lane polls. A poll locks
// the lane, which costs PostgreSQL a transaction id and a WAL sync, so a lane with nothing to
// do peeks without locks at each interval and polls only when the peek finds rows (and, as a
// safety net, every forcedPollEvery intervals). A lane with work polls at once, as before: after
// a poll that found rows (more are likely) and on a commit notification of its lane, so a busy
// lane pays no extra round trip and a commit reaches Kafka without waiting out an interval.
type laneBackoff struct {
	quick int // short re-checks left after a wake-up
	idle  int // intervals since the last poll
	wake  chan struct{}
	done  <-chan struct{}
	peek  func(context.Context) (bool, error)
	poll  time.Duration
	retry time.Duration
	log   *slog.Logger
}

func (b *laneBackoff) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "could not serialize") || strings.Contains(msg, "concurrent update") || strings.Contains(msg, "deadlock") {
			return 0 // another relay moved the lane; poll again from its new position
		}
		if errors.Is(err, context.Canceled) {
			return b.poll
		}
		if sessionEnded(err) {
			// A terminated session (pg_terminate_backend, failover) heals with the next
			// connection; only failures that persist need someone, and they stay errors.
			b.log.Warn("relay: database session ended; polling again on a new one", "err", err, "retry_in", b.retry)
			return b.retry
		}
		b.log.Error("relay: poll failed", "err", err, "retry_in", b.retry)
		return b.retry
	}
	b.idle = 0
	if !noMsg {
		b.quick = 0
		return 0
	}
	return b.untilWork()
}

// untilWork returns (0: poll now) on a commit notification of the lane, when a peek at the
// interval finds rows, when the relay stops, or after forcedPollEvery intervals. A wake-up can
// find its row hidden behind an older transaction that is still open (the relay never passes
// one), and that transaction's commit may wake another lane or none, so after a wake-up the
// lane looks again a few times at short intervals before falling back to the poll interval.
func (b *laneBackoff) untilWork() time.Duration {
	for {
		wait := b.poll
		if b.quick > 0 {
			b.quick--
			wait = quickRepoll
		}
		t := time.NewTimer(wait)
		select {
		case <-b.done:
			t.Stop()
			return 0
		case <-b.wake:
			t.Stop()
			b.quick = quickRepolls
			return 0
		case <-t.C:
		}
		b.idle++
		if b.idle >= forcedPollEvery || b.hasWork() {
			return 0
		}
	}
}

// hasWork peeks; a failed peek says yes, so the poll runs and reports the failure.
func (b *laneBackoff) hasWork() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := b.peek(ctx)
	return err != nil || ok
}
