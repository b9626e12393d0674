package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/service"
)

func newIndexCmd(cfg *service.Config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "index",
		Short: "List, roll back and prune the versioned indices behind the search alias (via GRPC_ADDR)",
		Long: `Every rebuild creates a new versioned index ({alias}_v{M}_{YYYYMMDD}_{HHMMSS}) and moves the
alias to it; the previous ones are kept so that a bad rebuild can be rolled back in one atomic
alias switch. These commands ask the service on GRPC_ADDR; rollback and prune are refused
while a rebuild runs.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newIndexListCmd(cfg), newIndexRollbackCmd(cfg), newIndexPruneCmd(cfg))
	return cmd
}

// indexJSON is the --json shape of an index: a stable, snake_case contract for scripts,
// independent of the protobuf's JSON mapping (which renders int64 as strings).
type indexJSON struct {
	Name           string    `json:"name"`
	MappingVersion int32     `json:"mapping_version"`
	LiveDocs       int64     `json:"live_docs"`
	Tombstones     int64     `json:"tombstones"`
	Created        time.Time `json:"created"`
	Aliased        bool      `json:"aliased"`
}

func newIndexListCmd(cfg *service.Config) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the alias's indices, newest first; * marks the live one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), adminRPCTimeout)
			defer cancel()
			resp, err := client.ListIndices(ctx, &projectionv1.ListIndicesRequest{})
			if err != nil {
				return adminError(cfg.GRPCAddr, "list indices", err)
			}
			if asJSON {
				return writeIndicesJSON(cmd.OutOrStdout(), resp.GetIndices())
			}
			if len(resp.GetIndices()) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no indices behind the alias: 'catalog rebuild' creates one")
				return nil
			}
			return writeIndicesTable(cmd.OutOrStdout(), resp.GetIndices())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	return cmd
}

func writeIndicesJSON(w io.Writer, list []*projectionv1.Index) error {
	out := make([]indexJSON, len(list))
	for i, ix := range list {
		out[i] = indexJSON{Name: ix.GetName(), MappingVersion: ix.GetMappingVersion(), LiveDocs: ix.GetLiveDocs(),
			Tombstones: ix.GetTombstones(), Aliased: ix.GetAliased()}
		if ix.GetCreated() != nil {
			out[i].Created = ix.GetCreated().AsTime().UTC()
		}
	}
	return writeJSON(w, out)
}

// writeIndicesTable aligns names and dates left and counts right, so digits line up.
func writeIndicesTable(w io.Writer, list []*projectionv1.Index) error {
	header := []string{"NAME", "MAPPING", "LIVE", "TOMBSTONES", "CREATED (UTC)"}
	rows := make([][]string, len(list))
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for r, ix := range list {
		created := "-"
		if ix.GetCreated() != nil {
			created = ix.GetCreated().AsTime().UTC().Format(timeLayout)
		}
		rows[r] = []string{ix.GetName(), fmt.Sprintf("v%d", ix.GetMappingVersion()),
			groupDigits(ix.GetLiveDocs()), groupDigits(ix.GetTombstones()), created}
		for i, cell := range rows[r] {
			widths[i] = max(widths[i], len(cell))
		}
	}
	line := func(marker string, cells []string) string {
		return fmt.Sprintf("%s %-*s  %*s  %*s  %*s  %-*s", marker, widths[0], cells[0], widths[1], cells[1],
			widths[2], cells[2], widths[3], cells[3], widths[4], cells[4])
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(line(" ", header), " ") + "\n")
	for r, ix := range list {
		marker := " "
		if ix.GetAliased() {
			marker = "*"
		}
		b.WriteString(strings.TrimRight(line(marker, rows[r]), " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// rollbackTimeout is how long `catalog index rollback` waits by default: the catch-up reads
// every event since the previous index left the alias, which after a recent rebuild takes
// seconds, after days of traffic minutes.
const rollbackTimeout = 10 * time.Minute

func newIndexRollbackCmd(cfg *service.Config) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback [--timeout=D]",
		Short: "Point the alias back at the previous index, brought up to date first",
		Long: `Moves the alias from the live index to the newest older one: the way back from a rebuild
that produced a bad index. The older index stopped receiving events when the alias left it,
so it is brought up to date before it serves, the way a rebuild's new index is: the events
since it left the alias are read from the event log and applied to it while searches stay on
the live index, the alias moves in one atomic _aliases request, and the events written to the
live index meanwhile are drained into it. Searches never see the older index's stale state.

The rollback is refused, and nothing changes, when the older index cannot be brought up to
date: its mapping is older than the running release's, nobody recorded where it stopped
receiving events (it left the alias before this release, or the alias was moved by hand), or
the events it misses are past the topic's retention. Run 'catalog rebuild' instead then. It is
also refused while a rebuild, another rollback or a prune runs.

Prints how many events were caught up. Leaving before the switch (Ctrl-C, --timeout) leaves
the alias where it was; the next rollback goes on from the catch-up done so far.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageError{fmt.Errorf("--timeout must be positive, got %s", timeout)}
			}
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := client.RollbackAlias(ctx, &projectionv1.RollbackAliasRequest{})
			if err != nil {
				if status.Code(err) == codes.DeadlineExceeded {
					return fmt.Errorf("rollback: no answer within --timeout=%s; if the catch-up had not finished the alias was not moved ('catalog index list' shows where it is)", timeout)
				}
				return adminError(cfg.GRPCAddr, "rollback", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alias rolled back: %s -> %s\n", resp.GetFrom(), resp.GetTo())
			fmt.Fprintf(cmd.ErrOrStderr(), "%s brought up to date first: %s %s since it left the alias caught up, %s more drained after the switch\n",
				resp.GetTo(), groupDigits(resp.GetCaughtUp()), plural(int(min(resp.GetCaughtUp(), 2)), "event", "events"), groupDigits(resp.GetDrained()))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", rollbackTimeout, "how long to wait for the catch-up and the switch")
	return cmd
}

func newIndexPruneCmd(cfg *service.Config) *cobra.Command {
	var keep int
	cmd := &cobra.Command{
		Use:   "prune [--keep N]",
		Short: "Delete old indices, keeping the live one and the newest N others (rollback targets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep < 0 {
				return usageError{fmt.Errorf("--keep must not be negative, got %d", keep)}
			}
			if keep > rebuild.MaxPruneKeep {
				return usageError{fmt.Errorf("--keep %d is more than %d indices", keep, rebuild.MaxPruneKeep)}
			}
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), adminRPCTimeout)
			defer cancel()
			resp, err := client.PruneIndices(ctx, &projectionv1.PruneIndicesRequest{Keep: int32(keep)})
			if err != nil {
				return adminError(cfg.GRPCAddr, "prune", err)
			}
			if len(resp.GetDeleted()) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "nothing to prune")
				return nil
			}
			for _, name := range resp.GetDeleted() {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", name)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&keep, "keep", rebuild.DefaultPruneKeep, "old indices to keep besides the live one (0 keeps only the live one)")
	return cmd
}
