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
	if snap.ToIndex != "" && !ru.switched {
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
		s.log.Error("rebuild failed; the alias was left where it was", "rebuild", r.ID(), "phase", snap.Phase, "err", err)
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
	if err := s.target.SwitchAlias(ctx, from, to); err != nil {
		return fmt.Errorf("switch alias %s -> %s: %w", from, to, err)
	}
	ru.switched = true
	s.log.Info("rebuild: alias switched", "rebuild", r.ID(), "from", from, "to", to)

	// The live projector writes through the alias; events it applied to the old index between
	// catch-up and the switch are drained into the new one now.
	if err := ru.advance(rebuild.PhaseDrain); err != nil {
		return err
	}
	final, err := s.events.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("capture offsets: %w", err)
	}
	if _, _, err := s.events.Read(ctx, caught, final, eventsWriter(write)); err != nil {
		return fmt.Errorf("drain: %w", err)
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
