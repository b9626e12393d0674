package projector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/ports/projector"
)

// fakeProjection is an in-memory read model with external-version semantics and switchable
// failure modes.
type fakeProjection struct {
	mu       sync.Mutex
	docs     map[product.ID]product.Snapshot
	failures atomic.Int64 // transient failures still to return
	reject   map[product.ID]bool
	panicOn  map[product.ID]bool
	calls    atomic.Int64
}

func (f *fakeProjection) Apply(_ context.Context, s product.Snapshot) error {
	f.calls.Add(1)
	if f.failures.Load() > 0 {
		f.failures.Add(-1)
		return errors.New("search cluster: connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOn[s.ID] {
		panic("boom")
	}
	if f.reject[s.ID] {
		return fmt.Errorf("mapper_parsing_exception: %w", command.ErrProjectionRejected)
	}
	if cur, ok := f.docs[s.ID]; ok && cur.Version >= s.Version {
		return nil
	}
	f.docs[s.ID] = s
	return nil
}

func (f *fakeProjection) get(id product.ID) (product.Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.docs[id]
	return s, ok
}

type rig struct {
	pubsub *gochannel.GoChannel
	proj   *fakeProjection
	dlq    <-chan *message.Message
	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64, Persistent: true}, watermill.NopLogger{})
	proj := &fakeProjection{docs: map[product.ID]product.Snapshot{}, reject: map[product.ID]bool{}, panicOn: map[product.ID]bool{}}
	h, err := command.NewProjectProductEventHandler(proj, decorator.Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	p, err := projector.New(projector.Config{RetryInitialInterval: time.Millisecond, RetryMaxInterval: 5 * time.Millisecond}, ps, ps, h, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := ps.Subscribe(context.Background(), "dlq.product.events")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{pubsub: ps, proj: proj, dlq: dlq, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	<-p.Running()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return r
}

func (r *rig) publish(t *testing.T, payloads ...[]byte) {
	t.Helper()
	for _, p := range payloads {
		if err := r.pubsub.Publish("product.events", message.NewMessage(watermill.NewUUID(), p)); err != nil {
			t.Fatal(err)
		}
	}
}

// versions returns the encoded events of one product at versions 1..n (n-th is a delete when del).
func versions(t *testing.T, n int, del bool) (product.ID, [][]byte) {
	t.Helper()
	now := time.Now()
	d, err := product.NewDetails("SKU-1", "Lamp", "", "home", "Acme", 100, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= n; v++ {
		if del && v == n {
			err = p.Delete(now)
		} else {
			err = p.ChangeStock(int64(v), now)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	for _, e := range p.PopEvents() {
		m, err := envelope.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Payload)
	}
	return p.ID(), out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOutOfOrderAndDuplicateEventsConverge(t *testing.T) {
	r := newRig(t)
	id, evs := versions(t, 3, false)
	r.publish(t, evs[2], evs[0], evs[1], evs[2], evs[0])
	eventually(t, "v3 projected", func() bool { s, ok := r.proj.get(id); return ok && s.Version == 3 })
	eventually(t, "all five handled", func() bool { return r.proj.calls.Load() == 5 })
	if s, _ := r.proj.get(id); s.Details.Stock != 3 {
		t.Fatalf("stock %d, want 3 from v3", s.Details.Stock)
	}
}

func TestPoisonMessagesGoToDLQOnceWithHeadersAndConsumerContinues(t *testing.T) {
	r := newRig(t)
	okID, ok := versions(t, 1, false)
	rejID, rej := versions(t, 1, false)
	panicID, pan := versions(t, 1, false)
	r.proj.reject[rejID] = true
	r.proj.panicOn[panicID] = true
	bad := []byte(`{"this is":"not an event"`)
	unknown := []byte(`{"event_id":"0190a0b0-0000-7000-8000-000000000001","event_type":"product.renamed","schema_version":1}`)
	future := []byte(`{"event_id":"0190a0b0-0000-7000-8000-000000000001","event_type":"product.created","schema_version":99}`)
	r.publish(t, bad, unknown, future, rej[0], pan[0], ok[0])

	want := map[string]string{string(bad): "undecodable", string(unknown): "unsupported", string(future): "unsupported",
		string(rej[0]): "rejected", string(pan[0]): "panic"}
	got := map[string]string{}
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case m := <-r.dlq:
			m.Ack()
			if _, dup := got[string(m.Payload)]; dup {
				t.Errorf("message dead-lettered twice: %s", m.Payload)
			}
			got[string(m.Payload)] = m.Metadata.Get(ops.DLQHeaderErrorClass)
			for _, h := range []string{ops.DLQHeaderReason, ops.DLQHeaderHandler, ops.DLQHeaderOriginalTopic, ops.DLQHeaderAttempts, ops.DLQHeaderFailedAt, "reason_poisoned"} {
				if m.Metadata.Get(h) == "" {
					t.Errorf("DLQ message lacks header %s: %v", h, m.Metadata)
				}
			}
			if a := m.Metadata.Get(ops.DLQHeaderAttempts); a != "1" {
				t.Errorf("permanent failure attempted %s times, want 1 (no retries)", a)
			}
		case <-timeout:
			t.Fatalf("DLQ got %d of %d messages: %v", len(got), len(want), got)
		}
	}
	for p, class := range want {
		if got[p] != class {
			t.Errorf("class of %q = %q, want %q", p, got[p], class)
		}
	}
	eventually(t, "the good event after the poison", func() bool { _, ok := r.proj.get(okID); return ok })
	select {
	case m := <-r.dlq:
		t.Fatalf("unexpected extra DLQ message %s", m.Payload)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestTransientFailuresAreRetriedNeverDeadLettered(t *testing.T) {
	r := newRig(t)
	r.proj.failures.Store(25) // an "outage" of 25 failed attempts
	id, evs := versions(t, 2, false)
	r.publish(t, evs...)
	eventually(t, "projection after the outage", func() bool { s, ok := r.proj.get(id); return ok && s.Version == 2 })
	select {
	case m := <-r.dlq:
		t.Fatalf("transient failure reached the DLQ: %v", m.Metadata)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestClassify(t *testing.T) {
	cases := map[ops.FailureClass]error{
		ops.ClassNone:        nil,
		ops.ClassTransient:   errors.New("dial tcp: connection refused"),
		ops.ClassCanceled:    fmt.Errorf("x: %w", context.Canceled),
		ops.ClassUndecodable: fmt.Errorf("x: %w", envelope.ErrUndecodable),
		ops.ClassUnsupported: fmt.Errorf("x: %w", envelope.ErrUnsupported),
		ops.ClassRejected:    fmt.Errorf("x: %w", command.ErrProjectionRejected),
		ops.ClassValidation:  &product.ValidationError{},
	}
	for want, err := range cases {
		if got := projector.Classify(err); got != want {
			t.Errorf("Classify(%v) = %q, want %q", err, got, want)
		}
	}
	if ops.ClassTransient.Permanent() || ops.ClassCanceled.Permanent() || !ops.ClassRejected.Permanent() {
		t.Error("Permanent() disagrees with the retry policy")
	}
}

// flakyDLQ fails its first publishes and records when each attempt came.
type flakyDLQ struct {
	message.Publisher
	mu       sync.Mutex
	failures int // failures still to return; -1 fails for ever
	attempts []time.Time
}

func (d *flakyDLQ) Publish(topic string, msgs ...*message.Message) error {
	d.mu.Lock()
	d.attempts = append(d.attempts, time.Now())
	if d.failures != 0 {
		d.failures--
		d.mu.Unlock()
		return errors.New("kafka: MESSAGE_TOO_LARGE")
	}
	d.mu.Unlock()
	return d.Publisher.Publish(topic, msgs...)
}

func (d *flakyDLQ) times() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.attempts...)
}

type dlqCounts struct {
	mu             sync.Mutex
	dead, failures int
}

func (c *dlqCounts) Projected(int32, time.Time) {}
func (c *dlqCounts) DeadLettered(string)        { c.mu.Lock(); c.dead++; c.mu.Unlock() }
func (c *dlqCounts) DeadLetterFailed()          { c.mu.Lock(); c.failures++; c.mu.Unlock() }
func (c *dlqCounts) Retried()                   {}
func (c *dlqCounts) get() (int, int)            { c.mu.Lock(); defer c.mu.Unlock(); return c.dead, c.failures }

// runFlaky runs a projector whose DLQ publisher is dlq and returns its stop function.
func runFlaky(t *testing.T, dlq *flakyDLQ, ps *gochannel.GoChannel, obs projector.Observer, initial, max time.Duration) (stop func() error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	proj := &fakeProjection{docs: map[product.ID]product.Snapshot{}}
	h, err := command.NewProjectProductEventHandler(proj, decorator.Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	p, err := projector.New(projector.Config{RetryInitialInterval: time.Millisecond, RetryMaxInterval: 5 * time.Millisecond,
		DLQRetryInitialInterval: initial, DLQRetryMaxInterval: max}, ps, dlq, h, obs, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Running()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("projector did not stop within 10 s")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestFailingDLQPublishBacksOff: a dead letter the DLQ refuses is tried again with capped
// exponential backoff, not in a tight loop; once the DLQ takes it, it lands there once and is
// counted once, every failed attempt counted too.
func TestFailingDLQPublishBacksOff(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64, Persistent: true}, watermill.NopLogger{})
	dlq := &flakyDLQ{Publisher: ps, failures: 7}
	obs := &dlqCounts{}
	const initial, max = 40 * time.Millisecond, 160 * time.Millisecond
	runFlaky(t, dlq, ps, obs, initial, max)
	out, err := ps.Subscribe(context.Background(), "dlq.product.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Publish("product.events", message.NewMessage(watermill.NewUUID(), []byte("not an event"))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-out:
		m.Ack()
	case <-time.After(20 * time.Second):
		t.Fatal("the dead letter never reached the DLQ")
	}
	at := dlq.times()
	if len(at) != 8 {
		t.Fatalf("%d attempts, want 7 failures and the success", len(at))
	}
	want := initial
	for i := 1; i < len(at); i++ {
		// The jitter is ±20 %: every wait is at least 80 % of its step, and the steps double
		// up to the cap.
		if gap := at[i].Sub(at[i-1]); gap < want*8/10 {
			t.Errorf("attempt %d came %s after the previous one, want at least %s (steps %v)", i+1, gap, want*8/10, gaps(at))
		} else if gap > 5*time.Second {
			t.Errorf("attempt %d came %s after the previous one: the backoff is not capped at %s", i+1, gap, max)
		}
		want = min(2*want, max)
	}
	eventually(t, "the dead letter counted", func() bool { d, f := obs.get(); return d == 1 && f == 7 })
	select {
	case m := <-out:
		t.Fatalf("dead-lettered twice: %s", m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestShutdownEndsDLQRetries: a projector whose DLQ never takes a message still stops at once.
func TestShutdownEndsDLQRetries(t *testing.T) {
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64, Persistent: true}, watermill.NopLogger{})
	dlq := &flakyDLQ{Publisher: ps, failures: -1}
	stop := runFlaky(t, dlq, ps, nil, 50*time.Millisecond, time.Minute)
	if err := ps.Publish("product.events", message.NewMessage(watermill.NewUUID(), []byte("not an event"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two failed attempts", func() bool { return len(dlq.times()) >= 2 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %s while a DLQ publish was being retried", d)
	}
}

func gaps(at []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(at); i++ {
		out = append(out, at[i].Sub(at[i-1]).Round(time.Millisecond))
	}
	return out
}
