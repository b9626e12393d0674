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
	"github.com/marketplace/catalog/domain/readmodel"
)

// Config tunes the rebuild.
type Config struct {
	// BatchSize is the number of products per chunk of a database fill (each read in one short
	// statement and written in one bulk write; a resumed fill redoes at most the chunks written
	// since the last save).
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
	// RateWindow is how far back the rate of a rebuild's current phase (and so its ETA) looks.
	RateWindow time.Duration
	// MaxPendingDifferences bounds the differences validation holds before it settles them
	// against the event log (see validate): memory stays bounded under any write load.
	MaxPendingDifferences int
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
	if c.RateWindow == 0 {
		c.RateWindow = 30 * time.Second
	}
	if c.MaxPendingDifferences == 0 {
		c.MaxPendingDifferences = 50_000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.BatchSize < 1 || c.ValidatePageSize < 1 || c.SaveInterval <= 0 || c.RateWindow <= 0 || c.MaxPendingDifferences < 1 {
		return errors.New("rebuild: batch size, validate page size, save interval, rate window and pending differences must be positive")
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
	running map[string]context.CancelCauseFunc
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
		running: map[string]context.CancelCauseFunc{}}, nil
}

// Start begins a rebuild from source and returns its record at once; the rebuild runs in
// the background of this process. A second rebuild anywhere in the cluster fails with
// readmodel.ErrAlreadyRunning.
func (s *Service) Start(ctx context.Context, source readmodel.Source) (readmodel.Snapshot, error) {
	if _, err := readmodel.ParseSource(string(source)); err != nil {
		return readmodel.Snapshot{}, err
	}
	lock, err := s.acquire(ctx)
	if err != nil {
		return readmodel.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	now := s.cfg.Now()
	r, err := readmodel.New(newID(now), source, now)
	if err != nil {
		lock.Release()
		return readmodel.Snapshot{}, err
	}
	r.Claim(s.cfg.Owner, now)
	if err := s.store.Create(ctx, r); err != nil {
		lock.Release()
		return readmodel.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	started := r.Snapshot() // before the run owns r
	s.launch(lock, r)
	s.log.Info("rebuild started", "rebuild", started.ID, "source", source)
	return started, nil
}

// launch runs r in the background under lock, which it releases at the end, and keeps the
// record's heartbeat while it runs: a new rebuild, or one this process took over to resume.
// A run stopped by a shutdown or a lost lock hands the record off once its heartbeat has
// stopped, for the next replica that holds the lock to resume.
func (s *Service) launch(lock Lock, r *readmodel.Rebuild) {
	runCtx, cancel := context.WithCancelCause(context.Background())
	s.mu.Lock()
	s.running[r.ID()] = cancel
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
		handOff := s.run(runCtx, r)
		// The heartbeat goes on until the outcome is saved: a runner cleaning up is alive.
		stopBeat()
		<-beating
		if handOff {
			hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.store.HandOff(hctx, r.ID(), s.cfg.Owner); err != nil {
				// Its heartbeat expires instead, and recovery takes it over a few seconds later.
				s.log.Warn("rebuild: could not hand the record off; a replica resumes it once its heartbeat has expired", "rebuild", r.ID(), "err", err)
			}
			hcancel()
		}
		lock.Release()
		s.mu.Lock()
		delete(s.running, r.ID())
		s.mu.Unlock()
		cancel(nil)
	}()
}

// keepAlive beats the record's heartbeat and checks the lock every HeartbeatInterval until
// ctx ends. When the lock's session is gone it stops the run (stop's cause wraps
// readmodel.ErrLockLost): another replica could start a second rebuild now, and it is this
// run that must give way. It goes on beating, so no replica takes the record over while the
// run cleans up. When another runner owns the record, it stops the run with
// readmodel.ErrNotOwner and returns.
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
				if !errors.Is(err, readmodel.ErrLockLost) {
					err = fmt.Errorf("%w: %w", readmodel.ErrLockLost, err)
				}
				s.log.Error("rebuild: the lock's database session is gone; stopping the run so that no second rebuild runs beside it",
					"rebuild", id, "err", err)
				stop(err)
			}
		}
		err := s.store.Heartbeat(cctx, id, s.cfg.Owner, s.cfg.Now())
		cancel()
		switch {
		case errors.Is(err, readmodel.ErrNotOwner):
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
// heartbeat interval): the operation is refused with readmodel.ErrAlreadyRunning until it has.
// A rebuild that recovery resumes gets the lock, and the operation is refused the same way.
func (s *Service) acquire(ctx context.Context) (Lock, error) {
	lock, err := s.tryLock(ctx)
	if err != nil {
		return nil, err
	}
	_, alive, resumed, err := s.recoverRecords(ctx)
	if resumed != nil {
		snap := resumed.Snapshot()
		s.launch(lock, resumed)
		return nil, fmt.Errorf("%w: rebuild %s (phase %s) was interrupted and has just been resumed", readmodel.ErrAlreadyRunning, snap.ID, snap.Phase)
	}
	if err == nil && alive != nil {
		err = fmt.Errorf("%w: rebuild %s (phase %s) of %s is still running although the lock was free: it lost its lock and stops within %s",
			readmodel.ErrAlreadyRunning, alive.ID, alive.Phase, alive.Owner, s.cfg.HeartbeatInterval)
	}
	if err != nil {
		lock.Release()
		return nil, err
	}
	return lock, nil
}

// Get returns a rebuild's record; an empty id means the newest rebuild.
func (s *Service) Get(ctx context.Context, id string) (readmodel.Snapshot, error) {
	if id == "" {
		list, err := s.store.List(ctx, 1)
		if err != nil {
			return readmodel.Snapshot{}, fmt.Errorf("get rebuild: %w", err)
		}
		if len(list) == 0 {
			return readmodel.Snapshot{}, fmt.Errorf("get rebuild: %w", readmodel.ErrNotFound)
		}
		return list[0].Snapshot(), nil
	}
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return readmodel.Snapshot{}, fmt.Errorf("get rebuild %s: %w", id, err)
	}
	return r.Snapshot(), nil
}

// List returns the newest rebuilds first.
func (s *Service) List(ctx context.Context, limit int) ([]readmodel.Snapshot, error) {
	list, err := s.store.List(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("list rebuilds: %w", err)
	}
	out := make([]readmodel.Snapshot, len(list))
	for i, r := range list {
		out[i] = r.Snapshot()
	}
	return out, nil
}

// Cancel stops a running rebuild cleanly (its unfinished index is deleted), wherever it runs:
// this process cancels it at once; another replica notices the request at its next save.
func (s *Service) Cancel(ctx context.Context, id string) (readmodel.Snapshot, error) {
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return readmodel.Snapshot{}, fmt.Errorf("cancel rebuild %s: %w", id, err)
	}
	if r.Phase().Terminal() {
		return r.Snapshot(), fmt.Errorf("cancel rebuild %s: %w", id, readmodel.ErrFinished)
	}
	if err := s.store.RequestCancel(ctx, id); err != nil {
		return readmodel.Snapshot{}, fmt.Errorf("cancel rebuild %s: %w", id, err)
	}
	s.mu.Lock()
	cancel := s.running[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(context.Canceled)
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
		if !errors.Is(err, readmodel.ErrAlreadyRunning) || time.Now().After(deadline) {
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
func (s *Service) RunnerLost(snap readmodel.Snapshot) bool {
	return snap.RunnerLost(s.cfg.Now(), s.cfg.HeartbeatTimeout)
}

// RecoverInterrupted takes over the rebuilds whose runner stopped (no heartbeat within the
// heartbeat timeout, or handed off by a runner that shut down or lost its lock): one that
// stopped after its alias switch is drained and succeeds; one that can go on is resumed from
// its last completed chunk under the same id, in the background of this process, which keeps
// the lock for it; one whose cancellation was requested is cancelled; any other is marked
// failed and its unfinished index deleted. Then, unless a rebuild was resumed, if the live
// index is behind the event log (a drain after a switch did not finish), it catches it up (a
// resumed rebuild holds the lock until it ends, and the catch-up waits for it). It runs only
// when it can take the rebuild lock (nothing else runs) and returns the number of records
// recovered.
func (s *Service) RecoverInterrupted(ctx context.Context) (int, error) {
	lock, err := s.store.TryLock(ctx)
	if errors.Is(err, readmodel.ErrAlreadyRunning) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover rebuilds: %w", err)
	}
	n, _, resumed, err := s.recoverRecords(ctx)
	if resumed != nil {
		snap := resumed.Snapshot()
		s.log.Warn("rebuild resumed", "rebuild", snap.ID, "phase", snap.Phase, "docs_done", snap.DocsDone,
			"docs_total", snap.DocsTotal, "resumes", snap.Resumes)
		s.launch(lock, resumed)
		if err != nil {
			return n, fmt.Errorf("recover rebuilds: %w", err)
		}
		return n, nil
	}
	defer lock.Release()
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
// heartbeat expired (or that was handed off) and recovers it; alive is an unfinished record
// whose runner still beats (it lost its lock and is stopping), which is left alone; resumed is
// a record taken over to be resumed, which the caller must launch under the lock.
func (s *Service) recoverRecords(ctx context.Context) (n int, alive *readmodel.Snapshot, resumed *readmodel.Rebuild, err error) {
	list, err := s.store.List(ctx, recoverScan)
	if err != nil {
		return 0, nil, nil, err
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
			return n, alive, resumed, err
		}
		if !ok {
			continue // it beat or finished in the meantime
		}
		s.log.Warn("rebuild recovery: took over a rebuild whose runner stopped beating",
			"rebuild", snap.ID, "phase", snap.Phase, "runner", orUnknown(snap.Owner), "last_heartbeat", snap.HeartbeatAt)
		resume, err := s.recoverRecord(ctx, taken, snap, resumed == nil)
		if err != nil {
			return n, alive, resumed, err
		}
		if resume {
			resumed = taken
		}
		n++
	}
	return n, alive, resumed, nil
}

// recoverRecord ends or resumes a record this process took over; was is the record before the
// take-over. A rebuild that died after its switch is drained and succeeds. One that can go on
// (it has not switched, knows where its catch-up starts and the alias has not moved) is
// resumed when mayResume: resume is true, and the caller launches r. One whose
// cancellation was requested meanwhile is cancelled. Any other is failed; an unfinished index
// is deleted.
func (s *Service) recoverRecord(ctx context.Context, r *readmodel.Rebuild, was readmodel.Snapshot, mayResume bool) (resume bool, err error) {
	snap := r.Snapshot()
	alias, aerr := s.target.AliasTarget(ctx)
	if snap.ToIndex != "" && aerr == nil && alias == snap.ToIndex && len(snap.DrainFrom) > 0 {
		// It died after the switch: the new index is live but may lack the events the
		// live projector applied to the old one between catch-up and switch. Finish the
		// drain, and the rebuild has done all it set out to do.
		return false, s.finishDrain(ctx, r)
	}
	if aerr != nil && !errors.Is(aerr, ErrNoAlias) {
		return false, aerr // the read model cannot be asked: try again later, record untouched
	}
	cancelled, err := s.store.CancelRequested(ctx, snap.ID)
	if err != nil {
		return false, err
	}
	why := ""
	switch {
	case cancelled:
	case !snap.Resumable():
		why = "it cannot be resumed from phase " + string(snap.Phase)
	case !mayResume:
		why = "another rebuild is resumed"
	case snap.ToIndex != "" && alias != snap.FromIndex:
		why = fmt.Sprintf("the alias moved meanwhile (it points at %q, the rebuild started from %q)", alias, snap.FromIndex)
	default:
		r.Resume(s.cfg.Now())
		if err := s.store.Save(ctx, r); err != nil {
			return false, err
		}
		return true, nil
	}
	if snap.ToIndex != "" && alias != snap.ToIndex {
		if err := s.target.DeleteIndex(ctx, snap.ToIndex); err != nil {
			s.log.Warn("rebuild recovery: could not delete the unfinished index", "index", snap.ToIndex, "err", err)
		} else {
			_ = s.store.ClearIndexPosition(ctx, snap.ToIndex)
		}
	}
	now := s.cfg.Now()
	if cancelled {
		if err := r.Cancel(now); err != nil {
			return false, err
		}
		s.log.Warn("rebuild recovery: the interrupted rebuild's cancellation was requested; cancelled", "rebuild", r.ID(), "phase", snap.Phase)
		return false, s.store.Save(ctx, r)
	}
	if err := r.Fail(fmt.Sprintf("interrupted in phase %s: the process running it stopped (runner %s, last heartbeat %s), and %s",
		snap.Phase, orUnknown(was.Owner), was.HeartbeatAt.UTC().Format(time.RFC3339), why), now); err != nil {
		return false, err
	}
	if err := s.store.Save(ctx, r); err != nil {
		return false, err
	}
	s.log.Warn("rebuild recovered as failed", "rebuild", r.ID(), "phase", snap.Phase, "why", why)
	return false, nil
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
func (s *Service) finishDrain(ctx context.Context, r *readmodel.Rebuild) error {
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
	return s.store.Save(ctx, r)
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

// HandOffAll stops the rebuilds this process runs without ending them, on shutdown: each
// saves its progress, keeps its index and hands its record off, and the next replica that
// holds the lock (another one at once, or this one after its restart) resumes it from its last
// completed chunk. A rebuild past its alias switch finishes its drain first.
func (s *Service) HandOffAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.running {
		c(errHandOff)
	}
}

func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
