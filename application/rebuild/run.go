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

// run executes the strict order of docs/ARCHITECTURE.md, "Rebuild" and records every step. Whatever happens,
// the new index gets its normal settings back and, unless it went live, is deleted; the
// alias is only ever touched by the one atomic switch.
func (s *Service) run(ctx context.Context, r *rebuild.Rebuild) {
	ru := &runner{s: s, r: r, ctx: ctx}
	err := ru.phases()
	now := s.cfg.Now()
	snap := r.Snapshot()
	cause := context.Cause(ctx)
	if errors.Is(err, rebuild.ErrNotOwner) || errors.Is(cause, rebuild.ErrNotOwner) {
		// Another replica took the record over after this runner's heartbeat expired: the
		// record and the index are its now, and cleaning up would undo its work.
		s.log.Error("rebuild: another runner owns the record now; leaving it and its index alone", "rebuild", r.ID(), "phase", snap.Phase)
		return
	}
	// Cleanup uses a fresh context: the rebuild's own may be the thing that was cancelled.
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if snap.ToIndex != "" && !ru.switched && !ru.aliasOn(snap.ToIndex) {
		if derr := s.target.DeleteIndex(cctx, snap.ToIndex); derr != nil {
			s.log.Warn("rebuild: could not delete the unfinished index", "rebuild", r.ID(), "index", snap.ToIndex, "err", derr)
		} else {
			_ = s.store.ClearIndexPosition(cctx, snap.ToIndex)
		}
	}
	_ = s.products.Forget(cctx, r.ID())
	cancelled, _ := s.store.CancelRequested(cctx, r.ID())
	switch {
	case err == nil:
		_ = r.Succeed(now)
		s.log.Info("rebuild succeeded", "rebuild", r.ID(), "index", snap.ToIndex, "previous", snap.FromIndex, "docs", snap.DocsDone)
	case errors.Is(cause, rebuild.ErrLockLost):
		_ = r.Fail(fmt.Sprintf("stopped in phase %s: %v; without the lock nothing keeps a second rebuild out, so this one gave way (start it again)", snap.Phase, cause), now)
		s.log.Error("rebuild stopped: it lost its lock", "rebuild", r.ID(), "phase", snap.Phase, "err", cause)
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
	// Before the switch, the positions: the new index holds every event before the catch-up
	// offsets (and is behind until the drain below), the old one stops receiving events now.
	// Recorded first, so that whatever happens from here on, recovery and a rollback know.
	if err := s.store.SetIndexPosition(ctx, to, caught); err != nil {
		return fmt.Errorf("record the position of %s: %w", to, err)
	}
	undo := s.recordDeparture(ctx, from)
	// The switch is one request whose outcome must be known: it is not cut short by a cancel,
	// and after an error the alias itself says whether it happened.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
	err = s.target.SwitchAlias(sctx, from, to)
	scancel()
	if err != nil {
		if ru.aliasOn(to) {
			s.log.Warn("rebuild: the alias switch reported an error but took effect", "rebuild", r.ID(), "err", err)
		} else {
			undo()
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
		return fmt.Errorf("the alias is on %s, but draining the events since the catch-up failed (recovery retries it; 'catalog status' reports the live index as behind until then): %w", to, err)
	}
	if err := s.store.ClearIndexPosition(dctx, to); err != nil {
		return fmt.Errorf("the alias is on %s and it is drained, but its position could not be cleared: %w", to, err)
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
			read, _, err = s.events.Read(ctx, fromStart(from, final), final, eventsWriter(write))
		}
		if err == nil {
			return read, nil
		}
		if errors.Is(err, ErrNotRetained) {
			return 0, err // retrying cannot bring deleted records back
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

// recordDeparture records where index, which the alias is about to leave, stops receiving
// live events: the projector group's committed offsets, below which the projector has
// applied every event to the live index (lowered to the index's recorded position when it
// was itself still behind). It returns how to take that back if the alias does not move.
// Failing to record it does not keep the alias where it is; a rollback to index is refused
// later instead, because nobody would know where to catch it up from.
func (s *Service) recordDeparture(ctx context.Context, index string) (undo func()) {
	undo = func() {}
	if index == "" {
		return undo
	}
	// The switch follows whatever happens here, even a cancel: the position must be written.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
	defer cancel()
	prev, had, err := s.store.IndexPosition(ctx, index)
	var pos Offsets
	if err == nil {
		pos, err = s.events.Committed(ctx, s.cfg.ProjectorGroup)
	}
	if err == nil && had {
		pos = lowest(prev, pos)
	}
	if err == nil {
		err = s.store.SetIndexPosition(ctx, index, pos)
	}
	if err != nil {
		s.log.Warn("could not record where the index leaving the alias stops receiving events; rolling back to it will be refused",
			"index", index, "err", err)
		return undo
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
		defer cancel()
		var err error
		if had {
			err = s.store.SetIndexPosition(uctx, index, prev)
		} else {
			err = s.store.ClearIndexPosition(uctx, index)
		}
		if err != nil {
			s.log.Warn("could not take back the recorded position of the index the alias stays on; recovery will catch it up", "index", index, "err", err)
		}
	}
}

// fromStart is from with every partition of to that from lacks (one created after the
// position was taken) read from offset 0, its beginning. Read would start such a partition
// at its oldest retained record, and skip silently what retention deleted; from 0 it fails
// with ErrNotRetained instead.
func fromStart(from, to Offsets) Offsets {
	out := make(Offsets, len(to))
	for p := range to {
		out[p] = from[p]
	}
	return out
}

// lowest is, partition by partition, the lower of two positions; a partition only one of them
// has counts as 0 in the other, so the result never claims more than both.
func lowest(a, b Offsets) Offsets {
	out := make(Offsets, max(len(a), len(b)))
	for p, o := range a {
		out[p] = min(o, b[p])
	}
	for p, o := range b {
		out[p] = min(o, a[p])
	}
	return out
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
