package rebuild

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BeforeValidate, when set, runs after catch-up and before validation. Tests use it to
	// damage the new index and prove validation catches it; production leaves it nil.
	BeforeValidate func(ctx context.Context, index string)
}

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
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.BatchSize < 1 || c.ValidatePageSize < 1 || c.SaveInterval <= 0 {
		return errors.New("rebuild: batch size, validate page size and save interval must be positive")
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
	release, err := s.store.TryLock(ctx)
	if err != nil {
		return rebuild.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	if _, err := s.recoverLocked(ctx); err != nil {
		release()
		return rebuild.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	r, err := rebuild.New(newID(s.cfg.Now()), source, s.cfg.Now())
	if err != nil {
		release()
		return rebuild.Snapshot{}, err
	}
	if err := s.store.Create(ctx, r); err != nil {
		release()
		return rebuild.Snapshot{}, fmt.Errorf("start rebuild: %w", err)
	}
	started := r.Snapshot() // before the run owns r
	runCtx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.running[r.ID()] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer release()
		defer func() {
			s.mu.Lock()
			delete(s.running, r.ID())
			s.mu.Unlock()
			cancel()
		}()
		s.run(runCtx, r)
	}()
	s.log.Info("rebuild started", "rebuild", started.ID, "source", source)
	return started, nil
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

// RecoverInterrupted marks rebuilds left unfinished by a dead process as failed and deletes
// their unfinished indices. It runs only when it can take the rebuild lock (nothing runs).
func (s *Service) RecoverInterrupted(ctx context.Context) (int, error) {
	release, err := s.store.TryLock(ctx)
	if errors.Is(err, rebuild.ErrAlreadyRunning) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover rebuilds: %w", err)
	}
	defer release()
	return s.recoverLocked(ctx)
}

// recoverLocked requires the lock: with it held, no rebuild runs, so any unfinished record
// belongs to a process that died.
func (s *Service) recoverLocked(ctx context.Context) (int, error) {
	list, err := s.store.List(ctx, 20)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range list {
		if r.Phase().Terminal() {
			continue
		}
		snap := r.Snapshot()
		alias, aerr := s.target.AliasTarget(ctx)
		if snap.ToIndex != "" && aerr == nil && alias == snap.ToIndex && len(snap.DrainFrom) > 0 {
			// It died after the switch: the new index is live but may lack the events the
			// live projector applied to the old one between catch-up and switch. Finish the
			// drain, and the rebuild has done all it set out to do.
			if err := s.finishDrain(ctx, r); err != nil {
				return n, err
			}
			n++
			continue
		}
		if snap.ToIndex != "" && (aerr != nil || alias != snap.ToIndex) {
			if err := s.target.DeleteIndex(ctx, snap.ToIndex); err != nil {
				s.log.Warn("rebuild recovery: could not delete the unfinished index", "index", snap.ToIndex, "err", err)
			}
		}
		if err := r.Fail(fmt.Sprintf("interrupted in phase %s: the process running it stopped", snap.Phase), s.cfg.Now()); err != nil {
			return n, err
		}
		if err := s.store.Save(ctx, r); err != nil {
			return n, err
		}
		_ = s.products.Forget(ctx, r.ID())
		s.log.Warn("rebuild recovered as failed", "rebuild", r.ID(), "phase", snap.Phase)
		n++
	}
	return n, nil
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
		if ferr := r.Fail(fmt.Sprintf("interrupted in phase %s after the alias switch; draining on recovery failed (re-run the rebuild to be sure nothing is missing): %v", snap.Phase, err), s.cfg.Now()); ferr != nil {
			return ferr
		}
	} else {
		s.log.Warn("rebuild interrupted after the alias switch: drained on recovery", "rebuild", r.ID(), "index", snap.ToIndex, "events", read)
		if serr := r.Succeed(s.cfg.Now()); serr != nil {
			return serr
		}
	}
	if err := s.store.Save(ctx, r); err != nil {
		return err
	}
	_ = s.products.Forget(ctx, r.ID())
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
