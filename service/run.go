package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
)

// Role is one long-running part of the process (the API, the relay, ...). Run returns when ctx
// is cancelled, after finishing in-flight work, or early with an error.
type Role interface {
	Run(ctx context.Context) error
}

// NamedRole pairs a role with the name logs use for it.
type NamedRole struct {
	// Name is the role's name in logs.
	Name string
	// Role is the role.
	Role Role
}

// Process is a set of roles that run and stop together.
type Process struct {
	roles []NamedRole
	log   *slog.Logger
}

// NewProcess returns a process running roles.
func NewProcess(log *slog.Logger, roles ...NamedRole) *Process {
	return &Process{roles: roles, log: log}
}

// Run runs every role until ctx is cancelled (a signal) or one role fails; then the others are
// cancelled and awaited, so in-flight requests and relays finish before the process exits.
func (p *Process) Run(ctx context.Context) error {
	b := Build()
	p.log.Info("catalog starting", "version", b.Version, "commit", b.Commit, "build_time", b.BuildTime, "go_version", b.GoVersion)
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range p.roles {
		g.Go(func() error {
			p.log.Info("role starting", "role", r.Name)
			err := r.Role.Run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				p.log.Error("role failed", "role", r.Name, "err", err)
				return fmt.Errorf("%s: %w", r.Name, err)
			}
			p.log.Info("role stopped", "role", r.Name)
			return nil
		})
	}
	return g.Wait()
}
