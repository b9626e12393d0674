package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
)

// RelayConsumerGroup is the outbox consumer group of the relay; its per-lane position lives in
// outbox_offsets.
const RelayConsumerGroup = "catalog-relay"

// RelayConfig configures the outbox relay.
type RelayConfig struct {
	// Lanes is the number of outbox lanes; it must match the writers' (DefaultLanes).
	Lanes int
	// PollInterval is the longest a lane waits before reading again when it found nothing and
	// no commit notification arrived. It bounds latency when LISTEN/NOTIFY is unavailable.
	PollInterval time.Duration
	// BatchSize is the number of rows a lane reads at once.
	BatchSize int
	// MaxInFlight is how many events of a lane may be on their way to Kafka, handed over and not
	// yet acknowledged, at once (default 128).
	MaxInFlight int
	// RetryInterval is the wait after a failed read (database unreachable and the like).
	RetryInterval time.Duration
	// AcquireInterval is how often a relay tries again to take a lane another relay owns: it
	// bounds the takeover time after a relay died (default 1s).
	AcquireInterval time.Duration
	// CloseTimeout bounds graceful shutdown: in-flight forwards finish within it.
	CloseTimeout time.Duration
	// Middlewares wrap the forwarding of each message (metrics, tracing). None may retry a
	// failed forward itself: the lane has already handed the events after it to Kafka, and a
	// retry would land behind them; a failed forward is nacked, and the lane delivers again
	// from it, in order.
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
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 128
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = time.Second
	}
	if c.AcquireInterval == 0 {
		c.AcquireInterval = time.Second
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
// through an OutboxSubscriber and publishing to the publisher it is given. With the pipelined
// Kafka publisher (its Enqueued hook set to Dispatched) a lane keeps up to BatchSize events in
// flight; with any other publisher it forwards one at a time. A row is acked (its lane
// position moved) only after the publisher returned, i.e. after Kafka acknowledged it, so a
// crash causes duplicates and never loss.
type Relay struct {
	db  *DB
	pub message.Publisher
	cfg RelayConfig
	log *slog.Logger
}

// NewRelay builds a relay that publishes to pub (the Kafka publisher).
func NewRelay(db *DB, pub message.Publisher, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Relay{db: db, pub: pub, cfg: cfg, log: log}, nil
}

// Run relays until ctx is cancelled, then lets in-flight forwards finish.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.checkStrayLanes(ctx); err != nil {
		return err
	}
	wlog := sessionEndLogger{newGatedLogger(r.log.With("component", "relay"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, // watermill's per-subscription info lines are noise here
	})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, r.cfg.Lanes)
	for lane := 0; lane < r.cfg.Lanes; lane++ {
		// A subscriber per lane: a router closes its subscriber when it stops, and one lane's
		// router must not stop the other lanes.
		sub, err := NewOutboxSubscriber(r.db, OutboxSubscriberConfig{
			ConsumerGroup:   RelayConsumerGroup,
			BatchSize:       r.cfg.BatchSize,
			MaxInFlight:     r.cfg.MaxInFlight,
			PollInterval:    r.cfg.PollInterval,
			AcquireInterval: r.cfg.AcquireInterval,
			RetryInterval:   r.cfg.RetryInterval,
			CloseTimeout:    r.cfg.CloseTimeout,
		}, r.log.With("component", "relay"))
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
			err := fwd.Run(ctx)
			// The lane's position is written and the lane released when its subscriber
			// closes (the router closes it too; Close waits for that).
			_ = sub.Close()
			if err != nil {
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

// gatedLogger is Watermill's slog adapter that asks the logger whether a level is enabled
// before anything else: Watermill's router logs Trace lines with fields for every message it
// routes, and the adapter builds the fields and enters slog (a large stack frame, which grows
// the handler goroutine's stack) even when nothing is printed.
type gatedLogger struct {
	watermill.LoggerAdapter
	log     *slog.Logger
	mapping map[slog.Level]slog.Level
}

func newGatedLogger(log *slog.Logger, mapping map[slog.Level]slog.Level) gatedLogger {
	return gatedLogger{LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(log, mapping), log: log, mapping: mapping}
}

func (g gatedLogger) enabled(level slog.Level) bool {
	if m, ok := g.mapping[level]; ok {
		level = m
	}
	return g.log.Enabled(context.Background(), level)
}

// Info logs when the (mapped) level is enabled.
func (g gatedLogger) Info(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelInfo) {
		g.LoggerAdapter.Info(msg, fields)
	}
}

// Debug logs when the (mapped) level is enabled.
func (g gatedLogger) Debug(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelDebug) {
		g.LoggerAdapter.Debug(msg, fields)
	}
}

// Trace logs when the (mapped) level is enabled.
func (g gatedLogger) Trace(msg string, fields watermill.LogFields) {
	if g.enabled(watermill.LevelTrace) {
		g.LoggerAdapter.Trace(msg, fields)
	}
}

// With adds fields to every line; the level check stays the logger's.
func (g gatedLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return gatedLogger{LoggerAdapter: g.LoggerAdapter.With(fields), log: g.log, mapping: g.mapping}
}
