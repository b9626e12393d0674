package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// pageNames are the templates under assets/templates besides the layout.
var pageNames = []string{"login", "error", "pipeline", "charts", "rebuilds", "rebuild", "indices", "dlq", "dlq_message", "dlq_action", "verify"}

// pages holds one parsed template set per page: the layout with the page's blocks.
type pages struct {
	byName map[string]*template.Template
	log    *slog.Logger
}

var funcs = template.FuncMap{
	"dur": formatDuration,
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"tsp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"severity": func(s ops.Severity) string {
		if s >= ops.SeverityError {
			return "red"
		}
		return "amber"
	},
	"errtext": func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	},
	"terminal": func(p readmodel.Phase) bool { return p.Terminal() },
}

func parsePages(log *slog.Logger) (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, log: log}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/templates/layout.html", "assets/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// view is what the layout sees; Data is the page's own.
type view struct {
	Page     string
	Operator string
	CSRF     string
	LoggedIn bool
	Notice   string
	Data     any
}

// render writes page with data. A request with ?fragment=1 gets the page's "live" block
// alone: the console's script swaps it in to refresh a page without reloading it.
func (p *pages) render(w http.ResponseWriter, r *http.Request, status int, page string, ss *session, data any) {
	t := p.byName[page]
	v := view{Page: page, Data: data}
	if ss != nil {
		v.Operator, v.CSRF, v.LoggedIn = ss.operator, ss.csrf, true
	}
	name := "layout"
	if r.URL.Query().Get("fragment") == "1" && t.Lookup("live") != nil {
		name = "live"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		p.log.ErrorContext(r.Context(), "console page could not be rendered", "page", page, "err", err)
		http.Error(w, "the page could not be rendered; the cause is in the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Title   string
	Message string
	Back    string
}

// fail renders the error page with a message meant for the operator.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, status int, msg string) {
	// Back to the page the form was on, when the browser says it was one of the console's.
	back := "/"
	if u, err := url.Parse(r.Header.Get("Referer")); err == nil && u.Host == r.Host && strings.HasPrefix(u.Path, "/") {
		back = u.RequestURI()
	}
	s.pages.render(w, r, status, "error", ss, errorView{Status: status, Title: http.StatusText(status), Message: msg, Back: back})
}

// internalMessage is all a page says of an unexpected failure: causes can carry hostnames,
// SQL or credentials in URLs. The cause is logged.
const internalMessage = "internal error; the cause is in the server log"

// classify maps a use case's error to a status and what the operator is told. It is the
// console's one place that knows which error means what, as mapError is the gRPC port's.
func classify(err error) (status int, msg string, internal bool) {
	switch {
	case errors.Is(err, readmodel.ErrInvalid), errors.Is(err, ops.ErrInvalid), errors.Is(err, ops.ErrDLQInvalidFilter),
		errors.Is(err, ops.ErrDLQInvalidRef), errors.Is(err, ops.ErrReplayInvalidRequest), errors.Is(err, ops.ErrResolveInvalidRequest):
		return http.StatusBadRequest, err.Error(), false
	case errors.Is(err, readmodel.ErrNotFound), errors.Is(err, ops.ErrDLQMessageNotFound):
		return http.StatusNotFound, err.Error(), false
	case errors.Is(err, readmodel.ErrAlreadyRunning), errors.Is(err, readmodel.ErrFinished), errors.Is(err, ops.ErrVerifyRunning),
		errors.Is(err, rebuild.ErrNoPreviousIndex), errors.Is(err, rebuild.ErrNoAlias),
		errors.Is(err, rebuild.ErrRollbackMappingOutdated), errors.Is(err, rebuild.ErrRollbackPositionUnknown),
		errors.Is(err, rebuild.ErrRollbackNotRetained), errors.Is(err, readmodel.ErrValidation),
		errors.Is(err, readmodel.ErrAliasMoved), errors.Is(err, readmodel.ErrLockLost):
		return http.StatusConflict, "refused: " + err.Error(), false
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the operation did not finish in time; it may still complete: look again in a moment", false
	}
	return http.StatusInternalServerError, internalMessage, true
}

// failErr renders err as classify says, logging unexpected causes with the operator.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, ss *session, op string, err error) {
	status, msg, internal := classify(err)
	if internal {
		s.log.ErrorContext(r.Context(), "console "+op+" failed", "operator", ss.operator, "err", err)
	} else {
		s.log.InfoContext(r.Context(), "console "+op+" refused", "operator", ss.operator, "status", status, "reason", err)
	}
	s.fail(w, r, ss, status, msg)
}

// formatDuration prints durations the way an operator reads them: 0.4s, 12s, 3m05s, 2h10m.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// phaseStep is one entry of a rebuild's phase timeline.
type phaseStep struct {
	Phase    readmodel.Phase
	Started  time.Time
	Duration time.Duration
	Current  bool
}

// rebuildView is a rebuild as the pages show it.
type rebuildView struct {
	readmodel.Snapshot
	Running  bool
	Percent  int
	Rate     float64
	ETA      time.Duration
	HasETA   bool
	Elapsed  time.Duration
	Timeline []phaseStep
}

func newRebuildView(s readmodel.Snapshot, now time.Time) rebuildView {
	v := rebuildView{Snapshot: s, Running: !s.Phase.Terminal()}
	end := now
	if s.FinishedAt != nil {
		end = *s.FinishedAt
	}
	v.Elapsed = end.Sub(s.StartedAt)
	if s.DocsTotal > 0 {
		v.Percent = int(min(100, s.DocsDone*100/s.DocsTotal))
	}
	if s.Phase == readmodel.PhaseSucceeded {
		v.Percent = 100
	}
	var steps []phaseStep
	for p, t := range s.PhaseStarts {
		steps = append(steps, phaseStep{Phase: p, Started: t})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Started.Before(steps[j].Started) })
	for i := range steps {
		next := end
		if i+1 < len(steps) {
			next = steps[i+1].Started
		}
		steps[i].Duration = next.Sub(steps[i].Started)
		steps[i].Current = steps[i].Phase == s.Phase
	}
	v.Timeline = steps
	if fill, ok := s.PhaseStarts[readmodel.PhaseFill]; ok && s.DocsDone > 0 {
		fillEnd := end
		for _, st := range steps {
			if st.Started.After(fill) {
				fillEnd = st.Started
				break
			}
		}
		if secs := fillEnd.Sub(fill).Seconds(); secs > 0 {
			v.Rate = float64(s.DocsDone) / secs
		}
		if v.Running && s.Phase == readmodel.PhaseFill && v.Rate > 0 && s.DocsTotal > s.DocsDone {
			v.ETA = time.Duration(float64(s.DocsTotal-s.DocsDone) / v.Rate * float64(time.Second))
			v.HasETA = true
		}
	}
	return v
}
