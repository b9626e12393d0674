package rebuild

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoPreviousIndex means a rollback has nowhere to go.
var ErrNoPreviousIndex = errors.New("no previous index to roll back to")

// ListIndices lists the alias's indices, newest first.
func (s *Service) ListIndices(ctx context.Context) ([]IndexInfo, error) {
	list, err := s.target.ListIndices(ctx)
	if err != nil {
		return nil, fmt.Errorf("list indices: %w", err)
	}
	return list, nil
}

// RollbackAlias points the alias back at the newest index older than the live one, in one
// atomic switch. It refuses while a rebuild runs, which could switch the alias concurrently.
func (s *Service) RollbackAlias(ctx context.Context) (from, to string, err error) {
	release, err := s.store.TryLock(ctx)
	if err != nil {
		return "", "", fmt.Errorf("rollback: %w", err)
	}
	defer release()
	list, err := s.target.ListIndices(ctx)
	if err != nil {
		return "", "", fmt.Errorf("rollback: %w", err)
	}
	active := -1
	for i, ix := range list {
		if ix.Aliased {
			active = i
			break
		}
	}
	if active < 0 {
		return "", "", fmt.Errorf("rollback: %w", ErrNoAlias)
	}
	if active+1 >= len(list) {
		return "", "", fmt.Errorf("rollback: %w (the live index %s is the oldest)", ErrNoPreviousIndex, list[active].Name)
	}
	from, to = list[active].Name, list[active+1].Name
	if err := s.target.SwitchAlias(ctx, from, to); err != nil {
		return "", "", fmt.Errorf("rollback %s -> %s: %w", from, to, err)
	}
	s.log.Warn("alias rolled back", "from", from, "to", to)
	return from, to, nil
}

// PruneIndices deletes all but the newest keep indices other than the live one; the live
// index is never deleted. It refuses while a rebuild runs.
func (s *Service) PruneIndices(ctx context.Context, keep int) ([]string, error) {
	if keep < 0 {
		return nil, fmt.Errorf("prune: keep must not be negative")
	}
	release, err := s.store.TryLock(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer release()
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
	}
	if len(deleted) > 0 {
		s.log.Info("indices pruned", "deleted", deleted)
	}
	return deleted, nil
}
