package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/service"
)

func newRootCmd() *cobra.Command {
	cfg := &service.Config{}
	var bound *settings
	root := &cobra.Command{
		Use:   "catalog",
		Short: "Product catalog: Postgres system of record, outbox relay to Kafka, search read models",
		Long: `catalog runs the product domain of a marketplace as CQRS on an event log.

Every setting comes from the environment (the names of docs/ARCHITECTURE.md, "Public contract") and can be overridden by the
flag of the same meaning. Values are parsed strictly: a malformed or out-of-range value stops
the command with exit code 2 and one line per bad variable, naming it and its value; an empty
variable counts as unset. Run 'catalog <command> --help' for a command's flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return configError(errors.Join(bound.apply(envLookup), bound.validate(cfg)))
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	bound = bindSettings(root.PersistentFlags(), cfg)
	root.AddCommand(newMigrateCmd(cfg), newServeCmd(cfg), newRelayCmd(cfg), newProjectCmd(cfg), newRebuildCmd(cfg), newIndexCmd(cfg), newDLQCmd(cfg), newStatusCmd(cfg), newVerifyCmd(cfg))
	return root
}

func isFlagError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "invalid argument")
}
