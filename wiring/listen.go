package wiring

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/marketplace/catalog/service"
)

// bindHint turns a failed listen into an error that names the setting to change: "address
// already in use" alone leaves an operator guessing which of the process's four listeners
// (HTTP_ADDR, GRPC_ADDR, METRICS_ADDR, EMBEDDED_KAFKA_ADDR) collided. Other errors pass as
// they are.
func bindHint(err error, variable, addr string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%s=%s is in use by another process; set %s to a free host:port: %w", variable, addr, variable, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s=%s cannot be listened on here; set %s to an address of this host (ports below 1024 need privileges): %w", variable, addr, variable, err)
	default:
		return err
	}
}

// listenerRole is a role that listens on the address of one setting, whose bind errors name it.
type listenerRole struct {
	role     service.Role
	variable string
	addr     string
}

// Run runs the role and names the setting when it cannot listen.
func (l listenerRole) Run(ctx context.Context) error {
	return bindHint(l.role.Run(ctx), l.variable, l.addr)
}
