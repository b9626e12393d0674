package rebuild

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// runner carries one rebuild through its phases.
type runner struct {
	s        *Service
	r        *readmodel.Rebuild
	ctx      context.Context
	lastSave time.Time
	switched bool
	rate     rateWindow
}

// errHandOff is the cause of a run stopped by HandOffAll: the process is shutting down, and
// the rebuild is left for a replica to resume.
var errHandOff = errors.New("the process running the rebuild is shutting down")

// run executes the strict order of docs/ARCHITECTURE.md, "Rebuild" (create index, capture
// offsets, fill, catch up, validate, switch, drain) and records every step. A record that
// already went part of the way (a resumed rebuild) goes on from its phase: what was done is
// not done again. Whatever happens, the new index gets its normal settings back and, unless it
// went live or the rebuild is handed off, is deleted; the alias is only ever touched by the
// one atomic switch.
//
// handOff is true when the run stopped before the switch because the process is shutting
// down or lost its lock: the record is left unfinished and its index kept, and the caller
// hands the record off so that the next replica holding the lock resumes it.
func (s *Service) run(ctx context.Context, r *readmodel.Rebuild) (handOff bool) {
	ru := &runner{s: s, r: r, ctx: ctx, rate: rateWindow{span: s.cfg.RateWindow}}
	err := ru.phases()
	now := s.cfg.Now()
	snap := r.Snapshot()
	cause := context.Cause(ctx)
	if errors.Is(err, readmodel.ErrNotOwner) || errors.Is(cause, readmodel.ErrNotOwner) {
		// Another replica took the record over after this runner's heartbeat expired: the
		// record and the index are its now, and cleaning up would undo its work.
		s.log.Error("rebuild: another runner owns the record now; leaving it and its index alone", "rebuild", r.ID(), "phase", snap.Phase)
		return false
	}
	// Cleanup uses a fresh context: the rebuild's own may be the thing that was cancelled.
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cancelled, _ := s.store.CancelRequested(cctx, r.ID())
	if err != nil && !cancelled && !ru.switched && (errors.Is(cause, errHandOff) || errors.Is(cause, readmodel.ErrLockLost)) {
		// Stopped from outside, not by a fault of the rebuild: keep its progress and its
		// index for the next runner. The last completed chunk is in r.
		r.SetRate(0)
		if serr := s.store.Save(cctx, r); serr != nil {
			s.log.Error("rebuild: could not record the progress of the interrupted rebuild", "rebuild", r.ID(), "err", serr)
		}
		s.log.Warn("rebuild interrupted; a replica holding the lock resumes it from its last chunk",
			"rebuild", r.ID(), "phase", snap.Phase, "docs_done", snap.DocsDone, "cause", cause)
		return true
	}
	if snap.ToIndex != "" && !ru.switched && !ru.aliasOn(snap.ToIndex) {
		if derr := s.target.DeleteIndex(cctx, snap.ToIndex); derr != nil {
			s.log.Warn("rebuild: could not delete the unfinished index", "rebuild", r.ID(), "index", snap.ToIndex, "err", derr)
		} else {
			_ = s.store.ClearIndexPosition(cctx, snap.ToIndex)
		}
	}
	switch {
	case err == nil:
		_ = r.Succeed(now)
		s.log.Info("rebuild succeeded", "rebuild", r.ID(), "index", snap.ToIndex, "previous", snap.FromIndex,
			"docs", snap.DocsDone, "events", snap.EventsDone, "resumes", snap.Resumes)
	case errors.Is(cause, readmodel.ErrLockLost):
		// Only after the switch: before it, a lost lock hands the rebuild off (above).
		_ = r.Fail(fmt.Sprintf("stopped in phase %s: %v", snap.Phase, cause), now)
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
	return false
}

// phases runs the phases the record has not completed yet. Each step is skipped when the
// record is past it; the phase the record is in is done (again) from its recorded progress.
func (ru *runner) phases() error {
	s, r := ru.s, ru.r

	if err := ru.createIndex(); err != nil {
		return err
	}
	snap := r.Snapshot()
	from, to := snap.FromIndex, snap.ToIndex
	restored := false
	defer func() {
		if !restored {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.target.RestoreSettings(cctx, to)
		}
	}()

	if err := ru.captureOffsets(); err != nil {
		return err
	}
	start := Offsets(r.CatchUpFrom())
	if err := ru.fill(to, start); err != nil {
		return err
	}
	if err := ru.catchUp(to, start); err != nil {
		return err
	}
	if err := s.target.RestoreSettings(ru.ctx, to); err != nil {
		return fmt.Errorf("restore settings of %s: %w", to, err)
	}
	restored = true
	if err := s.target.Refresh(ru.ctx, to); err != nil {
		return fmt.Errorf("refresh %s: %w", to, err)
	}
	if err := ru.validateNewIndex(to); err != nil {
		return err
	}
	// Validation may have caught the index up further than the catch-up did.
	caught := Offsets(r.DrainFrom())
	if err := ru.switchOver(from, to, caught); err != nil {
		return err
	}
	return ru.drainAfterSwitch(to, caught)
}

// createIndex creates the new index and records it with the index the alias is on now
// (phase create-index), unless the record already names its new index.
func (ru *runner) createIndex() error {
	s, r := ru.s, ru.r
	if ok, err := ru.entered(readmodel.PhaseCreateIndex, readmodel.PhaseCapture); !ok {
		return err
	}
	if r.Snapshot().ToIndex != "" {
		return nil
	}
	from, err := s.target.AliasTarget(ru.ctx)
	if errors.Is(err, ErrNoAlias) {
		from = "" // the live index is gone (deleted by accident?): the switch creates the alias
	} else if err != nil {
		return fmt.Errorf("read alias: %w", err)
	}
	to, err := s.target.CreateIndex(ru.ctx)
	if err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	r.SetIndices(from, to)
	return ru.save(true)
}

// captureOffsets records the log's end offsets, from which the catch-up reads (phase
// capture), unless the record is past it.
func (ru *runner) captureOffsets() error {
	s, r := ru.s, ru.r
	if ok, err := ru.entered(readmodel.PhaseCapture, readmodel.PhaseFill); !ok {
		return err
	}
	// Before the first product is read: every change committed from here on, and every
	// change the relay had not forwarded yet, is in the log at or after these offsets.
	start, err := s.events.EndOffsets(ru.ctx)
	if err != nil {
		return fmt.Errorf("capture offsets: %w", err)
	}
	r.SetCatchUpFrom(start)
	return ru.save(true)
}

// fill writes every product into the new index to from the record's source, the database or
// the log up to the captured offsets start (phase fill), unless the record is past it.
func (ru *runner) fill(to string, start Offsets) error {
	r := ru.r
	if ok, err := ru.entered(readmodel.PhaseFill, readmodel.PhaseCatchUp); !ok {
		return err
	}
	var err error
	if r.Source() == readmodel.SourceKafka {
		err = ru.fillFromLog(to, start)
	} else {
		err = ru.fillFromDatabase(to)
	}
	if err != nil {
		return err
	}
	return ru.save(true)
}

// catchUp applies the events from the captured offsets start to the log's current end to the
// new index to (phase catch-up), unless the record is past it.
func (ru *runner) catchUp(to string, start Offsets) error {
	s, r := ru.s, ru.r
	if ok, err := ru.entered(readmodel.PhaseCatchUp, readmodel.PhaseValidate); !ok {
		return err
	}
	caught, err := s.events.EndOffsets(ru.ctx)
	if err != nil {
		return fmt.Errorf("capture offsets: %w", err)
	}
	r.ExpectEvents(span(start, caught))
	if err := ru.applyLog(start, caught, to); err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	r.FinishEvents()
	// Saved with the next phase: if the process dies after the switch, recovery drains from here.
	r.SetDrainFrom(caught)
	return nil
}

// validateNewIndex compares the new index to with the database (phase validate), unless the
// record is past it.
func (ru *runner) validateNewIndex(to string) error {
	s := ru.s
	if ok, err := ru.entered(readmodel.PhaseValidate, readmodel.PhaseSwitch); !ok {
		return err
	}
	if s.cfg.BeforeValidate != nil {
		s.cfg.BeforeValidate(ru.ctx, to)
	}
	return ru.validate(to)
}

// switchOver moves the alias from from to to (phase switch), unless it is on to already;
// from here on the rebuild finishes regardless of a cancel.
func (ru *runner) switchOver(from, to string, caught Offsets) error {
	s, r := ru.s, ru.r
	if err := ru.enter(readmodel.PhaseSwitch); err != nil {
		return err
	}
	if !ru.aliasOn(to) {
		if err := ru.switchAlias(from, to, caught); err != nil {
			return err
		}
	}
	ru.switched = true
	s.log.Info("rebuild: alias switched", "rebuild", r.ID(), "from", from, "to", to)
	return nil
}

// drainAfterSwitch brings the new index, live now, the events from caught on (phase drain),
// clears its position and records the end of the work.
func (ru *runner) drainAfterSwitch(to string, caught Offsets) error {
	s := ru.s
	// The live projector writes through the alias; events it applied to the old index between
	// catch-up and the switch are drained into the new one now.
	// The new index is live now: the drain is what brings it the events the live projector
	// applied to the old index between catch-up and switch, so it is retried until it
	// completes (within DrainTimeout) and a cancel does not stop it.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ru.ctx), s.cfg.DrainTimeout)
	defer dcancel()
	ctx := ru.ctx
	ru.ctx = dctx
	if err := ru.advance(readmodel.PhaseDrain); err != nil {
		return err
	}
	if err := ru.drain(dctx, caught, to); err != nil {
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

// switchAlias records the positions and moves the alias from from to to in one atomic request.
func (ru *runner) switchAlias(from, to string, caught Offsets) error {
	s, ctx := ru.s, ru.ctx
	// Before the switch, the positions: the new index holds every event before the catch-up
	// offsets (and is behind until the drain), the old one stops receiving events now.
	// Recorded first, so that whatever happens from here on, recovery and a rollback know.
	if err := s.store.SetIndexPosition(ctx, to, caught); err != nil {
		return fmt.Errorf("record the position of %s: %w", to, err)
	}
	undo := s.recordDeparture(ctx, from)
	// The switch is one request whose outcome must be known: it is not cut short by a cancel,
	// and after an error the alias itself says whether it happened.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
	err := s.target.SwitchAlias(sctx, from, to)
	scancel()
	if err != nil {
		if ru.aliasOn(to) {
			s.log.Warn("rebuild: the alias switch reported an error but took effect", "rebuild", ru.r.ID(), "err", err)
			return nil
		}
		undo()
		return fmt.Errorf("switch alias %s -> %s: %w", from, to, err)
	}
	return nil
}

// fillFromDatabase writes every product into index in primary-key chunks, each read by one
// short statement (ProductSource.Chunk), going on after the record's last completed chunk. The
// next chunk is read while the current one is written, so the database and the search engine
// work at the same time; memory holds at most three chunks, whatever the catalog's size.
//
// Why chunks of different moments are enough (there is no snapshot): the catch-up offsets were
// captured before the first chunk was read, and the catch-up applies every event from there
// with the aggregate version as external version. A row changed or deleted while (or after)
// its chunk was read has an event at or after those offsets; whichever of the chunk's
// version and the event's reaches the index first, the newer version wins. A row created
// behind the cursor is not read by any chunk, and reaches the index by its event the same way.
func (ru *runner) fillFromDatabase(index string) error {
	s, r := ru.s, ru.r
	snap := r.Snapshot()
	if snap.FillAfter == "" && snap.DocsDone == 0 {
		if total, err := s.products.Count(ru.ctx); err == nil {
			r.Progress(0, total, s.cfg.Now())
		}
	}
	type chunk struct {
		products []product.Snapshot
		err      error
	}
	ctx, cancel := context.WithCancel(ru.ctx)
	chunks := make(chan chunk, 1)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	after, size := snap.FillAfter, s.cfg.BatchSize
	wg.Go(func() {
		defer close(chunks)
		for {
			products, err := s.products.Chunk(ctx, after, size)
			select {
			case chunks <- chunk{products: products, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(products) < size {
				return
			}
			after = products[len(products)-1].ID.String()
		}
	})
	for c := range chunks {
		if c.err != nil {
			return fmt.Errorf("fill from database: %w", c.err)
		}
		if len(c.products) == 0 {
			break
		}
		err := ru.write(ru.ctx, index, c.products, func() error {
			return r.FilledChunk(c.products[len(c.products)-1].ID.String(), int64(len(c.products)), s.cfg.Now())
		})
		if err != nil {
			return fmt.Errorf("fill from database: %w", err)
		}
	}
	return ru.ctx.Err()
}

// write writes docs to index, then lets counted record them and saves the progress (at most
// every SaveInterval): the record never counts what is not in the index.
func (ru *runner) write(ctx context.Context, index string, docs []product.Snapshot, counted func() error) error {
	if err := ru.s.target.Write(ctx, index, docs); err != nil {
		return fmt.Errorf("write %s: %w", index, err)
	}
	if err := counted(); err != nil {
		return err
	}
	return ru.progress()
}

// fillFromLog replays the event log from its beginning (or from the record's fill position,
// for a resumed fill) up to the offsets captured before the fill, into index. Its progress is
// counted in events; the documents it makes are counted by validation.
func (ru *runner) fillFromLog(index string, until Offsets) error {
	s, r := ru.s, ru.r
	snap := r.Snapshot()
	if snap.DocsTotal == 0 {
		if total, err := s.products.Count(ru.ctx); err == nil {
			r.Progress(0, total, s.cfg.Now())
		}
	}
	from := Offsets(snap.FillAt)
	if len(from) == 0 {
		from = nil // from the beginning of the log
		if begin, err := s.events.StartOffsets(ru.ctx); err == nil {
			r.ExpectEvents(span(begin, until))
		}
	}
	_, skipped, err := s.events.Read(ru.ctx, from, until, func(evs []product.Event, next Offsets) error {
		return ru.write(ru.ctx, index, snapshotsOf(evs), func() error {
			r.FilledEvents(next, int64(len(evs)), s.cfg.Now())
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("fill from kafka: %w", err)
	}
	if skipped > 0 {
		s.log.Warn("rebuild: records that are not product events were skipped", "rebuild", r.ID(), "skipped", skipped)
	}
	r.FinishEvents()
	return nil
}

// applyLog reads the log from from to to into index, counting the events.
func (ru *runner) applyLog(from, to Offsets, index string) error {
	s := ru.s
	_, _, err := s.events.Read(ru.ctx, from, to, eventsWriter(func(docs []product.Snapshot) error {
		return ru.write(ru.ctx, index, docs, ru.countEvents(len(docs)))
	}))
	return err
}

// countEvents counts n events applied to the new index.
func (ru *runner) countEvents(n int) func() error {
	return func() error {
		ru.r.AppliedEvents(int64(n), ru.s.cfg.Now())
		return nil
	}
}

// span is the number of offsets from from to to, summed over to's partitions (a partition
// from lacks counts from 0): how many events a Read of that range reads at most.
func span(from, to Offsets) int64 {
	var n int64
	for p, end := range to {
		n += max(end-from[p], 0)
	}
	return n
}

// drain reads the log from the catch-up offsets to its current end into the new index,
// retrying transient failures with backoff until ctx ends.
func (ru *runner) drain(ctx context.Context, from Offsets, index string) error {
	s := ru.s
	_, err := s.drainLog(ctx, ru.r.ID(), from, func(docs []product.Snapshot) error {
		return ru.write(ctx, index, docs, ru.countEvents(len(docs)))
	})
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

// eventsWriter writes the states the events carry; the position is of no use to the caller.
func eventsWriter(write func([]product.Snapshot) error) func([]product.Event, Offsets) error {
	return func(evs []product.Event, _ Offsets) error { return write(snapshotsOf(evs)) }
}

// snapshotsOf is the product states the events carry: the documents they make.
func snapshotsOf(evs []product.Event) []product.Snapshot {
	docs := make([]product.Snapshot, len(evs))
	for i, e := range evs {
		docs[i] = e.State
	}
	return docs
}

// before reports whether the record has not reached phase p yet.
func (ru *runner) before(p readmodel.Phase) bool { return ru.r.Phase().Before(p) }

// entered enters phase p (see enter) unless the record has reached next, the phase after p
// already: then it is false with a nil error, and the caller skips p.
func (ru *runner) entered(p, next readmodel.Phase) (bool, error) {
	if !ru.before(next) {
		return false, nil
	}
	if err := ru.enter(p); err != nil {
		return false, err
	}
	return true, nil
}

// enter starts phase p, or, for a resumed record already in p, goes on with it.
func (ru *runner) enter(p readmodel.Phase) error {
	ru.rate.reset()
	if ru.r.Phase() == p {
		return ru.save(true)
	}
	return ru.advance(p)
}

func (ru *runner) advance(p readmodel.Phase) error {
	if err := ru.ctx.Err(); err != nil {
		return err
	}
	if err := ru.r.Advance(p, ru.s.cfg.Now()); err != nil {
		return err
	}
	return ru.save(true)
}

// progress measures the current phase's rate after a step of its work and saves the record
// (at most every SaveInterval).
func (ru *runner) progress() error {
	done, _ := ru.r.Snapshot().Work()
	ru.r.SetRate(ru.rate.observe(ru.s.cfg.Now(), done))
	return ru.save(false)
}

// save writes the record at most every SaveInterval unless forced, and turns a cancel request
// made on any replica into the cancellation of this run, until the switch: after it, the
// rebuild finishes regardless.
func (ru *runner) save(force bool) error {
	now := ru.s.cfg.Now()
	if !force && now.Sub(ru.lastSave) < ru.s.cfg.SaveInterval {
		return ru.ctx.Err()
	}
	ru.lastSave = now
	if err := ru.s.store.Save(ru.ctx, ru.r); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if ru.switched {
		return ru.ctx.Err()
	}
	if cancel, err := ru.s.store.CancelRequested(ru.ctx, ru.r.ID()); err == nil && cancel {
		return context.Canceled
	}
	return ru.ctx.Err()
}
