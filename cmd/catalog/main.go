// Command catalog runs the product catalog: the REST API, the outbox relay and the operator
// commands, one role per subcommand or every role in one process (`catalog serve`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes. Operators' scripts branch on them, so they are part of the CLI's contract.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (a server error, an unhealthy check)
	exitUsage   = 2 // bad flags, arguments or configuration
)

// usageError marks a mistake in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// run executes the command line and returns the exit code. A usage error goes to stderr one
// line per mistake, each prefixed, so that a configuration with three bad variables prints
// three lines a log pipeline keeps apart; other errors print as they are.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ue usageError
	if !errors.As(err, &ue) {
		fmt.Fprintf(stderr, "catalog: %v\n", err)
		if isFlagError(err) {
			return exitUsage
		}
		return exitFailure
	}
	for line := range strings.Lines(err.Error()) {
		fmt.Fprintf(stderr, "catalog: %s\n", strings.TrimRight(line, "\n"))
	}
	return exitUsage
}
