package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
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
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
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
			created = ix.GetCreated().AsTime().UTC().Format("2006-01-02 15:04:05")
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

func newIndexRollbackCmd(cfg *service.Config) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback",
		Short: "Point the alias back at the previous index, atomically",
		Long: `Moves the alias from the live index to the newest older one in one atomic _aliases request,
so readers switch without a gap. Use it when a rebuild produced a bad index; a later rebuild
or another rollback moves it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeConn, err := dialAdmin(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), adminRPCTimeout)
			defer cancel()
			resp, err := client.RollbackAlias(ctx, &projectionv1.RollbackAliasRequest{})
			if err != nil {
				return adminError(cfg.GRPCAddr, "rollback", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alias rolled back: %s -> %s\n", resp.GetFrom(), resp.GetTo())
			return nil
		},
	}
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
			if keep > 1<<20 {
				return usageError{fmt.Errorf("--keep %d is not a sensible number of indices", keep)}
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
	cmd.Flags().IntVar(&keep, "keep", 2, "old indices to keep besides the live one (0 keeps only the live one)")
	return cmd
}
