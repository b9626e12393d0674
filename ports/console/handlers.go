package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// pageTimeout bounds the reads behind one page view.
const pageTimeout = 15 * time.Second

// maxForm caps a posted form: the console's forms are small.
const maxForm = 64 << 10

func (s *Server) actionContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
}

// pipelineView is the pipeline page's data.
type pipelineView struct {
	Status      ops.Status
	Err         string
	RelayRate   float64
	ProjectRate float64
	HasRates    bool
}

func (s *Server) pipelinePage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	v := pipelineView{}
	st, err := s.deps.Operations.Status(ctx, ops.DefaultThresholds())
	if err != nil {
		_, msg, internal := classify(err)
		if internal {
			s.log.ErrorContext(ctx, "console status failed", "err", err)
		}
		v.Err = msg
	} else {
		v.Status = st
		cur := sampleOf(st)
		if h := s.history.all(); len(h) > 0 {
			prev := h[len(h)-1]
			if cur.At.Sub(prev.At) < time.Second && len(h) > 1 {
				cur, prev = prev, h[len(h)-2]
			}
			if cur.At.Sub(prev.At) >= time.Second {
				v.RelayRate = rate(prev, cur, func(x sample) int64 { return x.Produced })
				v.ProjectRate = rate(prev, cur, func(x sample) int64 { return x.Committed })
				v.HasRates = true
			}
		}
	}
	s.pages.render(w, r, http.StatusOK, "pipeline", ss, v)
}

func (s *Server) chartsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	h := s.history.all()
	s.pages.render(w, r, http.StatusOK, "charts", ss, struct {
		Charts   []chart
		Samples  int
		Interval time.Duration
	}{charts(h), len(h), s.cfg.SampleInterval})
}

// rebuildsView is the rebuilds page's data.
type rebuildsView struct {
	Running *rebuildView
	History []rebuildView
	Err     string
}

func (s *Server) rebuildsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	list, err := s.deps.Rebuilds.List(ctx, 20)
	if err != nil {
		s.failErr(w, r, ss, "list rebuilds", err)
		return
	}
	v := rebuildsView{}
	now := s.now()
	for _, snap := range list {
		rv := newRebuildView(snap, now)
		if rv.Running && v.Running == nil {
			v.Running = &rv
		}
		v.History = append(v.History, rv)
	}
	s.pages.render(w, r, http.StatusOK, "rebuilds", ss, v)
}

// confirmed reports whether a form's confirmation box was ticked; the pages ask for it
// before every action that changes the read model.
func confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "yes" }

func (s *Server) startRebuild(w http.ResponseWriter, r *http.Request, ss *session) {
	src, err := readmodel.ParseSource(r.PostFormValue("source"))
	if err != nil {
		s.failErr(w, r, ss, "start rebuild", err)
		return
	}
	if !confirmed(r) {
		s.fail(w, r, ss, http.StatusBadRequest, "tick the confirmation box to start a rebuild")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	snap, err := s.deps.Rebuilds.Start(ctx, src)
	if err != nil {
		s.failErr(w, r, ss, "start rebuild", err)
		return
	}
	s.log.InfoContext(ctx, "console: rebuild started", "operator", ss.operator, "rebuild", snap.ID, "source", src)
	http.Redirect(w, r, "/rebuilds/"+url.PathEscape(snap.ID), http.StatusSeeOther)
}

func (s *Server) rebuildPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	snap, err := s.deps.Rebuilds.Get(ctx, r.PathValue("id"))
	if err != nil {
		s.failErr(w, r, ss, "read rebuild", err)
		return
	}
	s.pages.render(w, r, http.StatusOK, "rebuild", ss, newRebuildView(snap, s.now()))
}

func (s *Server) cancelRebuild(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	id := r.PathValue("id")
	if _, err := s.deps.Rebuilds.Cancel(ctx, id); err != nil {
		s.failErr(w, r, ss, "cancel rebuild", err)
		return
	}
	s.log.InfoContext(ctx, "console: rebuild cancelled", "operator", ss.operator, "rebuild", id)
	http.Redirect(w, r, "/rebuilds/"+url.PathEscape(id), http.StatusSeeOther)
}

// indicesView is the indices page's data.
type indicesView struct {
	Indices     []rebuild.IndexInfo
	CodeMapping int
	Notice      string
	Deleted     []string
	// KeepDefault and KeepMax bound the prune form as the use case bounds keep.
	KeepDefault, KeepMax int
}

func (s *Server) indices(ctx context.Context) (indicesView, error) {
	list, err := s.deps.Rebuilds.ListIndices(ctx)
	if err != nil {
		return indicesView{}, err
	}
	v := indicesView{Indices: list, KeepDefault: rebuild.DefaultPruneKeep, KeepMax: rebuild.MaxPruneKeep}
	if st, err := s.deps.Operations.Status(ctx, ops.DefaultThresholds()); err == nil {
		v.CodeMapping = st.ReadModel.CodeMappingVersion
	}
	return v, nil
}

func (s *Server) indicesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	v, err := s.indices(ctx)
	if err != nil {
		s.failErr(w, r, ss, "list indices", err)
		return
	}
	s.pages.render(w, r, http.StatusOK, "indices", ss, v)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request, ss *session) {
	if !confirmed(r) {
		s.fail(w, r, ss, http.StatusBadRequest, "tick the confirmation box to roll the alias back")
		return
	}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	rb, err := s.deps.Rebuilds.RollbackAlias(ctx)
	if err != nil {
		s.failErr(w, r, ss, "rollback", err)
		return
	}
	s.log.InfoContext(ctx, "console: alias rolled back", "operator", ss.operator, "from", rb.From, "to", rb.To, "caught_up", rb.CaughtUp)
	v, err := s.indices(ctx)
	if err != nil {
		s.failErr(w, r, ss, "list indices", err)
		return
	}
	v.Notice = fmt.Sprintf("The alias moved from %s back to %s, caught up with %d events.", rb.From, rb.To, rb.CaughtUp)
	s.pages.render(w, r, http.StatusOK, "indices", ss, v)
}

func (s *Server) prune(w http.ResponseWriter, r *http.Request, ss *session) {
	keep, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("keep")))
	if err != nil || keep < 0 || keep > rebuild.MaxPruneKeep {
		s.fail(w, r, ss, http.StatusBadRequest, fmt.Sprintf("keep must be a whole number from 0 to %d", rebuild.MaxPruneKeep))
		return
	}
	if !confirmed(r) {
		s.fail(w, r, ss, http.StatusBadRequest, "tick the confirmation box to delete old indices")
		return
	}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	deleted, err := s.deps.Rebuilds.PruneIndices(ctx, keep)
	if err != nil {
		s.failErr(w, r, ss, "prune", err)
		return
	}
	s.log.InfoContext(ctx, "console: indices pruned", "operator", ss.operator, "keep", keep, "deleted", deleted)
	v, err := s.indices(ctx)
	if err != nil {
		s.failErr(w, r, ss, "list indices", err)
		return
	}
	v.Notice, v.Deleted = fmt.Sprintf("Deleted %d indices.", len(deleted)), deleted
	s.pages.render(w, r, http.StatusOK, "indices", ss, v)
}

// dlqLimit is how many dead letters the list shows (the newest).
const dlqLimit = 500

// selection is how a DLQ form picks messages: refs, or a filter, or all of them.
type selection struct {
	Refs      []string
	Class     string
	Product   string
	Since     string
	Until     string
	All       bool
	Unhandled bool
}

func (sel selection) filter() (ops.DLQFilter, error) {
	var f ops.DLQFilter
	for _, c := range strings.Split(sel.Class, ",") {
		if c = strings.TrimSpace(c); c != "" {
			f.Classes = append(f.Classes, c)
		}
	}
	f.AggregateID = strings.TrimSpace(sel.Product)
	var err error
	if f.Since, err = parseTime("since", sel.Since); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("until", sel.Until); err != nil {
		return f, err
	}
	return f, nil
}

func (sel selection) refs() ([]ops.DLQRef, error) {
	var out []ops.DLQRef
	for _, s := range sel.Refs {
		ref, err := ops.ParseDLQRef(s)
		if err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, nil
}

// Query is the selection as a query string, for links that keep the filters.
func (sel selection) Query() string {
	q := url.Values{}
	for k, v := range map[string]string{"class": sel.Class, "product": sel.Product, "since": sel.Since, "until": sel.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// parseTime reads a filter time: RFC 3339, or a browser's datetime-local value taken as UTC.
func parseTime(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %s %q: want a time such as 2026-01-02T15:04 (UTC) or RFC 3339", ops.ErrDLQInvalidFilter, name, v)
}

func selectionOf(values url.Values) selection {
	return selection{Refs: values["ref"], Class: values.Get("class"), Product: values.Get("product"), Since: values.Get("since"),
		Until: values.Get("until"), All: values.Get("all") == "yes", Unhandled: values.Get("unhandled") != "no"}
}

// dlqGroup is the dead letters of one cause: one row however many messages share it.
type dlqGroup struct {
	Class    string
	Reason   string
	Count    int
	First    time.Time
	Last     time.Time
	Products []string
	More     int
}

// dlqView is the dead letters page's data.
type dlqView struct {
	Selection selection
	Topic     string
	Messages  []ops.DLQMessage
	Matched   int
	Groups    []dlqGroup
	Audit     []ops.ReplayAuditEntry
	AuditErr  string
}

func groupDLQ(ms []ops.DLQMessage) []dlqGroup {
	idx := map[[2]string]int{}
	var groups []dlqGroup
	for _, m := range ms {
		key := [2]string{m.Class, m.Reason}
		i, ok := idx[key]
		if !ok {
			i = len(groups)
			idx[key] = i
			groups = append(groups, dlqGroup{Class: m.Class, Reason: m.Reason, First: m.FailedAt})
		}
		g := &groups[i]
		g.Count++
		if m.FailedAt.Before(g.First) {
			g.First = m.FailedAt
		}
		if m.FailedAt.After(g.Last) {
			g.Last = m.FailedAt
		}
		if m.AggregateID != "" && len(g.Products) < 5 && !contains(g.Products, m.AggregateID) {
			g.Products = append(g.Products, m.AggregateID)
		} else if m.AggregateID != "" && !contains(g.Products, m.AggregateID) {
			g.More++
		}
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].Count > groups[j].Count })
	return groups
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	sel := selectionOf(r.URL.Query())
	f, err := sel.filter()
	if err != nil {
		s.failErr(w, r, ss, "list dead letters", err)
		return
	}
	res, err := s.deps.DeadLetters.List(ctx, f, dlqLimit, sel.Unhandled)
	if err != nil {
		s.failErr(w, r, ss, "list dead letters", err)
		return
	}
	v := dlqView{Selection: sel, Messages: res.Messages, Matched: res.Matched, Groups: groupDLQ(res.Messages)}
	// Newest first on the page: the latest failures are what an operator looks for.
	for i, j := 0, len(v.Messages)-1; i < j; i, j = i+1, j-1 {
		v.Messages[i], v.Messages[j] = v.Messages[j], v.Messages[i]
	}
	if v.Audit, err = s.deps.DeadLetters.Audit(ctx, ops.AuditFilter{Limit: 50}); err != nil {
		_, v.AuditErr, _ = classify(err)
	}
	s.pages.render(w, r, http.StatusOK, "dlq", ss, v)
}

func (s *Server) dlqMessagePage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	ref, err := ops.ParseDLQRef(r.PathValue("ref"))
	if err != nil {
		s.failErr(w, r, ss, "show dead letter", err)
		return
	}
	m, err := s.deps.DeadLetters.Show(ctx, ref)
	if err != nil {
		s.failErr(w, r, ss, "show dead letter", err)
		return
	}
	audit, err := s.deps.DeadLetters.Audit(ctx, ops.AuditFilter{Ref: &ref, Limit: 20})
	v := struct {
		Message  ops.DLQMessage
		Payload  string
		Audit    []ops.ReplayAuditEntry
		AuditErr string
	}{Message: m, Payload: string(m.Payload), Audit: audit}
	if err != nil {
		_, v.AuditErr, _ = classify(err)
	}
	s.pages.render(w, r, http.StatusOK, "dlq_message", ss, v)
}

// dlqActionView is the result page of a replay or resolve, dry run or not.
type dlqActionView struct {
	Action    string
	DryRun    bool
	Selection selection
	Reason    string
	Force     bool
	Rows      []dlqOutcomeRow
	Summary   string
	Count     int
}

// dlqOutcomeRow is one message's outcome.
type dlqOutcomeRow struct {
	Ref     string
	Class   string
	Product string
	Action  string
	Detail  string
}

// dlqForm reads what a replay or resolve form selects and whether it is the dry run. The
// real run needs the confirmation that only the dry run's page carries; a bad selection or
// a missing confirmation is answered here and ok is false.
func (s *Server) dlqForm(w http.ResponseWriter, r *http.Request, ss *session, op string) (sel selection, f ops.DLQFilter, refs []ops.DLQRef, dry, ok bool) {
	sel = selectionOf(r.PostForm)
	f, err := sel.filter()
	if err == nil {
		refs, err = sel.refs()
	}
	if err != nil {
		s.failErr(w, r, ss, op, err)
		return sel, f, nil, false, false
	}
	dry = r.PostFormValue("dry_run") != "no"
	if !dry && !confirmed(r) {
		s.fail(w, r, ss, http.StatusBadRequest, "a "+op+" runs after its dry run: tick the confirmation box on the dry run's page")
		return sel, f, nil, false, false
	}
	return sel, f, refs, dry, true
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, ss *session) {
	sel, f, refs, dry, ok := s.dlqForm(w, r, ss, "replay")
	if !ok {
		return
	}
	req := ops.ReplayRequest{Refs: refs, Filter: f, All: sel.All, DryRun: dry, Force: r.PostFormValue("force") == "yes", Operator: ss.operator}
	v := dlqActionView{Action: "replay", DryRun: dry, Selection: sel, Force: req.Force}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	sum, err := s.deps.DeadLetters.Replay(ctx, req, func(o ops.ReplayOutcome) {
		row := dlqOutcomeRow{Ref: o.Message.Ref.String(), Class: o.Message.Class, Product: o.Message.AggregateID, Action: string(o.Action)}
		switch {
		case o.Err != nil:
			_, row.Detail, _ = classify(o.Err)
		case o.Action == ops.ReplayActionReplayed:
			row.Detail = fmt.Sprintf("to partition %d offset %d (audit #%d)", o.Target.Partition, o.Target.Offset, o.AuditID)
		case o.Previous != nil:
			row.Detail = fmt.Sprintf("%s by %s at %s (audit #%d)", o.Previous.Action, o.Previous.Operator, o.Previous.ReplayedAt.UTC().Format(time.RFC3339), o.Previous.ID)
		}
		if o.Action == ops.ReplayActionWouldReplay || o.Action == ops.ReplayActionReplayed {
			v.Count++
		}
		v.Rows = append(v.Rows, row)
	})
	if err != nil {
		s.failErr(w, r, ss, "replay", err)
		return
	}
	if dry {
		v.Summary = fmt.Sprintf("Dry run: %d of %d selected messages would be replayed; nothing was published.", sum.Replayed, sum.Selected)
	} else {
		v.Summary = fmt.Sprintf("Replayed %d of %d selected messages, %d failed (run %s, recorded in the audit trail as %s).", sum.Replayed, sum.Selected, sum.Failed, sum.RunID, ss.operator)
		s.log.InfoContext(ctx, "console: dead letters replayed", "operator", ss.operator, "run", sum.RunID, "replayed", sum.Replayed, "failed", sum.Failed)
	}
	s.pages.render(w, r, http.StatusOK, "dlq_action", ss, v)
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request, ss *session) {
	sel, f, refs, dry, ok := s.dlqForm(w, r, ss, "resolve")
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	req := ops.ResolveRequest{Refs: refs, Filter: f, All: sel.All, DryRun: dry, Operator: ss.operator, Reason: reason}
	v := dlqActionView{Action: "resolve", DryRun: dry, Selection: sel, Reason: reason}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	sum, err := s.deps.DeadLetters.Resolve(ctx, req, func(o ops.ResolveOutcome) {
		row := dlqOutcomeRow{Ref: o.Message.Ref.String(), Class: o.Message.Class, Product: o.Message.AggregateID, Action: string(o.Action)}
		if o.Previous != nil {
			row.Detail = fmt.Sprintf("%s by %s at %s (audit #%d)", o.Previous.Action, o.Previous.Operator, o.Previous.ReplayedAt.UTC().Format(time.RFC3339), o.Previous.ID)
		} else if o.AuditID > 0 {
			row.Detail = fmt.Sprintf("audit #%d", o.AuditID)
		}
		if o.Action == ops.ResolveActionWouldResolve || o.Action == ops.ResolveActionResolved {
			v.Count++
		}
		v.Rows = append(v.Rows, row)
	})
	if err != nil {
		s.failErr(w, r, ss, "resolve", err)
		return
	}
	if dry {
		v.Summary = fmt.Sprintf("Dry run: %d of %d selected messages would be resolved; nothing was recorded.", sum.Resolved, sum.Selected)
	} else {
		v.Summary = fmt.Sprintf("Resolved %d of %d selected messages (run %s, recorded in the audit trail as %s).", sum.Resolved, sum.Selected, sum.RunID, ss.operator)
		s.log.InfoContext(ctx, "console: dead letters resolved", "operator", ss.operator, "run", sum.RunID, "resolved", sum.Resolved)
	}
	s.pages.render(w, r, http.StatusOK, "dlq_action", ss, v)
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request, ss *session) {
	s.pages.render(w, r, http.StatusOK, "verify", ss, struct {
		Report *ops.VerifyReport
		Settle time.Duration
	}{nil, ops.DefaultSettle})
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, ss *session) {
	req := ops.DefaultVerifyRequest()
	if v := strings.TrimSpace(r.PostFormValue("settle")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.fail(w, r, ss, http.StatusBadRequest, fmt.Sprintf("settle %q: want a duration such as 3s", v))
			return
		}
		req.Settle = d
	}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	rep, err := s.deps.Operations.Verify(ctx, req, nil)
	if err != nil {
		s.failErr(w, r, ss, "verify", err)
		return
	}
	s.log.InfoContext(ctx, "console: verify", "operator", ss.operator, "consistent", rep.Consistent())
	s.pages.render(w, r, http.StatusOK, "verify", ss, struct {
		Report *ops.VerifyReport
		Settle time.Duration
	}{&rep, req.Settle})
}
