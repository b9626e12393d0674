package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
)

// SessionCookie is the name of the console's session cookie. Its value is a random session
// id, never the admin token: a stolen cookie dies with the session (logout, expiry, restart).
const SessionCookie = "catalog_console"

// CSRFField is the form field that carries a session's anti-forgery token.
const CSRFField = "csrf"

// defaultOperator names the operator in the audit trail when the login gives no name.
const defaultOperator = "console"

// session is one login.
type session struct {
	id       string
	csrf     string
	operator string
	expires  time.Time
}

// sessions keeps the logins in memory. A restart logs everybody out, which is the safe
// direction; several replicas each keep their own, so a console is reached on one replica.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	ttl  time.Duration
	now  func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{byID: map[string]*session{}, ttl: ttl, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for operator, dropping expired ones and, past maxSessions, the
// oldest.
func (s *sessions) create(operator string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var oldest *session
	for id, ss := range s.byID {
		if !now.Before(ss.expires) {
			delete(s.byID, id)
			continue
		}
		if oldest == nil || ss.expires.Before(oldest.expires) {
			oldest = ss
		}
	}
	if len(s.byID) >= maxSessions && oldest != nil {
		delete(s.byID, oldest.id)
	}
	ss := &session{id: randomToken(), csrf: randomToken(), operator: operator, expires: now.Add(s.ttl)}
	s.byID[ss.id] = ss
	return ss
}

func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	if !s.now().Before(ss.expires) {
		delete(s.byID, id)
		return nil, false
	}
	return ss, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// setCookie sends the session cookie; Secure whenever the request came over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func (s *Server) currentSession(r *http.Request) (*session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, false
	}
	return s.sessions.get(c.Value)
}

// authed admits requests with a session. Without one, pages redirect to the login and
// actions are refused; without a login configured, a page visit opens a session. Every POST
// must carry the session's anti-forgery token besides passing sameOrigin.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.currentSession(r)
		if !ok && s.deps.Auth == nil && r.Method == http.MethodGet {
			ss, ok = s.sessions.create(defaultOperator), true
			setCookie(w, r, ss.id, int(s.cfg.SessionTTL/time.Second))
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "log in first: your session has ended or never began")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue(CSRFField)), []byte(ss.csrf)) != 1 {
				s.fail(w, r, ss, http.StatusForbidden, "the form's anti-forgery token is missing or stale: reload the page and try again")
				return
			}
		}
		h(w, r, ss)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.currentSession(r); ok || s.deps.Auth == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.pages.render(w, r, http.StatusOK, "login", nil, loginView{})
}

// loginView is the login page's data.
type loginView struct {
	Error    string
	Operator string
}

// login checks the token of the form and opens a session. A wrong token answers 401 with
// the form again and says nothing about the token.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.deps.Auth == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.pages.render(w, r, http.StatusBadRequest, "login", nil, loginView{Error: "the login form could not be read"})
		return
	}
	operator := cleanOperator(r.PostFormValue("operator"))
	if !s.deps.Auth.Check(r.PostFormValue("token")) {
		s.log.WarnContext(r.Context(), "console login refused", "remote", r.RemoteAddr, "operator", operator)
		s.pages.render(w, r, http.StatusUnauthorized, "login", nil, loginView{Error: "that is not the admin token", Operator: operator})
		return
	}
	ss := s.sessions.create(operator)
	setCookie(w, r, ss.id, int(s.cfg.SessionTTL/time.Second))
	s.log.InfoContext(r.Context(), "console login", "operator", operator, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// cleanOperator keeps the name for the audit trail printable and short.
func cleanOperator(name string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.TrimSpace(name))
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		return defaultOperator
	}
	return name
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.remove(ss.id)
	setCookie(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// sameOrigin refuses every state-changing request a browser marks as coming from another
// site. Sec-Fetch-Site decides when present (page scripts cannot set it): only same-origin
// and none (typed in, bookmarks) pass. Browsers too old to send it send Origin, whose host
// must be this request's ("null", what a sandboxed or privacy-stripped request carries, is
// refused). Clients that send neither (curl, scripts) are not browsers acting for a victim
// and go on to the session and form-token checks.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
			if site != "same-origin" && site != "none" {
				forbidCrossSite(w)
				return
			}
		} else if origin := r.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || origin == "null" || !strings.EqualFold(u.Host, r.Host) {
				forbidCrossSite(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func forbidCrossSite(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("cross-site request refused: console actions are accepted only from the console's own pages\n"))
}

// contentSecurityPolicy allows the console's own script, styles and images and nothing
// else: no inline script or style, no framing, forms only to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin rather than no-referrer: under no-referrer browsers send "Origin: null"
		// with the console's own forms, which would look like a forged request.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
