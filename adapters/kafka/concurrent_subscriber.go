package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// watermillUUIDHeader is the header watermill-kafka's DefaultMarshaler keeps the message UUID in.
const watermillUUIDHeader = "_watermill_message_uuid"

// revokeDrainTimeout bounds how long a revocation waits for the in-flight messages of the
// revoked partitions to be acked before their offsets are committed.
const revokeDrainTimeout = 10 * time.Second

// leaveTimeout bounds how long Close waits to leave the consumer group cleanly.
const leaveTimeout = 3 * time.Second

// ConcurrentSubscriberConfig configures a ConcurrentSubscriber.
type ConcurrentSubscriberConfig struct {
	// ConsumerGroup is the Kafka consumer group (catalog-projector for the projector).
	ConsumerGroup string
	// FromOldest starts a group without committed offsets at the beginning of the topic
	// (otherwise at its end).
	FromOldest bool
	// MaxInFlightPerPartition is how many messages of one partition may be delivered and not
	// yet acked at once (default 256). Fetching a partition pauses while it is at the cap.
	MaxInFlightPerPartition int
	// NackResendSleep is the wait before a nacked message is delivered again (default 500ms).
	NackResendSleep time.Duration
	// CommitInterval is how often the acked offsets are committed (default 200ms). They are
	// also committed when partitions are revoked and on Close.
	CommitInterval time.Duration
	// SessionTimeout is how long the group waits for a member that stopped heartbeating
	// before it hands that member's partitions to the others (default 6s, the smallest a
	// Kafka broker accepts by default, group.min.session.timeout.ms). It bounds how long the
	// partitions of a killed replica stall; Kafka's client default of 45s stalls them that long.
	SessionTimeout time.Duration
	// HeartbeatInterval is the time between heartbeats (default SessionTimeout/6, at most 3s):
	// several heartbeats fit in a session, so one lost heartbeat does not cost a member its
	// partitions, and a member learns of a rebalance within one interval.
	HeartbeatInterval time.Duration
}

func (c *ConcurrentSubscriberConfig) setDefaults() {
	if c.MaxInFlightPerPartition == 0 {
		c.MaxInFlightPerPartition = 256
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = 500 * time.Millisecond
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = min(max(c.SessionTimeout/6, 100*time.Millisecond), 3*time.Second)
	}
}

// DefaultSessionTimeout is the consumer-group session timeout of the concurrent subscriber.
const DefaultSessionTimeout = 6 * time.Second

// Validate reports a configuration that cannot work.
func (c ConcurrentSubscriberConfig) Validate() error {
	switch {
	case c.ConsumerGroup == "":
		return errors.New("kafka: subscriber needs a consumer group")
	case c.MaxInFlightPerPartition < 1:
		return fmt.Errorf("kafka: MaxInFlightPerPartition %d is not positive", c.MaxInFlightPerPartition)
	case c.NackResendSleep < 0:
		return fmt.Errorf("kafka: NackResendSleep %s is negative", c.NackResendSleep)
	case c.CommitInterval <= 0:
		return fmt.Errorf("kafka: CommitInterval %s is not positive", c.CommitInterval)
	case c.SessionTimeout <= 0:
		return fmt.Errorf("kafka: SessionTimeout %s is not positive", c.SessionTimeout)
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout:
		return fmt.Errorf("kafka: HeartbeatInterval %s must be positive and below SessionTimeout %s", c.HeartbeatInterval, c.SessionTimeout)
	}
	return nil
}

// ConcurrentSubscriber is a Watermill subscriber of a Kafka consumer group (over franz-go) that,
// unlike watermill-kafka's, does not wait for a message's ack before delivering the next one of
// its partition: up to MaxInFlightPerPartition messages per partition are in flight at once, in
// any order. Offsets are committed only up to the highest offset below which every delivered
// message was acked, so a crash redelivers, never skips, an unacked message (at-least-once).
// A nacked message is delivered again after NackResendSleep. Order within a partition is NOT
// preserved. One Subscribe per subscriber.
type ConcurrentSubscriber struct {
	cfg Config
	sc  ConcurrentSubscriberConfig
	log *slog.Logger

	mu         sync.Mutex
	cl         *kgo.Client
	topic      string
	out        chan *message.Message
	parts      map[int32]*partState
	assigned   map[int32]bool // partitions the group gave this member, fetched from or not
	subscribed bool
	msgCtx     context.Context

	commitMu sync.Mutex // serializes commits

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	stopPoll  context.CancelFunc
	loops     sync.WaitGroup // poll loop and committer
	workers   sync.WaitGroup // partition workers and ack watchers
}

// partState is one assigned partition.
type partState struct {
	partition int32
	pending   []*kgo.Record // fetched, not delivered yet
	queue     []*entry      // delivered and not yet below the watermark, in offset order
	inflight  int           // delivered (or being delivered) and not acked
	paused    bool
	revoked   bool
	mark      *kgo.Record // highest record such that it and every delivered record before it are acked
	committed int64       // the offset last committed (next offset to consume), -1 if none
	wake      chan struct{}
	stop      chan struct{}
	drained   chan struct{} // closed when revoked and nothing is in flight
}

type entry struct {
	rec  *kgo.Record
	done bool
}

// NewConcurrentSubscriber returns a subscriber of the consumer group sc.ConsumerGroup. It
// connects on Subscribe.
func NewConcurrentSubscriber(cfg Config, sc ConcurrentSubscriberConfig, log *slog.Logger) (*ConcurrentSubscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc.setDefaults()
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &ConcurrentSubscriber{
		cfg:      cfg,
		sc:       sc,
		log:      log.With("component", "kafka-concurrent-subscriber", "group", sc.ConsumerGroup),
		parts:    make(map[int32]*partState),
		assigned: make(map[int32]bool),
		closing:  make(chan struct{}),
	}, nil
}

// Subscribe joins the consumer group on topic and returns the channel of its messages. The
// channel is closed by Close, or when ctx is done.
func (s *ConcurrentSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return nil, errors.New("kafka: subscriber is closed")
	default:
	}
	if s.subscribed {
		return nil, errors.New("kafka: ConcurrentSubscriber subscribes one topic once")
	}
	s.topic = topic // before the client exists: its callbacks read it
	reset := kgo.NewOffset().AtEnd()
	if s.sc.FromOldest {
		reset = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(s.cfg.clientOpts("",
		kgo.ConsumerGroup(s.sc.ConsumerGroup),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.SessionTimeout(s.sc.SessionTimeout),
		kgo.HeartbeatInterval(s.sc.HeartbeatInterval),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: subscriber for %s: %w", strings.Join(s.cfg.Brokers, ","), err)
	}
	s.cl = cl
	s.subscribed = true
	s.out = make(chan *message.Message)
	s.msgCtx = context.WithoutCancel(ctx)
	pollCtx, cancel := context.WithCancel(context.Background())
	s.stopPoll = cancel
	s.loops.Add(2)
	go s.poll(pollCtx)
	go s.commitLoop()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.closing:
		}
	}()
	return s.out, nil
}

// Close stops consuming, closes the message channel, commits the acked offsets and leaves the
// group. Messages acked after Close are not committed; they are delivered again later.
func (s *ConcurrentSubscriber) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closing)
		cl := s.cl
		stopPoll := s.stopPoll
		s.mu.Unlock()
		if cl == nil {
			return
		}
		stopPoll()
		s.loops.Wait()
		s.mu.Lock()
		for _, p := range s.parts {
			stopPart(p)
		}
		s.mu.Unlock()
		s.workers.Wait()
		close(s.out)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.closeErr = s.commit(ctx, nil)
		// Leaving waits for a rebalance in progress, and a rebalance can wait for a member that
		// died without leaving (a SIGKILLed replica) until its session times out: a shutdown
		// would hang for that long. Leave within a bound; if it does not finish, the group
		// drops this member after its session timeout, as it would after a crash.
		// franz-go's Close waits for that leave however long it takes, so after the bound
		// the client is closed in the background; the process does not wait for it.
		lctx, lcancel := context.WithTimeout(context.Background(), leaveTimeout)
		defer lcancel()
		if err := cl.LeaveGroupContext(lctx); err != nil {
			s.log.Warn("kafka: leaving the consumer group did not finish in time (a rebalance is waiting for a member that died); the group will drop this member after its session timeout",
				"err", err)
			go cl.Close()
			return
		}
		cl.Close() // onRevoked commits nothing new
	})
	return s.closeErr
}

// PartitionFromContext returns the Kafka partition of a message's context.
func PartitionFromContext(ctx context.Context) (int32, bool) {
	p, ok := ctx.Value(partitionCtxKey{}).(int32)
	return p, ok
}

// OffsetFromContext returns the Kafka offset of a message's context.
func OffsetFromContext(ctx context.Context) (int64, bool) {
	o, ok := ctx.Value(offsetCtxKey{}).(int64)
	return o, ok
}

// KeyFromContext returns the Kafka record key of a message's context (nil for a record
// without a key); ok is false for a message that did not come from this subscriber.
func KeyFromContext(ctx context.Context) (key []byte, ok bool) {
	k, ok := ctx.Value(keyCtxKey{}).([]byte)
	return k, ok
}

type (
	partitionCtxKey struct{}
	offsetCtxKey    struct{}
	keyCtxKey       struct{}
)

// Waiting reports, for every partition assigned to this member, since when its oldest
// record not yet acked has been in Kafka (the record timestamp), or the zero time when every
// record fetched from it is acked. A record counts from the moment it is fetched until its
// ack, retries and redeliveries included; records behind the in-flight cap wait in the
// partition's buffer and count too.
func (s *ConcurrentSubscriber) Waiting() map[int32]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]time.Time, len(s.assigned))
	for id := range s.assigned {
		var oldest time.Time
		if p := s.parts[id]; p != nil {
			// The queue is in offset order and ends with the delivered records; pending
			// follows it. Timestamps are not monotonic within a partition, so look at all.
			for _, e := range p.queue {
				if !e.done && (oldest.IsZero() || e.rec.Timestamp.Before(oldest)) {
					oldest = e.rec.Timestamp
				}
			}
			for _, r := range p.pending {
				if oldest.IsZero() || r.Timestamp.Before(oldest) {
					oldest = r.Timestamp
				}
			}
		}
		out[id] = oldest
	}
	return out
}

// toMessage decodes a record as watermill-kafka's DefaultMarshaler does.
func (s *ConcurrentSubscriber) toMessage(r *kgo.Record) *message.Message {
	var uuid string
	md := make(message.Metadata, len(r.Headers))
	for _, h := range r.Headers {
		if h.Key == watermillUUIDHeader {
			uuid = string(h.Value)
			continue
		}
		md.Set(h.Key, string(h.Value))
	}
	msg := message.NewMessage(uuid, r.Value)
	msg.Metadata = md
	ctx := context.WithValue(s.msgCtx, partitionCtxKey{}, r.Partition)
	ctx = context.WithValue(ctx, offsetCtxKey{}, r.Offset)
	ctx = context.WithValue(ctx, keyCtxKey{}, r.Key)
	msg.SetContext(ctx)
	return msg
}

// poll fetches records and hands them to the partition workers.
func (s *ConcurrentSubscriber) poll(ctx context.Context) {
	defer s.loops.Done()
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			s.cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				s.log.Warn("kafka fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) > 0 {
				s.enqueue(ftp.Partition, ftp.Records)
			}
		})
		s.cl.AllowRebalance()
	}
}

// enqueue adds fetched records to their partition, starting its worker on first use.
func (s *ConcurrentSubscriber) enqueue(partition int32, recs []*kgo.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[partition]
	if p == nil {
		p = &partState{
			partition: partition,
			committed: -1,
			wake:      make(chan struct{}, 1),
			stop:      make(chan struct{}),
			drained:   make(chan struct{}),
		}
		s.parts[partition] = p
		s.workers.Add(1)
		go s.work(p)
	}
	p.pending = append(p.pending, recs...)
	s.togglePause(p)
	signal(p.wake)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// togglePause pauses fetching p while it has MaxInFlightPerPartition records delivered or
// waiting, and resumes it below. Called with s.mu held.
func (s *ConcurrentSubscriber) togglePause(p *partState) {
	full := len(p.pending)+p.inflight >= s.sc.MaxInFlightPerPartition
	if full == p.paused || p.revoked {
		return
	}
	p.paused = full
	tp := map[string][]int32{s.topic: {p.partition}}
	if full {
		s.cl.PauseFetchPartitions(tp)
	} else {
		s.cl.ResumeFetchPartitions(tp)
	}
}

// work delivers p's records while fewer than MaxInFlightPerPartition are unacked.
func (s *ConcurrentSubscriber) work(p *partState) {
	defer s.workers.Done()
	for {
		s.mu.Lock()
		if len(p.pending) == 0 || p.inflight >= s.sc.MaxInFlightPerPartition {
			s.mu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.stop:
				return
			}
		}
		rec := p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
		e := &entry{rec: rec}
		p.queue = append(p.queue, e)
		p.inflight++
		s.togglePause(p)
		s.mu.Unlock()

		msg := s.toMessage(rec)
		select {
		case s.out <- msg:
			s.workers.Add(1)
			go s.watch(p, e, msg)
		case <-p.stop:
			s.mu.Lock()
			p.inflight-- // never delivered: stays not done, so the watermark stops before it
			checkDrained(p)
			s.mu.Unlock()
			return
		}
	}
}

// watch waits for a delivered message's ack or nack.
func (s *ConcurrentSubscriber) watch(p *partState, e *entry, msg *message.Message) {
	defer s.workers.Done()
	for {
		select {
		case <-msg.Acked():
			s.acked(p, e)
			return
		case <-msg.Nacked():
		case <-s.closing:
			select { // an ack given before Close still counts
			case <-msg.Acked():
				s.acked(p, e)
			default:
			}
			return
		}
		// Nacked: deliver a fresh copy after NackResendSleep, still in flight.
		t := time.NewTimer(s.sc.NackResendSleep)
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			s.dropInFlight(p)
			return
		case <-s.closing:
			t.Stop()
			return
		}
		msg = s.toMessage(e.rec)
		select {
		case s.out <- msg:
		case <-p.stop:
			s.dropInFlight(p)
			return
		case <-s.closing:
			return
		}
	}
}

// dropInFlight forgets an unacked message of a revoked partition: the partition's next owner
// delivers it again.
func (s *ConcurrentSubscriber) dropInFlight(p *partState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.inflight--
	checkDrained(p)
}

// acked marks e done and advances p's watermark over the contiguous done prefix.
func (s *ConcurrentSubscriber) acked(p *partState, e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.done = true
	p.inflight--
	i := 0
	for i < len(p.queue) && p.queue[i].done {
		p.mark = p.queue[i].rec
		p.queue[i] = nil
		i++
	}
	p.queue = p.queue[i:]
	if checkDrained(p) {
		return
	}
	s.togglePause(p)
	signal(p.wake)
}

// checkDrained closes p.drained when p is revoked and nothing is in flight. Called with s.mu
// held; it reports whether p is revoked.
func checkDrained(p *partState) bool {
	if !p.revoked {
		return false
	}
	if p.inflight == 0 {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
	return true
}

// stopPart stops handing out p's records. Called with s.mu held.
func stopPart(p *partState) {
	if p.revoked {
		return
	}
	p.revoked = true
	p.pending = nil
	close(p.stop)
	checkDrained(p)
}

// commitLoop commits the watermarks every CommitInterval.
func (s *ConcurrentSubscriber) commitLoop() {
	defer s.loops.Done()
	t := time.NewTicker(s.sc.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.commit(ctx, nil); err != nil {
				s.log.Warn("kafka offset commit failed", "err", err)
			}
			cancel()
		case <-s.closing:
			return
		}
	}
}

// commit commits the watermarks of the given partitions (all when nil) that moved since their
// last commit.
func (s *ConcurrentSubscriber) commit(ctx context.Context, only []int32) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	offsets := make(map[int32]kgo.EpochOffset)
	add := func(p *partState) {
		if p.mark != nil && p.mark.Offset+1 > p.committed {
			offsets[p.partition] = kgo.EpochOffset{Epoch: p.mark.LeaderEpoch, Offset: p.mark.Offset + 1}
		}
	}
	if only == nil {
		for _, p := range s.parts {
			add(p)
		}
	} else {
		for _, id := range only {
			if p := s.parts[id]; p != nil {
				add(p)
			}
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var commitErr error
	s.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{s.topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				commitErr = err
				return
			}
			for _, t := range resp.Topics {
				for _, pr := range t.Partitions {
					if pr.ErrorCode != 0 && commitErr == nil {
						commitErr = fmt.Errorf("kafka: commit %s/%d: error code %d", t.Topic, pr.Partition, pr.ErrorCode)
					}
				}
			}
		})
	if commitErr != nil {
		return commitErr
	}
	s.mu.Lock()
	for id, eo := range offsets {
		if p := s.parts[id]; p != nil && eo.Offset > p.committed {
			p.committed = eo.Offset
		}
	}
	s.mu.Unlock()
	return nil
}

// onAssigned records the partitions the group gave this member.
func (s *ConcurrentSubscriber) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range assigned[s.topic] {
		s.assigned[id] = true
	}
}

// onRevoked stops handing out the revoked partitions' records, waits (bounded) for their
// in-flight acks, commits their watermarks and forgets them.
func (s *ConcurrentSubscriber) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ids := revoked[s.topic]
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	var drained []chan struct{}
	for _, id := range ids {
		if p := s.parts[id]; p != nil {
			stopPart(p)
			drained = append(drained, p.drained)
		}
	}
	s.mu.Unlock()
	timeout := time.NewTimer(revokeDrainTimeout)
	defer timeout.Stop()
wait:
	for _, d := range drained {
		select {
		case <-d:
		case <-timeout.C:
			s.log.Warn("kafka partitions revoked with messages in flight; they will be delivered again", "partitions", ids)
			break wait
		case <-s.closing:
			break wait
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.commit(cctx, ids); err != nil {
		s.log.Warn("kafka offset commit on revoke failed", "partitions", ids, "err", err)
	}
	s.forget(ids)
}

// onLost forgets partitions the group took away without a revoke: their offsets can no longer
// be committed by this member, so their in-flight messages will be delivered again.
func (s *ConcurrentSubscriber) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ids := lost[s.topic]
	s.mu.Lock()
	for _, id := range ids {
		if p := s.parts[id]; p != nil {
			stopPart(p)
		}
	}
	s.mu.Unlock()
	s.forget(ids)
}

// forget drops the partitions' state and un-pauses them, so a later assignment fetches them.
func (s *ConcurrentSubscriber) forget(ids []int32) {
	s.mu.Lock()
	var known []int32 // partitions this member fetched, so s.cl is set
	for _, id := range ids {
		delete(s.assigned, id)
		if s.parts[id] != nil {
			known = append(known, id)
			delete(s.parts, id)
		}
	}
	s.mu.Unlock()
	if len(known) > 0 {
		s.cl.ResumeFetchPartitions(map[string][]int32{s.topic: known})
	}
}
