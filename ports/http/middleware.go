package httpport

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// HeaderRequestID carries the request id in both directions: a caller's id (a gateway's,
// another service's) is kept so one id follows a request across services.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLength bounds a caller-supplied id; longer ones are replaced, not truncated,
// because a truncated id would no longer match the caller's logs anyway.
const maxRequestIDLength = 128

type requestIDKey struct{}

// RequestID returns the id of the request ctx belongs to, or "" outside a request. It is
// exported so that loggers and other ports' code running under a request can tag their
// output with the same id the client sees.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestID takes the caller's X-Request-Id when it is safe to log verbatim and makes one up
// otherwise, then echoes it so the client can quote it in a support ticket.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = rand.Text()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// validRequestID admits only characters that cannot forge log lines or break headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// RequestRecord describes one finished request. It is what Deps.ObserveRequest receives, so
// that metrics can be added later without touching the handlers.
type RequestRecord struct {
	// Method is the HTTP method.
	Method string
	// Route is the chi route pattern ("/v1/products/{id}"), not the raw path, so that
	// metric labels stay bounded; "unmatched" when no route matched.
	Route string
	// Status is the response status.
	Status int
	// Duration is the time from the first middleware to the last byte handed to the server.
	Duration time.Duration
	// BytesWritten is the size of the response body.
	BytesWritten int
	// RequestID is the request's X-Request-Id.
	RequestID string
}

// unmatchedRoute labels requests no route matched, keeping 404 scans out of metric labels.
const unmatchedRoute = "unmatched"

// accessLog writes one line per request and feeds the observer. It runs inside the chi mux
// so the route pattern is known once the handler returns. The line is DEBUG for an ordinary
// request (2xx-4xx within Config.SlowRequest) and WARN for a 5xx or a slow one, so that at
// the default level only what needs a look is written; request metrics count every request.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		var allowance time.Duration
		r = r.WithContext(context.WithValue(r.Context(), slowAllowanceKey{}, &allowance))
		defer func() {
			rec := RequestRecord{
				Method:       r.Method,
				Route:        routePattern(r),
				Status:       ww.Status(),
				Duration:     time.Since(start),
				BytesWritten: ww.BytesWritten(),
				RequestID:    RequestID(r.Context()),
			}
			if rec.Status == 0 {
				rec.Status = http.StatusOK // a handler that writes nothing sends 200
			}
			slow := rec.Duration >= s.cfg.SlowRequest+allowance
			level := slog.LevelDebug
			if rec.Status >= 500 || slow {
				level = slog.LevelWarn
			}
			s.log.LogAttrs(r.Context(), level, "http request",
				slog.Bool("slow", slow),
				slog.String("method", rec.Method),
				slog.String("route", rec.Route),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.Status),
				slog.Duration("duration", rec.Duration),
				slog.Int("bytes", rec.BytesWritten),
				slog.String("request_id", rec.RequestID),
			)
			if s.observe != nil {
				s.observe(r.Context(), rec)
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

// slowAllowanceKey holds, in a request's context, a *time.Duration a handler sets to what
// the request may take beyond Config.SlowRequest before the access log calls it slow (a read
// that waits for its own write, up to its wait timeout).
type slowAllowanceKey struct{}

func routePattern(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		if p := rctx.RoutePattern(); p != "" {
			return p
		}
	}
	return unmatchedRoute
}

// recoverer turns a panic into a logged 500 problem, so one bad request cannot take the
// process down and the client still gets a well-formed answer. It runs inside accessLog so
// the access log records the 500.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // the documented way to abort a response; net/http handles it quietly
			}
			s.log.ErrorContext(r.Context(), "panic serving request",
				"panic", fmt.Sprint(v),
				"stack", string(debug.Stack()),
				"method", r.Method,
				"route", routePattern(r),
				"request_id", RequestID(r.Context()),
			)
			if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
				return // headers are out; all we can do is cut the response short
			}
			writeProblem(w, r, internalProblem())
		}()
		next.ServeHTTP(w, r)
	})
}
