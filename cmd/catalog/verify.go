package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
)

// verifyPlainProgressEvery is how often a verify's progress is printed when stderr is not a
// terminal (CI logs): often enough to show it is alive, rarely enough to stay readable.
const verifyPlainProgressEvery = 10 * time.Second

func newVerifyCmd(cfg *service.Config) *cobra.Command {
	var (
		asJSON  bool
		settle  time.Duration
		samples int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify [--json] [--settle=D] [--samples=N] [--timeout=D]",
		Short: "Compare every product in the database with the read model: missing, stale, phantom, resurrected documents",
		Long: `Asks the service on GRPC_ADDR to compare the system of record with the read model: every
product's (id, version, deleted) against the document of the same id in the index the alias
points at, by a merge of two id-ordered streams, so it runs in constant memory at any size.

  missing      a product (live or deleted) has no document
  stale        the document is older than the product
  phantom      a live document has no product
  resurrected  the product is deleted but its document is live: searches show it
  ahead        the document is newer than the product (should not happen)

Live writes make events in flight look like differences, so every difference is read again
from both sides after --settle and only those that persist are reported, with up to
--samples examples per category. Progress goes to stderr.

Exit code 0 when the read model matches, 1 when any difference persists (or the verify could
not run), 2 on bad flags. Fix differences by replaying the products' events or with
'catalog rebuild'.

--json prints one JSON object (stable field names): consistent, alias, index, started_at,
duration_seconds, settle_seconds, products, documents, candidates (differences before the
re-check), differences, rate_per_second, and categories.{missing,stale,phantom,resurrected,
ahead}.{count, samples[{id, database: {version, deleted} | null, index: {version, deleted} |
null}]}.`,
		Example: `  catalog verify
  catalog verify --json | jq '.categories.missing.count'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if settle < 0 || settle > ops.MaxSettle {
				return usageError{fmt.Errorf("--settle must be between 0 and %s, got %s", ops.MaxSettle, settle)}
			}
			if samples < 0 || samples > ops.MaxSamples {
				return usageError{fmt.Errorf("--samples must be between 0 and %d, got %d", ops.MaxSamples, samples)}
			}
			if timeout < 0 {
				return usageError{fmt.Errorf("--timeout must not be negative, got %s", timeout)}
			}
			client, closeConn, err := dialOperations(cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			n := int32(samples)
			rep, err := runVerify(ctx, client, &operationsv1.VerifyRequest{Settle: durationpb.New(settle), Samples: &n},
				newVerifyProgressView(cmd.ErrOrStderr()))
			if err != nil {
				switch {
				case errors.Is(ctx.Err(), context.DeadlineExceeded):
					return fmt.Errorf("verify: gave up after --timeout=%s; the comparison was stopped", timeout)
				case ctx.Err() != nil:
					return errors.New("verify: interrupted; the comparison was stopped")
				}
				return adminError(cfg.GRPCAddr, "verify", err)
			}
			if asJSON {
				err = writeVerifyJSON(cmd.OutOrStdout(), rep)
			} else {
				err = writeVerifyReport(cmd.OutOrStdout(), rep)
			}
			if err != nil {
				return err
			}
			return inconsistentError(rep)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON (stable field names) instead of text")
	fs.DurationVar(&settle, "settle", ops.DefaultSettle, "give differences this long to resolve (events in flight) before they are read again")
	fs.IntVar(&samples, "samples", ops.DefaultSamples, "differences listed per category")
	fs.DurationVar(&timeout, "timeout", 0, "stop the comparison after this long; 0 waits until it ends")
	return cmd
}

// runVerify follows the Verify stream to its report, showing progress on the way.
func runVerify(ctx context.Context, client operationsv1.OperationsClient, req *operationsv1.VerifyRequest, view *verifyProgressView) (*operationsv1.VerifyReport, error) {
	defer view.done()
	stream, err := client.Verify(ctx, req)
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the server ended the verify without a report")
		}
		if err != nil {
			return nil, err
		}
		switch ev := msg.GetEvent().(type) {
		case *operationsv1.VerifyResponse_Progress:
			view.update(ev.Progress)
		case *operationsv1.VerifyResponse_Report:
			return ev.Report, nil
		}
	}
}

// verifyProgressView redraws one line on a terminal and prints a plain line every
// verifyPlainProgressEvery otherwise.
type verifyProgressView struct {
	w        io.Writer
	tty      bool
	drawn    bool
	lastLine time.Time
	now      func() time.Time
}

func newVerifyProgressView(w io.Writer) *verifyProgressView {
	v := &verifyProgressView{w: w, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.tty = true
	}
	return v
}

func (v *verifyProgressView) update(p *operationsv1.VerifyProgress) {
	line := renderVerifyProgress(p)
	if v.tty {
		fmt.Fprint(v.w, "\r"+line+"\x1b[K")
		v.drawn = true
		return
	}
	if now := v.now(); now.Sub(v.lastLine) >= verifyPlainProgressEvery {
		v.lastLine = now
		fmt.Fprintln(v.w, "verify: "+line)
	}
}

// done erases the progress line on a terminal: the report that follows is the result, and a
// stale "recheck ..." line left above or beside it reads as if the verify were still running.
func (v *verifyProgressView) done() {
	if v.drawn {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.drawn = false
	}
}

func renderVerifyProgress(p *operationsv1.VerifyProgress) string {
	phase := strings.ToLower(strings.TrimPrefix(p.GetPhase().String(), "VERIFY_PHASE_"))
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s %s", phase, groupDigits(p.GetProducts()))
	if total := p.GetProductsTotal(); total > 0 {
		fmt.Fprintf(&b, "/%s", groupDigits(total))
	}
	fmt.Fprintf(&b, " products, %s documents, %s candidates", groupDigits(p.GetDocuments()), groupDigits(p.GetCandidates()))
	if secs := p.GetElapsed().AsDuration().Seconds(); secs > 0 {
		fmt.Fprintf(&b, ", %s/s, %s", groupDigits(int64(float64(p.GetProducts())/secs)), shortDuration(p.GetElapsed().AsDuration()))
	}
	return b.String()
}

func categoryLabel(c operationsv1.DifferenceCategory) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "DIFFERENCE_CATEGORY_"))
}

func differences(rep *operationsv1.VerifyReport) int64 {
	var n int64
	for _, c := range rep.GetCategories() {
		n += c.GetCount()
	}
	return n
}

func verifyRate(rep *operationsv1.VerifyReport) float64 {
	if secs := rep.GetDuration().AsDuration().Seconds(); secs > 0 {
		return float64(rep.GetProducts()) / secs
	}
	return 0
}

// inconsistentError is nil when the read model matched; otherwise it names the counts,
// which main prints on stderr before exiting with code 1.
func inconsistentError(rep *operationsv1.VerifyReport) error {
	if rep.GetConsistent() {
		return nil
	}
	var parts []string
	for _, c := range rep.GetCategories() {
		if c.GetCount() > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", groupDigits(c.GetCount()), categoryLabel(c.GetCategory())))
		}
	}
	return fmt.Errorf("verify: %s differences between the database and %s (%s); replay the products' events or run 'catalog rebuild'",
		groupDigits(differences(rep)), rep.GetIndex(), strings.Join(parts, ", "))
}

// The JSON form of a verify report; its field names are part of the CLI's contract
// (documented in the command's help).
type (
	verifyJSON struct {
		Consistent      bool                          `json:"consistent"`
		Alias           string                        `json:"alias"`
		Index           string                        `json:"index"`
		StartedAt       *time.Time                    `json:"started_at"`
		DurationSeconds float64                       `json:"duration_seconds"`
		SettleSeconds   float64                       `json:"settle_seconds"`
		Products        int64                         `json:"products"`
		Documents       int64                         `json:"documents"`
		Candidates      int64                         `json:"candidates"`
		Differences     int64                         `json:"differences"`
		RatePerSecond   float64                       `json:"rate_per_second"`
		Categories      map[string]verifyCategoryJSON `json:"categories"`
	}
	verifyCategoryJSON struct {
		Count   int64              `json:"count"`
		Samples []verifySampleJSON `json:"samples"`
	}
	verifySampleJSON struct {
		ID       string       `json:"id"`
		Database *versionJSON `json:"database"`
		Index    *versionJSON `json:"index"`
	}
	versionJSON struct {
		Version int64 `json:"version"`
		Deleted bool  `json:"deleted"`
	}
)

func verifyToJSON(rep *operationsv1.VerifyReport) verifyJSON {
	out := verifyJSON{Consistent: rep.GetConsistent(), Alias: rep.GetAlias(), Index: rep.GetIndex(), StartedAt: timeOrNil(rep.GetStartedAt()),
		DurationSeconds: rep.GetDuration().AsDuration().Seconds(), SettleSeconds: rep.GetSettle().AsDuration().Seconds(),
		Products: rep.GetProducts(), Documents: rep.GetDocuments(), Candidates: rep.GetCandidates(), Differences: differences(rep),
		RatePerSecond: verifyRate(rep), Categories: map[string]verifyCategoryJSON{}}
	for _, c := range []operationsv1.DifferenceCategory{operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_MISSING,
		operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_STALE, operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_PHANTOM,
		operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_RESURRECTED, operationsv1.DifferenceCategory_DIFFERENCE_CATEGORY_AHEAD} {
		out.Categories[categoryLabel(c)] = verifyCategoryJSON{Samples: []verifySampleJSON{}}
	}
	for _, c := range rep.GetCategories() {
		cj := verifyCategoryJSON{Count: c.GetCount(), Samples: []verifySampleJSON{}}
		for _, d := range c.GetSamples() {
			s := verifySampleJSON{ID: d.GetId()}
			if d.GetInDatabase() {
				s.Database = &versionJSON{Version: d.GetDatabaseVersion(), Deleted: d.GetDatabaseDeleted()}
			}
			if d.GetInIndex() {
				s.Index = &versionJSON{Version: d.GetIndexVersion(), Deleted: d.GetIndexDeleted()}
			}
			cj.Samples = append(cj.Samples, s)
		}
		out.Categories[categoryLabel(c.GetCategory())] = cj
	}
	return out
}

func writeVerifyJSON(w io.Writer, rep *operationsv1.VerifyReport) error {
	return writeJSON(w, verifyToJSON(rep))
}

func writeVerifyReport(w io.Writer, rep *operationsv1.VerifyReport) error {
	var b strings.Builder
	verdict := "CONSISTENT"
	if !rep.GetConsistent() {
		verdict = "DIFFERENCES FOUND"
	}
	fmt.Fprintf(&b, "verify %s -> %s: %s\n", rep.GetAlias(), rep.GetIndex(), verdict)
	fmt.Fprintf(&b, "  %s products and %s documents compared in %s (%s products/s)\n", groupDigits(rep.GetProducts()),
		groupDigits(rep.GetDocuments()), shortDuration(rep.GetDuration().AsDuration()), groupDigits(int64(verifyRate(rep)+0.5)))
	fmt.Fprintf(&b, "  %s differed in the scan; %s still differed after %s\n\n", groupDigits(rep.GetCandidates()),
		groupDigits(differences(rep)), shortDuration(rep.GetSettle().AsDuration()))
	rows := [][]string{{"CATEGORY", "COUNT"}}
	for _, c := range rep.GetCategories() {
		rows = append(rows, []string{categoryLabel(c.GetCategory()), groupDigits(c.GetCount())})
	}
	writeTable(&b, "  ", rows, 0b10)
	version := func(in bool, v int64, deleted bool) string {
		switch {
		case !in:
			return "-"
		case deleted:
			return fmt.Sprintf("v%d deleted", v)
		}
		return fmt.Sprintf("v%d", v)
	}
	for _, c := range rep.GetCategories() {
		if len(c.GetSamples()) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s (%s of %s):\n", categoryLabel(c.GetCategory()), groupDigits(int64(len(c.GetSamples()))), groupDigits(c.GetCount()))
		rows := [][]string{{"ID", "DATABASE", "INDEX"}}
		for _, d := range c.GetSamples() {
			rows = append(rows, []string{d.GetId(), version(d.GetInDatabase(), d.GetDatabaseVersion(), d.GetDatabaseDeleted()),
				version(d.GetInIndex(), d.GetIndexVersion(), d.GetIndexDeleted())})
		}
		writeTable(&b, "  ", rows, 0)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
