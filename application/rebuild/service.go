package rebuild

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

// Config tunes the rebuild.
type Config struct {
	// BatchSize is the number of documents per bulk write during fill and catch-up.
	BatchSize int
	// ValidatePageSize is the page size of the validation's merge of the database snapshot
	// with the new index.
	ValidatePageSize int
	// SaveInterval is how often progress is written to the store (and a cancel request read).
	SaveInterval time.Duration
	// Settle is how long the drain phase waits after its last write before the rebuild
	// reports success: the read model's refresh interval. The index is live by then, and
	// forcing a refresh on a live index under load is what Elasticsearch advises against, so
	// the rebuild waits for the scheduled refresh instead (refresh=wait_for semantics): when
	// `catalog rebuild --wait` returns, every drained write is searchable.
	Settle time.Duration
	// RelayWait bounds how long a Kafka-sourced rebuild waits for the outbox relay to forward
	// every change its database snapshot holds, before it reads the log up to the end.
	RelayWait time.Duration
	// SwitchTimeout bounds the alias switch, which runs even when the rebuild is being
	// cancelled: an interrupted switch would leave its outcome unknown.
	SwitchTimeout time.Duration
	// DrainTimeout bounds the retries of the drain after the switch; the new index is live by
	// then, so the drain is retried rather than abandoned on a transient failure.
	DrainTimeout time.Duration
	// ProjectorGroup is the live projector's consumer group (required). Its committed offsets,
	// read just before every alias switch, are where the index the alias leaves stops
	// receiving events: what a rollback to that index catches up from.
	ProjectorGroup string
	// Owner names this process in the records it runs and takes over; the default is
	// host/pid/random, unique per process start.
	Owner string
	// HeartbeatInterval is how often a runner proves on its record that it is alive and
	// checks that its lock's database session still holds the lock.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long an unfinished record may go without a heartbeat before its
	// runner counts as dead: GetRebuild says so on every replica, and recovery takes the
	// record over. Replicas' clocks must agree to well within it (NTP does).
	HeartbeatTimeout time.Duration
	// RecoveryInterval is how often RunRecovery looks for records whose runner died and for
	// a live index that is behind the event log.
	RecoveryInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BeforeValidate, when set, runs after catch-up and before validation. Tests use it to
	// damage the new index and prove validation catches it; production leaves it nil.
	BeforeValidate func(ctx context.Context, index string)
}

// Defaults of the runner's liveness settings.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultHeartbeatTimeout  = 6 * time.Second
	DefaultRecoveryInterval  = 3 * time.Second
)

func (c *Config) setDefaults() {
	if c.BatchSize == 0 {
		// Large enough that a bulk request's round trip does not dominate the fill (measured:
		// 1,000-document writes spent 85% of the fill waiting on their own round trips).
		c.BatchSize = 5000
	}
	if c.ValidatePageSize == 0 {
		c.ValidatePageSize = 5000
	}
	if c.SaveInterval == 0 {
		c.SaveInterval = 500 * time.Millisecond
	}
	if c.RelayWait == 0 {
		c.RelayWait = time.Minute
	}
	if c.SwitchTimeout == 0 {
		c.SwitchTimeout = 30 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	if c.Owner == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown-host"
		}
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.RecoveryInterval == 0 {
		c.RecoveryInterval = DefaultRecoveryInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.BatchSize < 1 || c.ValidatePageSize < 1 || c.SaveInterval <= 0 {
		return errors.New("rebuild: batch size, validate page size and save interval must be positive")
	}
	if c.ProjectorGroup == "" {
		return errors.New("rebuild: the projector's consumer group is empty")
	}
	if c.HeartbeatInterval <= 0 || c.RecoveryInterval <= 0 || c.HeartbeatTimeout < 3*c.HeartbeatInterval {
		return fmt.Errorf("rebuild: heartbeat timeout %s must be at least three heartbeat intervals (%s), and the intervals positive",
			c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	return nil
}

// Service starts, runs and reports rebuilds, and manages the alias's indices.
type Service struct {
	cfg      Config
	store    Store
	products ProductSource
	events   EventLog
	target   Target
	log      *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

// NewService returns the rebuild service over its ports.
func NewService(cfg Config, store Store, products ProductSource, events EventLog, target Target, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || products == nil || events == nil || target == nil || log == nil {
		return nil, errors.New("rebuild: nil dependency")
	}
	return &Service{cfg: cfg, store: store, products: products, events: events, target: target, log: log,
		running: map[string]context.CancelFunc{}}, nil
}

// Start begins a rebuild from source and returns its record at once; the rebuild runs in
// the background of this process. A second rebuild anywhere in the cluster fails with
// rebuild.ErrAlreadyRunning.
func (s *Service) Start(ctx context.Context, source rebuild.Source) (rebuild.Snapshot, error) {
	if _, err := rebuild.ParseSource(string(source)); err != nil {
		return rebuild.Snapshot{}, err
	}
	lock, err := s.acquire(ctx)
	if err != nil {
		return rebuild.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	now := s.cfg.Now()
	r, err := rebuild.New(newID(now), source, now)
	if err != nil {
		lock.Release()
		return rebuild.Snapshot{}, err
	}
	r.Claim(s.cfg.Owner, now)
	if err := s.store.Create(ctx, r); err != nil {
		lock.Release()
		return rebuild.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	started := r.Snapshot() // before the run owns r
	s.launch(lock, r)
	s.log.Info("rebuild started", "rebuild", started.ID, "source", source)
	return started, nil
}

// launch runs r in the background under lock, which it releases at the end, and keeps the
// record's heartbeat while it runs. A recovery that resumes a rebuild it took over (instead
// of failing it) would hand the record and its lock to launch the same way.
func (s *Service) launch(lock Lock, r *rebuild.Rebuild) {
	runCtx, cancel := context.WithCancelCause(context.Background())
	s.mu.Lock()
	s.running[r.ID()] = func() { cancel(context.Canceled) }
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		beatCtx, stopBeat := context.WithCancel(context.Background())
		beating := make(chan struct{})
		go func() {
			defer close(beating)
			s.keepAlive(beatCtx, lock, r.ID(), cancel)
		}()
		s.run(runCtx, r)
		// The heartbeat goes on until the outcome is saved: a runner cleaning up is alive.
		stopBeat()
		<-beating
		lock.Release()
		s.mu.Lock()
		delete(s.running, r.ID())
		s.mu.Unlock()
		cancel(nil)
	}()
}

// keepAlive beats the record's heartbeat and checks the lock every HeartbeatInterval until
// ctx ends. When the lock's session is gone it stops the run (stop's cause wraps
// rebuild.ErrLockLost): another replica could start a second rebuild now, and it is this
// run that must give way. It goes on beating, so no replica takes the record over while the
// run cleans up. When another runner owns the record, it stops the run with
// rebuild.ErrNotOwner and returns.
func (s *Service) keepAlive(ctx context.Context, lock Lock, id string, stop context.CancelCauseFunc) {
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout/2)
		if !lost {
			if err := lock.Check(cctx); err != nil && ctx.Err() == nil {
				lost = true
				if !errors.Is(err, rebuild.ErrLockLost) {
					err = fmt.Errorf("%w: %w", rebuild.ErrLockLost, err)
				}
				s.log.Error("rebuild: the lock's database session is gone; stopping the run so that no second rebuild runs beside it",
					"rebuild", id, "err", err)
				stop(err)
			}
		}
		err := s.store.Heartbeat(cctx, id, s.cfg.Owner, s.cfg.Now())
		cancel()
		switch {
		case errors.Is(err, rebuild.ErrNotOwner):
			s.log.Error("rebuild: another runner took the record over; stopping", "rebuild", id, "owner", s.cfg.Owner)
			stop(err)
			return
		case err != nil && ctx.Err() == nil:
			s.log.Warn("rebuild: heartbeat failed; retrying", "rebuild", id, "err", err)
		}
	}
}

// acquire takes the single-flight lock for an operation that moves the alias or deletes
// indices, after recovering records whose runner died. A record that is unfinished but whose
// runner still beats means that runner lost its lock's session and is stopping (within a
// heartbeat interval): the operation is refused with rebuild.ErrAlreadyRunning until it has.
func (s *Service) acquire(ctx context.Context) (Lock, error) {
	lock, err := s.tryLock(ctx)
	if err != nil {
		return nil, err
	}
	_, alive, err := s.recoverRecords(ctx)
	if err == nil && alive != nil {
		err = fmt.Errorf("%w: rebuild %s (phase %s) of %s is still running although the lock was free: it lost its lock and stops within %s",
			rebuild.ErrAlreadyRunning, alive.ID, alive.Phase, alive.Owner, s.cfg.HeartbeatInterval)
	}
	if err != nil {
		lock.Release()
		return nil, err
	}
	return lock, nil
}

// Get returns a rebuild's record; an empty id means the newest rebuild.
func (s *Service) Get(ctx context.Context, id string) (rebuild.Snapshot, error) {
	if id == "" {
		list, err := s.store.List(ctx, 1)
		if err != nil {
			return rebuild.Snapshot{}, fmt.Errorf("get rebuild: %w", err)
		}
		if len(list) == 0 {
			return rebuild.Snapshot{}, fmt.Errorf("get rebuild: %w", rebuild.ErrNotFound)
		}
		return list[0].Snapshot(), nil
	}
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return rebuild.Snapshot{}, fmt.Errorf("get rebuild %s: %w", id, err)
	}
	return r.Snapshot(), nil
}

// List returns the newest rebuilds first.
func (s *Service) List(ctx context.Context, limit int) ([]rebuild.Snapshot, error) {
	list, err := s.store.List(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("list rebuilds: %w", err)
	}
	out := make([]rebuild.Snapshot, len(list))
	for i, r := range list {
		out[i] = r.Snapshot()
	}
	return out, nil
}

// Cancel stops a running rebuild cleanly (its unfinished index is deleted), wherever it runs:
// this process cancels it at once; another replica notices the request at its next save.
func (s *Service) Cancel(ctx context.Context, id string) (rebuild.Snapshot, error) {
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return rebuild.Snapshot{}, fmt.Errorf("cancel rebuild %s: %w", id, err)
	}
	if r.Phase().Terminal() {
		return r.Snapshot(), fmt.Errorf("cancel rebuild %s: %w", id, rebuild.ErrFinished)
	}
	if err := s.store.RequestCancel(ctx, id); err != nil {
		return rebuild.Snapshot{}, fmt.Errorf("cancel rebuild %s: %w", id, err)
	}
	s.mu.Lock()
	cancel := s.running[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return r.Snapshot(), nil
}

// lockGrace is how long acquire keeps trying a held lock while no rebuild is unfinished: a
// rebuild's record says it has ended a moment before its lock is released, and an operator
// (or script) that starts the next operation as soon as the last one reports its end must not
// be refused for that. A rollback, prune or recovery holding the lock looks the same, and is
// waited for just as briefly.
const lockGrace = time.Second

// tryLock takes the lock. While it is held and the newest rebuild has ended, it tries again
// for up to lockGrace; while a rebuild is unfinished it refuses at once.
func (s *Service) tryLock(ctx context.Context) (Lock, error) {
	deadline := time.Now().Add(lockGrace)
	for {
		lock, err := s.store.TryLock(ctx)
		if !errors.Is(err, rebuild.ErrAlreadyRunning) || time.Now().After(deadline) {
			return lock, err
		}
		if list, lerr := s.store.List(ctx, 1); lerr != nil || (len(list) > 0 && !list[0].Phase().Terminal()) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RunnerLost reports whether snap's runner has died (or cannot reach the database): the
// record is unfinished and has not been beaten for longer than the heartbeat timeout.
func (s *Service) RunnerLost(snap rebuild.Snapshot) bool {
	return snap.RunnerLost(s.cfg.Now(), s.cfg.HeartbeatTimeout)
}

// RecoverInterrupted takes over the rebuilds whose runner died (no heartbeat within the
// heartbeat timeout): one that died after its alias switch is drained and succeeds, any other
// is marked failed and its unfinished index deleted. Then, if the live index is behind the
// event log (a drain after a switch did not finish), it catches it up. It runs only when it
// can take the rebuild lock (nothing else runs) and returns the number of records recovered.
func (s *Service) RecoverInterrupted(ctx context.Context) (int, error) {
	lock, err := s.store.TryLock(ctx)
	if errors.Is(err, rebuild.ErrAlreadyRunning) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover rebuilds: %w", err)
	}
	defer lock.Release()
	n, _, err := s.recoverRecords(ctx)
	if err != nil {
		return n, fmt.Errorf("recover rebuilds: %w", err)
	}
	if err := s.catchUpLive(ctx); err != nil {
		return n, fmt.Errorf("recover rebuilds: %w", err)
	}
	return n, nil
}

// RunRecovery runs RecoverInterrupted at once and then every RecoveryInterval until ctx ends,
// whenever there is something to recover: a record whose runner died, or a live index that
// is behind. It looks without the lock first, so replicas do not hold the lock (and refuse
// operators' requests) when there is nothing to do; failures are retried with backoff.
func (s *Service) RunRecovery(ctx context.Context) {
	var wait time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		need, err := s.needsRecovery(ctx)
		if err == nil && need {
			_, err = s.RecoverInterrupted(ctx)
		}
		if err == nil || ctx.Err() != nil {
			wait = s.cfg.RecoveryInterval
			continue
		}
		wait = min(max(2*wait, s.cfg.RecoveryInterval), 5*time.Minute)
		s.log.Warn("rebuild recovery failed; retrying", "err", err, "retry_in", wait)
	}
}

// needsRecovery looks, without the lock, for what RecoverInterrupted would do.
func (s *Service) needsRecovery(ctx context.Context) (bool, error) {
	list, err := s.store.List(ctx, recoverScan)
	if err != nil {
		return false, err
	}
	for _, r := range list {
		if s.RunnerLost(r.Snapshot()) {
			return true, nil
		}
	}
	live, err := s.target.AliasTarget(ctx)
	if errors.Is(err, ErrNoAlias) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, behind, err := s.store.IndexPosition(ctx, live)
	return behind, err
}

// recoverScan is how many of the newest records recovery looks at: only one rebuild runs at
// a time, so an unfinished record is always among the newest.
const recoverScan = 20

// recoverRecords requires the lock. It takes over every unfinished record whose runner's
// heartbeat expired and recovers it; alive is an unfinished record whose runner still beats
// (it lost its lock and is stopping), which is left alone.
func (s *Service) recoverRecords(ctx context.Context) (n int, alive *rebuild.Snapshot, err error) {
	list, err := s.store.List(ctx, recoverScan)
	if err != nil {
		return 0, nil, err
	}
	for _, r := range list {
		snap := r.Snapshot()
		if snap.Phase.Terminal() {
			continue
		}
		now := s.cfg.Now()
		if !snap.RunnerLost(now, s.cfg.HeartbeatTimeout) {
			alive = &snap
			continue
		}
		taken, ok, err := s.store.TakeOver(ctx, snap.ID, s.cfg.Owner, now, now.Add(-s.cfg.HeartbeatTimeout))
		if err != nil {
			return n, alive, err
		}
		if !ok {
			continue // it beat or finished in the meantime
		}
		s.log.Warn("rebuild recovery: took over a rebuild whose runner stopped beating",
			"rebuild", snap.ID, "phase", snap.Phase, "runner", snap.Owner, "last_heartbeat", snap.HeartbeatAt)
		if err := s.recoverRecord(ctx, taken, snap); err != nil {
			return n, alive, err
		}
		n++
	}
	return n, alive, nil
}

// recoverRecord ends a record this process took over; was is the record before the take-over.
// A rebuild that died after its switch is drained and succeeds; any other is failed and its
// unfinished index deleted. (This is where a resumable fill would resume instead: the record
// and the lock are this process's.)
func (s *Service) recoverRecord(ctx context.Context, r *rebuild.Rebuild, was rebuild.Snapshot) error {
	snap := r.Snapshot()
	alias, aerr := s.target.AliasTarget(ctx)
	if snap.ToIndex != "" && aerr == nil && alias == snap.ToIndex && len(snap.DrainFrom) > 0 {
		// It died after the switch: the new index is live but may lack the events the
		// live projector applied to the old one between catch-up and switch. Finish the
		// drain, and the rebuild has done all it set out to do.
		return s.finishDrain(ctx, r)
	}
	if snap.ToIndex != "" && (aerr != nil || alias != snap.ToIndex) {
		if err := s.target.DeleteIndex(ctx, snap.ToIndex); err != nil {
			s.log.Warn("rebuild recovery: could not delete the unfinished index", "index", snap.ToIndex, "err", err)
		} else {
			_ = s.store.ClearIndexPosition(ctx, snap.ToIndex)
		}
	}
	if err := r.Fail(fmt.Sprintf("interrupted in phase %s: the process running it stopped (runner %s, last heartbeat %s)",
		snap.Phase, orUnknown(was.Owner), was.HeartbeatAt.UTC().Format(time.RFC3339)), s.cfg.Now()); err != nil {
		return err
	}
	if err := s.store.Save(ctx, r); err != nil {
		return err
	}
	_ = s.products.Forget(ctx, r.ID())
	s.log.Warn("rebuild recovered as failed", "rebuild", r.ID(), "phase", snap.Phase)
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// finishDrain drains the event log from the record's catch-up position into its (live) new
// index and ends the record: succeeded when the drain completes, failed with the way out when
// it cannot.
func (s *Service) finishDrain(ctx context.Context, r *rebuild.Rebuild) error {
	snap := r.Snapshot()
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	read, err := s.drainLog(dctx, r.ID(), Offsets(snap.DrainFrom), func(docs []product.Snapshot) error {
		return s.target.Write(dctx, snap.ToIndex, docs)
	})
	if err != nil {
		s.log.Error("rebuild recovery: the drain after the switch failed", "rebuild", r.ID(), "index", snap.ToIndex, "err", err)
		if ferr := r.Fail(fmt.Sprintf("interrupted in phase %s after the alias switch; draining on recovery failed (recovery retries it; 'catalog status' reports the live index as behind until then): %v", snap.Phase, err), s.cfg.Now()); ferr != nil {
			return ferr
		}
	} else {
		s.log.Warn("rebuild interrupted after the alias switch: drained on recovery", "rebuild", r.ID(), "index", snap.ToIndex, "events", read)
		if serr := r.Succeed(s.cfg.Now()); serr != nil {
			return serr
		}
		if cerr := s.store.ClearIndexPosition(ctx, snap.ToIndex); cerr != nil {
			return cerr
		}
	}
	if err := s.store.Save(ctx, r); err != nil {
		return err
	}
	_ = s.products.Forget(ctx, r.ID())
	return nil
}

// catchUpLive requires the lock. When the index the alias points at has a recorded position
// (a drain after a rebuild's or a rollback's switch did not finish, or the alias was moved
// onto an old index by hand), it applies the events from there to the log's end: the
// projector has written everything after that end into the index itself, because the alias
// was already on it. Then the index is complete and its position is forgotten.
func (s *Service) catchUpLive(ctx context.Context) error {
	live, err := s.target.AliasTarget(ctx)
	if errors.Is(err, ErrNoAlias) {
		return nil
	}
	if err != nil {
		return err
	}
	pos, behind, err := s.store.IndexPosition(ctx, live)
	if err != nil || !behind {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	read, err := s.drainLog(dctx, "recovery", pos, func(docs []product.Snapshot) error {
		return s.target.Write(dctx, live, docs)
	})
	if err != nil {
		return fmt.Errorf("catch up the live index %s: %w", live, err)
	}
	if err := s.store.ClearIndexPosition(ctx, live); err != nil {
		return err
	}
	s.log.Warn("the live index was behind the event log: caught up", "index", live, "from", pos.String(), "events", read)
	return nil
}

// Wait blocks until the rebuilds this process runs have ended (for graceful shutdown).
func (s *Service) Wait() { s.wg.Wait() }

// CancelAll cancels the rebuilds this process runs; used on shutdown, so they end as
// cancelled with their indices cleaned up instead of being found interrupted later.
func (s *Service) CancelAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.running {
		c()
	}
}

func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
