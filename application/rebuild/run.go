package rebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/rebuild"
)

// runner carries one rebuild through its phases.
type runner struct {
	s        *Service
	r        *rebuild.Rebuild
	ctx      context.Context
	lastSave time.Time
	switched bool
}

// run executes the strict order of ARCHITECTURE §3 and records every step. Whatever happens,
// the new index gets its normal settings back and, unless it went live, is deleted; the
// alias is only ever touched by the one atomic switch.
func (s *Service) run(ctx context.Context, r *rebuild.Rebuild) {
	ru := &runner{s: s, r: r, ctx: ctx}
	err := ru.phases()
	now := s.cfg.Now()
	snap := r.Snapshot()
	// Cleanup uses a fresh context: the rebuild's own may be the thing that was cancelled.
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if snap.ToIndex != "" && !ru.switched && !ru.aliasOn(snap.ToIndex) {
		if derr := s.target.DeleteIndex(cctx, snap.ToIndex); derr != nil {
			s.log.Warn("rebuild: could not delete the unfinished index", "rebuild", r.ID(), "index", snap.ToIndex, "err", derr)
		}
	}
	_ = s.products.Forget(cctx, r.ID())
	cancelled, _ := s.store.CancelRequested(cctx, r.ID())
	switch {
	case err == nil:
		_ = r.Succeed(now)
		s.log.Info("rebuild succeeded", "rebuild", r.ID(), "index", snap.ToIndex, "previous", snap.FromIndex, "docs", snap.DocsDone)
	case cancelled || (errors.Is(err, context.Canceled) && ctx.Err() != nil):
		_ = r.Cancel(now)
		s.log.Warn("rebuild cancelled", "rebuild", r.ID(), "phase", snap.Phase)
	default:
		_ = r.Fail(err.Error(), now)
		if ru.switched {
			s.log.Error("rebuild failed after the alias switch", "rebuild", r.ID(), "phase", snap.Phase, "alias_on", snap.ToIndex, "err", err)
		} else {
			s.log.Error("rebuild failed; the alias was left where it was", "rebuild", r.ID(), "phase", snap.Phase, "err", err)
		}
	}
	if serr := s.store.Save(cctx, r); serr != nil {
		s.log.Error("rebuild: could not record the outcome", "rebuild", r.ID(), "err", serr)
	}
}

func (ru *runner) phases() error {
	s, r, ctx := ru.s, ru.r, ru.ctx
	src := r.Source()

	if err := ru.advance(rebuild.PhaseCreateIndex); err != nil {
		return err
	}
	from, err := s.target.AliasTarget(ctx)
	if errors.Is(err, ErrNoAlias) {
		from = "" // the live index is gone (deleted by accident?): the switch creates the alias
	} else if err != nil {
		return fmt.Errorf("read alias: %w", err)
	}
	to, err := s.target.CreateIndex(ctx)
	if err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	r.SetIndices(from, to)
	if err := ru.save(true); err != nil {
		return err
	}
	restored := false
	defer func() {
		if !restored {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.target.RestoreSettings(cctx, to)
		}
	}()

	if err := ru.advance(rebuild.PhaseCapture); err != nil {
		return err
	}
	start, err := s.events.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("capture offsets: %w", err)
	}

	if err := ru.advance(rebuild.PhaseFill); err != nil {
		return err
	}
	var done int64
	write := func(docs []product.Snapshot) error {
		if err := s.target.Write(ctx, to, docs); err != nil {
			return fmt.Errorf("write %s: %w", to, err)
		}
		done += int64(len(docs))
		return ru.progress(done)
	}
	switch src {
	case rebuild.SourceKafka:
		if total, err := s.products.Record(ctx, r.ID()); err == nil {
			r.Progress(0, total, s.cfg.Now())
		} else {
			return fmt.Errorf("record database snapshot: %w", err)
		}
		// Every change of the snapshot must be in the log before the catch-up offsets are
		// taken, or validation would find products the log has not delivered yet.
		if err := s.products.AwaitRelayed(ctx, s.cfg.RelayWait); err != nil {
			return fmt.Errorf("wait for the relay: %w", err)
		}
		if _, skipped, err := s.events.Read(ctx, nil, start, eventsWriter(write)); err != nil {
			return fmt.Errorf("fill from kafka: %w", err)
		} else if skipped > 0 {
			s.log.Warn("rebuild: records that are not product events were skipped", "rebuild", r.ID(), "skipped", skipped)
		}
	default:
		if total, err := s.products.Count(ctx); err == nil {
			r.Progress(0, total, s.cfg.Now())
		}
		if _, err := s.products.Stream(ctx, r.ID(), s.cfg.BatchSize, write); err != nil {
			return fmt.Errorf("fill from database: %w", err)
		}
	}
	if err := ru.save(true); err != nil {
		return err
	}

	if err := ru.advance(rebuild.PhaseCatchUp); err != nil {
		return err
	}
	caught, err := s.events.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("capture offsets: %w", err)
	}
	if _, _, err := s.events.Read(ctx, start, caught, eventsWriter(write)); err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	// Saved with the next phase: if the process dies after the switch, recovery drains from here.
	r.SetDrainFrom(caught)
	if err := s.target.RestoreSettings(ctx, to); err != nil {
		return fmt.Errorf("restore settings of %s: %w", to, err)
	}
	restored = true
	if err := s.target.Refresh(ctx, to); err != nil {
		return fmt.Errorf("refresh %s: %w", to, err)
	}

	if err := ru.advance(rebuild.PhaseValidate); err != nil {
		return err
	}
	if s.cfg.BeforeValidate != nil {
		s.cfg.BeforeValidate(ctx, to)
	}
	if err := ru.validate(to); err != nil {
		return err
	}

	if err := ru.advance(rebuild.PhaseSwitch); err != nil {
		return err
	}
	// The switch is one request whose outcome must be known: it is not cut short by a cancel,
	// and after an error the alias itself says whether it happened.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
	err = s.target.SwitchAlias(sctx, from, to)
	scancel()
	if err != nil {
		if ru.aliasOn(to) {
			s.log.Warn("rebuild: the alias switch reported an error but took effect", "rebuild", r.ID(), "err", err)
		} else {
			return fmt.Errorf("switch alias %s -> %s: %w", from, to, err)
		}
	}
	ru.switched = true
	s.log.Info("rebuild: alias switched", "rebuild", r.ID(), "from", from, "to", to)

	// The live projector writes through the alias; events it applied to the old index between
	// catch-up and the switch are drained into the new one now.
	// The new index is live now: the drain is what brings it the events the live projector
	// applied to the old index between catch-up and switch, so it is retried until it
	// completes (within DrainTimeout) and a cancel does not stop it.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer dcancel()
	ru.ctx = dctx
	if err := ru.advance(rebuild.PhaseDrain); err != nil {
		return err
	}
	if err := ru.drain(dctx, caught, write); err != nil {
		return fmt.Errorf("the alias is on %s, but draining the events since the catch-up failed (re-run the rebuild to be sure nothing is missing): %w", to, err)
	}
	if s.cfg.Settle > 0 {
		select {
		case <-ctx.Done():
			return nil // the alias is switched and drained: a cancel now changes nothing
		case <-time.After(s.cfg.Settle):
		}
	}
	return ru.save(true)
}

// drain reads the log from the catch-up offsets to its current end into the new index,
// retrying transient failures with backoff until ctx ends.
func (ru *runner) drain(ctx context.Context, from Offsets, write func([]product.Snapshot) error) error {
	_, err := ru.s.drainLog(ctx, ru.r.ID(), from, write)
	return err
}

// drainLog reads the log from from to its current end through write, retrying transient
// failures with backoff until ctx ends; it returns the events read by the attempt that worked.
func (s *Service) drainLog(ctx context.Context, id string, from Offsets, write func([]product.Snapshot) error) (int64, error) {
	wait := 200 * time.Millisecond
	for {
		final, err := s.events.EndOffsets(ctx)
		var read int64
		if err == nil {
			read, _, err = s.events.Read(ctx, from, final, eventsWriter(write))
		}
		if err == nil {
			return read, nil
		}
		s.log.Warn("rebuild: drain failed, retrying", "rebuild", id, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// aliasOn reports whether the alias points at index now.
func (ru *runner) aliasOn(index string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := ru.s.target.AliasTarget(ctx)
	return err == nil && cur == index
}

func eventsWriter(write func([]product.Snapshot) error) func([]product.Event) error {
	return func(evs []product.Event) error {
		docs := make([]product.Snapshot, len(evs))
		for i, e := range evs {
			docs[i] = e.State
		}
		return write(docs)
	}
}

func (ru *runner) advance(p rebuild.Phase) error {
	if err := ru.ctx.Err(); err != nil {
		return err
	}
	if err := ru.r.Advance(p, ru.s.cfg.Now()); err != nil {
		return err
	}
	return ru.save(true)
}

func (ru *runner) progress(done int64) error {
	snap := ru.r.Snapshot()
	total := snap.DocsTotal
	if done > total {
		total = done
	}
	ru.r.Progress(done, total, ru.s.cfg.Now())
	return ru.save(false)
}

// save writes the record at most every SaveInterval unless forced, and turns a cancel request
// made on any replica into the cancellation of this run.
func (ru *runner) save(force bool) error {
	now := ru.s.cfg.Now()
	if !force && now.Sub(ru.lastSave) < ru.s.cfg.SaveInterval {
		return ru.ctx.Err()
	}
	ru.lastSave = now
	if err := ru.s.store.Save(ru.ctx, ru.r); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if cancel, err := ru.s.store.CancelRequested(ru.ctx, ru.r.ID()); err == nil && cancel {
		return context.Canceled
	}
	return ru.ctx.Err()
}
