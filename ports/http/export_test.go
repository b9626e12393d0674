package httpport

import (
	"time"

	"github.com/go-chi/chi/v5"
)

// Router exposes the chi router to the external tests, which walk it to compare the
// registered routes with openapi.yaml.
func Router(s *Server) chi.Routes { return s.router }

// SetReadyTimeout shortens the readiness timeout so the timeout test does not wait 2 s.
func SetReadyTimeout(s *Server, d time.Duration) { s.readyTimeout = d }
