// Package projector is the read side's driving port: a Watermill router consuming product
// events from Kafka and applying them to the search read model through the application.
//
// Failure handling is the heart of it. Transient failures (the search cluster down, 429s,
// timeouts) are retried with capped exponential backoff for as long as they last, so an
// outage stalls the projector and never fills the dead-letter queue. Permanent failures (an
// undecodable payload, an unknown event type or schema version, a document the mapping
// rejects, a panic) skip the retries and go to the DLQ with headers saying why, and the
// consumer moves on. Nothing in the DLQ is ever replayed automatically. A DLQ publish that
// fails is tried again with capped exponential backoff, never in a tight loop; the message's
// partition waits for it (its offset cannot be committed past an unhandled message), which
// the status reports as a stalled partition.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v5"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
)

// HandlerName names the projector's handler in logs, metrics and DLQ headers.
const HandlerName = "product_search_projector"

// Config configures the projector.
type Config struct {
	// Topic is the product events topic (PRODUCT_EVENTS_TOPIC).
	Topic string
	// DLQTopic receives permanently failing messages (DLQ_TOPIC).
	DLQTopic string
	// RetryInitialInterval is the first wait before retrying a transient failure.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the exponential backoff, so recovery is noticed quickly after an
	// outage of any length.
	RetryMaxInterval time.Duration
	// DLQRetryInitialInterval is the first wait before a failed DLQ publish is tried again
	// (default 500ms).
	DLQRetryInitialInterval time.Duration
	// DLQRetryMaxInterval caps the exponential backoff of DLQ publish retries (default 30s):
	// a DLQ that cannot be written is an incident, and hammering the cluster will not end it.
	DLQRetryMaxInterval time.Duration
	// CloseTimeout bounds graceful shutdown.
	CloseTimeout time.Duration
	// RouterDecorator, when set, is called with the router before the handler and its
	// middlewares are added (router metrics), so that router-level middleware runs outermost.
	RouterDecorator func(*message.Router)
	// Middlewares wrap the handler outside the built-in layers (tracing), so they see each
	// message once, its retries and dead-lettering included.
	Middlewares []message.HandlerMiddleware
	// Position reads a message's Kafka partition and offset from its context, for metrics and
	// the DLQ headers. Nil reads watermill-kafka's context; a subscriber that keeps them
	// elsewhere (the concurrent subscriber) passes its own reader.
	Position func(ctx context.Context) (partition int32, offset int64, ok bool)
}

// WatermillKafkaPosition reads the partition and offset watermill-kafka's subscriber puts in
// a message's context.
func WatermillKafkaPosition(ctx context.Context) (int32, int64, bool) {
	p, ok := wkafka.MessagePartitionFromCtx(ctx)
	if !ok {
		return 0, 0, false
	}
	o, ok := wkafka.MessagePartitionOffsetFromCtx(ctx)
	return p, o, ok
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = "product.events"
	}
	if c.DLQTopic == "" {
		c.DLQTopic = "dlq.product.events"
	}
	if c.RetryInitialInterval == 0 {
		c.RetryInitialInterval = 100 * time.Millisecond
	}
	if c.RetryMaxInterval == 0 {
		c.RetryMaxInterval = 5 * time.Second
	}
	if c.DLQRetryInitialInterval == 0 {
		c.DLQRetryInitialInterval = 500 * time.Millisecond
	}
	if c.DLQRetryMaxInterval == 0 {
		c.DLQRetryMaxInterval = 30 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Position == nil {
		c.Position = WatermillKafkaPosition
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Topic == c.DLQTopic {
		return errors.New("projector: the DLQ topic must differ from the events topic")
	}
	if c.RetryInitialInterval <= 0 || c.RetryMaxInterval < c.RetryInitialInterval {
		return errors.New("projector: retry intervals must be positive and max >= initial")
	}
	if c.DLQRetryInitialInterval <= 0 || c.DLQRetryMaxInterval < c.DLQRetryInitialInterval {
		return errors.New("projector: DLQ retry intervals must be positive and max >= initial")
	}
	return nil
}

// Observer is told the outcome of every message, for metrics. Nil observers are allowed.
type Observer interface {
	// Projected is called after an event was applied (or found stale).
	Projected(partition int32, occurredAt time.Time)
	// DeadLettered is called when a message was written to the DLQ.
	DeadLettered(class string)
	// DeadLetterFailed is called for each failed attempt to write a message to the DLQ.
	DeadLetterFailed()
	// Retried is called for each retry of a transient failure.
	Retried()
}

// Projector runs the router.
type Projector struct {
	router *message.Router
	log    *slog.Logger
	stop   context.CancelFunc // ends the DLQ publish retries at shutdown
}

// New builds the projector's router over sub (a Kafka subscriber in the projector's consumer
// group) and dlq (the publisher of the dead-letter topic).
func New(cfg Config, sub message.Subscriber, dlq message.Publisher, project command.ProjectProductEventHandler, obs Observer, log *slog.Logger) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sub == nil || dlq == nil || project == nil {
		return nil, errors.New("projector: nil dependency")
	}
	if obs == nil {
		obs = nopObserver{}
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With("component", "projector"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("projector: router: %w", err)
	}
	if cfg.RouterDecorator != nil {
		cfg.RouterDecorator(router)
	}
	stopCtx, stop := context.WithCancel(context.Background())
	dlq = &dlqRetrier{pub: dlq, initial: cfg.DLQRetryInitialInterval, max: cfg.DLQRetryMaxInterval, stop: stopCtx.Done(), obs: obs, log: log}
	poison, err := middleware.PoisonQueueWithFilter(dlq, cfg.DLQTopic, func(err error) bool {
		return Classify(err).Permanent()
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("projector: poison queue: %w", err)
	}
	h := handler{project: project, obs: obs, position: cfg.Position}
	rh := router.AddConsumerHandler(HandlerName, cfg.Topic, sub, h.handle)
	rh.AddMiddleware(cfg.Middlewares...)
	// Outermost first: the poison queue sees the final, classified error; annotate stamps the
	// DLQ headers; retry loops over transient failures only; the attempt counter sits inside
	// retry; the recoverer turns a panic into a (permanent) error the layers above can see.
	rh.AddMiddleware(
		poison,
		annotate(cfg.Topic, cfg.Position, obs, log),
		middleware.Retry{
			MaxRetries:          math.MaxInt32,
			InitialInterval:     cfg.RetryInitialInterval,
			MaxInterval:         cfg.RetryMaxInterval,
			Multiplier:          2,
			RandomizationFactor: 0.2,
			ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool {
				c := Classify(p.Err)
				if c == ops.ClassTransient {
					obs.Retried()
					if p.RetryNum == 0 || p.RetryNum%20 == 0 {
						log.Warn("projector: transient failure, retrying until it clears", "err", p.Err, "retry", p.RetryNum, "next_in", p.Delay)
					}
					return true
				}
				return false
			},
		}.Middleware,
		countAttempts,
		middleware.Recoverer,
	)
	return &Projector{router: router, log: log, stop: stop}, nil
}

// Run consumes until ctx is cancelled; in-flight messages finish within the close timeout. A
// message whose DLQ publish is being retried is given up at once: it was not acked, so it is
// delivered again after a restart.
func (p *Projector) Run(ctx context.Context) error {
	defer p.stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			p.stop()
		case <-done:
		}
	}()
	if err := p.router.Run(ctx); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return nil
}

// Running is closed once the router consumes.
func (p *Projector) Running() chan struct{} { return p.router.Running() }

type handler struct {
	project  command.ProjectProductEventHandler
	obs      Observer
	position func(context.Context) (int32, int64, bool)
}

func (h handler) handle(msg *message.Message) error {
	ev, err := envelope.Unmarshal(msg.Payload)
	if err != nil {
		return err
	}
	if _, err := h.project.Handle(msg.Context(), command.ProjectProductEvent{Event: ev}); err != nil {
		return err
	}
	partition, _, _ := h.position(msg.Context())
	h.obs.Projected(partition, ev.OccurredAt)
	return nil
}

// Classify sorts an error into a failure class. Unknown errors are transient: an
// infrastructure failure that is retried forever is visible (lag, logs) and harmless, while
// a healthy event sent to the DLQ by mistake silently diverges the read model.
func Classify(err error) ops.FailureClass {
	var panicErr middleware.RecoveredPanicError
	switch {
	case err == nil:
		return ops.ClassNone
	case errors.As(err, &panicErr):
		return ops.ClassPanic
	case errors.Is(err, envelope.ErrUndecodable):
		return ops.ClassUndecodable
	case errors.Is(err, envelope.ErrUnsupported):
		return ops.ClassUnsupported
	case errors.Is(err, command.ErrProjectionRejected):
		return ops.ClassRejected
	case errors.Is(err, product.ErrInvalid), errors.Is(err, product.ErrInvalidID):
		return ops.ClassValidation
	case errors.Is(err, context.Canceled):
		return ops.ClassCanceled
	default:
		return ops.ClassTransient
	}
}

type attemptsKey struct{}

// countAttempts counts handler invocations per message, for the DLQ's attempts header.
func countAttempts(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if c, ok := msg.Context().Value(attemptsKey{}).(*atomic.Int64); ok {
			c.Add(1)
		}
		return h(msg)
	}
}

// annotate stamps the DLQ headers on a message that failed permanently, before the poison
// queue middleware publishes it.
func annotate(topic string, position func(context.Context) (int32, int64, bool), obs Observer, log *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			attempts := new(atomic.Int64)
			msg.SetContext(context.WithValue(msg.Context(), attemptsKey{}, attempts))
			out, err := h(msg)
			class := Classify(err)
			if !class.Permanent() {
				return out, err
			}
			ctx := msg.Context()
			msg.Metadata.Set(ops.DLQHeaderErrorClass, string(class))
			msg.Metadata.Set(ops.DLQHeaderReason, err.Error())
			msg.Metadata.Set(ops.DLQHeaderHandler, HandlerName)
			msg.Metadata.Set(ops.DLQHeaderOriginalTopic, topic)
			if p, o, ok := position(ctx); ok {
				msg.Metadata.Set(ops.DLQHeaderOriginalPartition, strconv.Itoa(int(p)))
				msg.Metadata.Set(ops.DLQHeaderOriginalOffset, strconv.FormatInt(o, 10))
			}
			msg.Metadata.Set(ops.DLQHeaderAttempts, strconv.FormatInt(attempts.Load(), 10))
			msg.Metadata.Set(ops.DLQHeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
			log.Warn("projector: permanent failure, sending the message to the DLQ",
				"class", class, "err", err, "partition", msg.Metadata.Get(ops.DLQHeaderOriginalPartition), "offset", msg.Metadata.Get(ops.DLQHeaderOriginalOffset))
			return out, err
		}
	}
}

// dlqRetrier publishes to the DLQ and, when that fails, tries again with capped exponential
// backoff until it works or the projector stops. Watermill's poison queue returns a failed
// publish as the handler's error, so the message would be nacked and handled again at once
// (the subscriber's fixed resend delay) for as long as the DLQ cannot take it; waiting here
// keeps the retries slow and the log readable. It also tells the observer about a dead
// letter only once it is written.
type dlqRetrier struct {
	pub          message.Publisher
	initial, max time.Duration
	stop         <-chan struct{}
	obs          Observer
	log          *slog.Logger
}

func (r *dlqRetrier) Publish(topic string, msgs ...*message.Message) error {
	b := backoff.ExponentialBackOff{InitialInterval: r.initial, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: r.max}
	b.Reset()
	for attempt := 1; ; attempt++ {
		err := r.pub.Publish(topic, msgs...)
		if err == nil {
			for _, m := range msgs {
				r.obs.DeadLettered(m.Metadata.Get(ops.DLQHeaderErrorClass))
			}
			return nil
		}
		r.obs.DeadLetterFailed()
		wait := b.NextBackOff()
		if attempt == 1 || attempt%10 == 0 {
			r.log.Error("projector: cannot write to the DLQ; the message's partition waits until it can",
				"topic", topic, "attempt", attempt, "next_in", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.stop:
			t.Stop()
			return fmt.Errorf("projector: DLQ publish given up at shutdown after %d attempts (the message is delivered again after a restart): %w", attempt, err)
		}
	}
}

// Close does nothing: the publisher belongs to whoever passed it to New.
func (r *dlqRetrier) Close() error { return nil }

type nopObserver struct{}

func (nopObserver) Projected(int32, time.Time) {}
func (nopObserver) DeadLettered(string)        {}
func (nopObserver) DeadLetterFailed()          {}
func (nopObserver) Retried()                   {}
