package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

// Read-your-writes limits.
const (
	// MaxWaitFor bounds the versions one read may wait for.
	MaxWaitFor = 10
	// DefaultWaitTimeout is how long a read waits for its versions when it does not say.
	DefaultWaitTimeout = 2 * time.Second
	// MaxWaitTimeout bounds the wait: a read model further behind is an outage to report,
	// not a latency to hide.
	MaxWaitTimeout = 10 * time.Second
	// DefaultCheckInterval is how often a VersionWaiter asks its read model while requests
	// wait: one batched request per interval and process, however many requests wait.
	DefaultCheckInterval = 50 * time.Millisecond
	// MaxProbesPerCheck bounds one check's request; further waiting versions are asked for
	// in the next one.
	MaxProbesPerCheck = 1000
)

// WaitFor names a version of a product that a read must reflect: the version a write
// response returned, so that the writer reads its own write.
type WaitFor struct {
	ID      product.ID
	Version int64
}

// String is the API form, "<id>:<version>".
func (w WaitFor) String() string { return string(w.ID) + ":" + strconv.FormatInt(w.Version, 10) }

// ParseWaitFor parses "<id>:<version>": a product id and a version of at least 1. Errors
// are ErrInvalidSearch.
func ParseWaitFor(s string) (WaitFor, error) {
	invalid := fmt.Errorf("%w: wait_for %q must be <product id>:<version>", ErrInvalidSearch, truncate(s, 80))
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return WaitFor{}, invalid
	}
	id, err := product.ParseID(s[:i])
	if err != nil {
		return WaitFor{}, invalid
	}
	v, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || v < 1 {
		return WaitFor{}, invalid
	}
	return WaitFor{ID: id, Version: v}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Consistency is what a read asks of its read model's freshness: the versions it must
// reflect, how long it may wait for them, and what to do when they do not arrive in time.
// The zero value asks for nothing and never waits.
type Consistency struct {
	// WaitFor lists up to MaxWaitFor versions the read must reflect (at least that version of
	// each product; a later one does as well). Normalize writes ids in their canonical form
	// and keeps the highest version per product.
	WaitFor []WaitFor
	// Timeout bounds the wait; 0 means DefaultWaitTimeout, at most MaxWaitTimeout.
	Timeout time.Duration
	// Strict makes a read whose versions did not arrive in time fail with a *BehindError
	// instead of answering with what the read model has (the lags reported beside it).
	Strict bool
}

// Normalize checks c and fills its defaults. Errors are ErrInvalidSearch.
func (c Consistency) Normalize() (Consistency, error) {
	if len(c.WaitFor) > MaxWaitFor {
		return c, fmt.Errorf("%w: wait_for names %d versions, at most %d are allowed", ErrInvalidSearch, len(c.WaitFor), MaxWaitFor)
	}
	highest := map[product.ID]int64{}
	for _, w := range c.WaitFor {
		id, err := product.ParseID(string(w.ID))
		if err != nil || w.Version < 1 {
			return c, fmt.Errorf("%w: wait_for %q must be <product id>:<version>", ErrInvalidSearch, truncate(w.String(), 80))
		}
		highest[id] = max(highest[id], w.Version)
	}
	out := make([]WaitFor, 0, len(highest))
	for id, v := range highest {
		out = append(out, WaitFor{ID: id, Version: v})
	}
	slices.SortFunc(out, func(a, b WaitFor) int { return strings.Compare(string(a.ID), string(b.ID)) })
	if len(out) == 0 {
		out = nil
	}
	c.WaitFor = out
	if c.Timeout == 0 {
		c.Timeout = DefaultWaitTimeout
	}
	if c.Timeout < 0 || c.Timeout > MaxWaitTimeout {
		return c, fmt.Errorf("%w: wait_timeout must be more than 0 and at most %s", ErrInvalidSearch, MaxWaitTimeout)
	}
	return c, nil
}

// Lag is a version a read asked for that its read model did not reach in time.
type Lag struct {
	ID product.ID
	// Want is the version asked for; Have the version the read model showed at its last
	// check (0: the product was not there, or no check answered).
	Want, Have int64
}

// ErrReadModelBehind marks a strict read whose versions did not arrive in time; ports answer
// it with 503 and Retry-After. errors.As gives the *BehindError with the lags.
var ErrReadModelBehind = errors.New("read model behind")

// BehindError is the error of a strict read whose versions did not arrive in time.
type BehindError struct {
	Lags []Lag
}

func (e *BehindError) Error() string {
	parts := make([]string, len(e.Lags))
	for i, l := range e.Lags {
		parts[i] = fmt.Sprintf("%s at v%d, want v%d", l.ID, l.Have, l.Want)
	}
	return "read model behind: " + strings.Join(parts, ", ")
}

// Is makes errors.Is(err, ErrReadModelBehind) true.
func (e *BehindError) Is(target error) bool { return target == ErrReadModelBehind }

// VersionProbe asks which version of a product a read model serves. Route names the copy a
// read will be served from (a search's Hash, for engines that route one search to the same
// replicas page after page); read models with one copy ignore it.
type VersionProbe struct {
	Route string
	ID    product.ID
}

// VisibleVersionsReader is the port a VersionWaiter checks through: for each probe, the
// version of the product the read model would show a read now (what a search would see,
// tombstones included), or nothing for a product it does not have. One call answers a whole
// batch, so a read model can answer it with one request.
type VisibleVersionsReader interface {
	VisibleVersions(ctx context.Context, probes []VersionProbe) (map[VersionProbe]int64, error)
}

// WaitObserver receives what a VersionWaiter does, for metrics; nil observes nothing.
type WaitObserver interface {
	// VersionsChecked is called after each batched check with its probe count.
	VersionsChecked(readModel string, probes int, took time.Duration, err error)
	// WaitEnded is called when a read stops waiting: outcome is "visible", "timeout" or
	// "canceled".
	WaitEnded(readModel string, outcome string, waited time.Duration)
}

// VersionWaiterConfig configures a VersionWaiter.
type VersionWaiterConfig struct {
	// ReadModel names the read model in metrics and errors ("search", "products").
	ReadModel string
	// Interval is the time between checks while reads wait; 0 means DefaultCheckInterval.
	Interval time.Duration
	// CheckTimeout bounds one check; 0 means two seconds.
	CheckTimeout time.Duration
	// Observer, when set, is told about checks and waits.
	Observer WaitObserver
}

func (c *VersionWaiterConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 2 * time.Second
	}
}

// Validate reports a configuration that cannot work, after defaults.
func (c VersionWaiterConfig) Validate() error {
	c.setDefaults()
	switch {
	case c.ReadModel == "":
		return errors.New("version waiter: read model name is empty")
	case c.Interval < time.Millisecond || c.Interval > time.Second:
		return fmt.Errorf("version waiter: interval %s must be 1ms..1s", c.Interval)
	case c.CheckTimeout < time.Millisecond:
		return fmt.Errorf("version waiter: check timeout %s must be at least 1ms", c.CheckTimeout)
	}
	return nil
}

// VersionWaiter makes reads wait until their read model reflects given versions, without a
// polling loop per read: every waiting read of the process registers here, and one goroutine
// asks the read model for all of their versions in one batched call per Interval while anyone
// waits (none when nobody does), waking each read as soon as a check shows all of its
// versions. A check that fails is retried at the next interval; the read's timeout bounds the
// wait either way. Because the check asks the read model itself (for a search engine, what a
// search sees after its refresh), it works whichever process wrote the versions: the API and
// the projector may run in different replicas. It is safe for concurrent use.
type VersionWaiter struct {
	r   VisibleVersionsReader
	cfg VersionWaiterConfig

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	running bool
}

type waiter struct {
	route   string
	targets []WaitFor
	have    map[product.ID]int64
	since   time.Time // registration, for fairness when a check cannot take everyone
	done    chan struct{}
}

// NewVersionWaiter returns a waiter over r.
func NewVersionWaiter(r VisibleVersionsReader, cfg VersionWaiterConfig) (*VersionWaiter, error) {
	if r == nil {
		return nil, errors.New("version waiter: nil read model")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &VersionWaiter{r: r, cfg: cfg, waiters: map[*waiter]struct{}{}}, nil
}

// Wait returns once the read model serves, for route, at least the versions of c (nil), or
// when c's timeout passes (the versions not reached, and a *BehindError when c is strict), or
// when ctx ends (its error). c must be normalized; without versions it returns at once.
func (w *VersionWaiter) Wait(ctx context.Context, route string, c Consistency) ([]Lag, error) {
	if len(c.WaitFor) == 0 {
		return nil, nil
	}
	start := time.Now()
	wt := &waiter{route: route, targets: c.WaitFor, have: map[product.ID]int64{}, since: start, done: make(chan struct{})}
	w.mu.Lock()
	w.waiters[wt] = struct{}{}
	if !w.running {
		w.running = true
		go w.loop()
	}
	w.mu.Unlock()

	timer := time.NewTimer(c.Timeout)
	defer timer.Stop()
	outcome := "visible"
	var err error
	select {
	case <-wt.done:
	case <-timer.C:
		outcome = "timeout"
	case <-ctx.Done():
		outcome, err = "canceled", ctx.Err()
	}
	w.mu.Lock()
	delete(w.waiters, wt)
	lags := wt.lags()
	w.mu.Unlock()
	if w.cfg.Observer != nil {
		w.cfg.Observer.WaitEnded(w.cfg.ReadModel, outcome, time.Since(start))
	}
	switch {
	case err != nil:
		return lags, fmt.Errorf("wait for %s versions: %w", w.cfg.ReadModel, err)
	case len(lags) > 0 && c.Strict:
		return lags, &BehindError{Lags: lags}
	}
	return lags, nil
}

// lags are the targets not reached; the caller holds mu.
func (wt *waiter) lags() []Lag {
	var out []Lag
	for _, t := range wt.targets {
		if have := wt.have[t.ID]; have < t.Version {
			out = append(out, Lag{ID: t.ID, Want: t.Version, Have: have})
		}
	}
	return out
}

// loop checks for every waiting read once per interval and ends when nobody waits.
func (w *VersionWaiter) loop() {
	for {
		w.mu.Lock()
		if len(w.waiters) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		probes := w.probesLocked()
		w.mu.Unlock()

		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CheckTimeout)
		versions, err := w.r.VisibleVersions(ctx, probes)
		cancel()
		if w.cfg.Observer != nil {
			w.cfg.Observer.VersionsChecked(w.cfg.ReadModel, len(probes), time.Since(start), err)
		}
		if err == nil {
			w.mu.Lock()
			for wt := range w.waiters {
				satisfied := true
				for _, t := range wt.targets {
					if v, ok := versions[VersionProbe{Route: wt.route, ID: t.ID}]; ok {
						wt.have[t.ID] = max(wt.have[t.ID], v)
					}
					satisfied = satisfied && wt.have[t.ID] >= t.Version
				}
				if satisfied {
					close(wt.done)
					delete(w.waiters, wt)
				}
			}
			w.mu.Unlock()
		}
		time.Sleep(time.Until(start.Add(w.cfg.Interval)))
	}
}

// probesLocked are the distinct probes of the waiting reads' unreached versions, the longest
// waiting first, at most MaxProbesPerCheck; the caller holds mu.
func (w *VersionWaiter) probesLocked() []VersionProbe {
	waiting := make([]*waiter, 0, len(w.waiters))
	for wt := range w.waiters {
		waiting = append(waiting, wt)
	}
	slices.SortFunc(waiting, func(a, b *waiter) int { return a.since.Compare(b.since) })
	seen := map[VersionProbe]bool{}
	var out []VersionProbe
	for _, wt := range waiting {
		for _, t := range wt.targets {
			p := VersionProbe{Route: wt.route, ID: t.ID}
			if wt.have[t.ID] >= t.Version || seen[p] {
				continue
			}
			if len(out) == MaxProbesPerCheck {
				return out
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
