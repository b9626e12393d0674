package rebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Errors of the index operations; the gRPC port maps each to its own reason.
var (
	// ErrNoPreviousIndex means a rollback has nowhere to go.
	ErrNoPreviousIndex = errors.New("no previous index to roll back to")
	// ErrRollbackMappingOutdated means the index a rollback would go back to has an older
	// mapping than this release writes: it cannot be caught up, only rebuilt.
	ErrRollbackMappingOutdated = errors.New("the previous index has an outdated mapping")
	// ErrRollbackPositionUnknown means nobody recorded where the previous index stopped
	// receiving events, so it cannot be caught up.
	ErrRollbackPositionUnknown = errors.New("where the previous index stopped receiving events is unknown")
	// ErrRollbackNotRetained means the events the previous index misses are no longer in
	// the event log.
	ErrRollbackNotRetained = errors.New("the events the previous index misses are no longer retained")
)

// ListIndices lists the alias's indices, newest first.
func (s *Service) ListIndices(ctx context.Context) ([]IndexInfo, error) {
	list, err := s.target.ListIndices(ctx)
	if err != nil {
		return nil, fmt.Errorf("list indices: %w", err)
	}
	return list, nil
}

// Rollback is what RollbackAlias did.
type Rollback struct {
	// From is the index the alias pointed at; To the one it points at now.
	From, To string
	// Since is where To stood in the event log before the rollback: it held every event
	// before these offsets, and had missed everything after (partition -> offset).
	Since Offsets
	// CaughtUp counts the events applied to To before the switch.
	CaughtUp int64
	// Drained counts the events applied to To after the switch: those the live projector
	// wrote to From while the catch-up ran.
	Drained int64
}

// RollbackAlias points the alias back at the newest index older than the live one. That
// index stopped receiving events when the alias left it, so it is first brought up to date,
// the way a rebuild's new index is: the events since its recorded position are applied to it
// while readers stay on the live index, the alias is switched in one atomic request, and the
// events the live projector wrote to the old live index during the catch-up are drained into
// it. Readers never see the stale state. It refuses, changing nothing, when the index cannot
// be brought up to date (an outdated mapping, no recorded position, events past retention),
// and while a rebuild, another rollback or a prune runs.
//
// Cancelling ctx before the switch leaves the alias where it was (the catch-up done so far is
// kept and the next rollback starts after it); from the switch on, the rollback finishes
// regardless, within SwitchTimeout and DrainTimeout.
func (s *Service) RollbackAlias(ctx context.Context) (Rollback, error) {
	lock, err := s.acquire(ctx)
	if err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	defer lock.Release()
	list, err := s.target.ListIndices(ctx)
	if err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	active := -1
	for i, ix := range list {
		if ix.Aliased {
			active = i
			break
		}
	}
	if active < 0 {
		return Rollback{}, fmt.Errorf("rollback: %w", ErrNoAlias)
	}
	if active+1 >= len(list) {
		return Rollback{}, fmt.Errorf("rollback: %w (the live index %s is the oldest)", ErrNoPreviousIndex, list[active].Name)
	}
	prev := list[active+1]
	res := Rollback{From: list[active].Name, To: prev.Name}
	if code := s.target.MappingVersion(); prev.MappingVersion < code {
		return Rollback{}, fmt.Errorf("rollback to %s: %w: it has mapping v%d and this release writes v%d, so it cannot be brought up to date; run 'catalog rebuild' instead",
			prev.Name, ErrRollbackMappingOutdated, prev.MappingVersion, code)
	}
	since, ok, err := s.store.IndexPosition(ctx, prev.Name)
	if err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	if !ok {
		return Rollback{}, fmt.Errorf("rollback to %s: %w (it left the alias before this release recorded positions, or the alias was moved outside catalog), so it cannot be brought up to date; run 'catalog rebuild' instead",
			prev.Name, ErrRollbackPositionUnknown)
	}
	res.Since = since
	write := func(ctx context.Context) func([]product.Snapshot) error {
		return func(docs []product.Snapshot) error { return s.target.Write(ctx, prev.Name, docs) }
	}

	// Catch up while readers stay on the live index.
	caught, err := s.events.EndOffsets(ctx)
	if err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	res.CaughtUp, _, err = s.events.Read(ctx, fromStart(since, caught), caught, eventsWriter(write(ctx)))
	if errors.Is(err, ErrNotRetained) {
		return Rollback{}, fmt.Errorf("rollback to %s: %w: it misses the events from offsets %s on, and the event log no longer holds them all; run 'catalog rebuild' instead: %w",
			prev.Name, ErrRollbackNotRetained, since, err)
	}
	if err != nil {
		return Rollback{}, fmt.Errorf("rollback: catch up %s: %w", prev.Name, err)
	}
	// Progress: a rollback interrupted from here on starts its catch-up at caught.
	if err := s.store.SetIndexPosition(ctx, prev.Name, caught); err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	if err := s.target.Refresh(ctx, prev.Name); err != nil {
		return Rollback{}, fmt.Errorf("rollback: refresh %s: %w", prev.Name, err)
	}
	// A lost lock means another rebuild or rollback may be about to move the alias too.
	if err := lock.Check(ctx); err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Rollback{}, fmt.Errorf("rollback: %w", err)
	}

	undo := s.recordDeparture(ctx, res.From)
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SwitchTimeout)
	err = s.target.SwitchAlias(sctx, res.From, res.To)
	if err != nil {
		if cur, aerr := s.target.AliasTarget(sctx); aerr != nil || cur != res.To {
			scancel()
			undo()
			return Rollback{}, fmt.Errorf("rollback %s -> %s: %w", res.From, res.To, err)
		}
		s.log.Warn("rollback: the alias switch reported an error but took effect", "err", err)
	}
	scancel()
	s.log.Info("alias rolled back; draining the events written to the previous live index meanwhile", "from", res.From, "to", res.To, "caught_up", res.CaughtUp)

	// The index is live now: the drain is retried until it completes and a cancel does not
	// stop it; if it cannot complete, the recorded position makes status report the index as
	// behind and recovery finish the drain.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer dcancel()
	res.Drained, err = s.drainLog(dctx, "rollback", caught, write(dctx))
	if err != nil {
		return res, fmt.Errorf("rollback: the alias is on %s, but draining the events since its catch-up failed (recovery retries it; 'catalog status' reports the index as behind until then): %w", res.To, err)
	}
	if err := s.store.ClearIndexPosition(dctx, res.To); err != nil {
		return res, fmt.Errorf("rollback: the alias is on %s and it is up to date, but its position could not be cleared: %w", res.To, err)
	}
	if s.cfg.Settle > 0 {
		// The scheduled refresh makes the drained writes searchable before the caller hears back.
		select {
		case <-time.After(s.cfg.Settle):
		case <-dctx.Done():
		}
	}
	s.log.Warn("alias rolled back", "from", res.From, "to", res.To, "caught_up", res.CaughtUp, "drained", res.Drained)
	return res, nil
}

// Bounds of a prune's keep, the number of old indices kept besides the live one.
const (
	// DefaultPruneKeep is what a prune keeps when the operator does not say: rollback
	// targets for more than one step back.
	DefaultPruneKeep = 2
	// MaxPruneKeep is the largest keep accepted; a larger number is a typo, not a plan.
	MaxPruneKeep = 1000
)

// PruneIndices deletes all but the newest keep indices other than the live one; the live
// index is never deleted. It refuses while a rebuild runs, and a keep outside 0 to
// MaxPruneKeep with readmodel.ErrInvalid.
func (s *Service) PruneIndices(ctx context.Context, keep int) ([]string, error) {
	if keep < 0 || keep > MaxPruneKeep {
		return nil, fmt.Errorf("prune: %w: keep %d must be from 0 to %d", readmodel.ErrInvalid, keep, MaxPruneKeep)
	}
	lock, err := s.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer lock.Release()
	list, err := s.target.ListIndices(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var deleted []string
	kept := 0
	for _, ix := range list {
		if ix.Aliased {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if err := s.target.DeleteIndex(ctx, ix.Name); err != nil {
			return deleted, fmt.Errorf("prune %s: %w", ix.Name, err)
		}
		deleted = append(deleted, ix.Name)
		if err := s.store.ClearIndexPosition(ctx, ix.Name); err != nil {
			return deleted, fmt.Errorf("prune %s: %w", ix.Name, err)
		}
	}
	if len(deleted) > 0 {
		s.log.Info("indices pruned", "deleted", deleted)
	}
	return deleted, nil
}
