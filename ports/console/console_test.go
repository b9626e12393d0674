package console_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/securetest"
	"github.com/marketplace/catalog/ports/adminauth"
	"github.com/marketplace/catalog/ports/console"
)

const token = "test-admin-token-0123456789"

type harness struct {
	t        *testing.T
	srv      *httptest.Server
	client   *http.Client
	ops      *fakeOps
	rebuilds *fakeRebuilds
	dlq      *fakeDLQ
}

func newHarness(t *testing.T, withLogin, tls bool) *harness {
	t.Helper()
	h := &harness{t: t, ops: &fakeOps{}, rebuilds: &fakeRebuilds{}, dlq: &fakeDLQ{}}
	deps := console.Deps{Operations: h.ops, Rebuilds: h.rebuilds, DeadLetters: h.dlq}
	if withLogin {
		v, err := adminauth.NewVerifier(token)
		if err != nil {
			t.Fatal(err)
		}
		deps.Auth = v
	}
	srv, err := console.NewServer(console.Config{Addr: "127.0.0.1:0"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if tls {
		h.srv = httptest.NewTLSServer(srv.Handler())
		h.client = h.srv.Client()
	} else {
		h.srv = httptest.NewServer(srv.Handler())
		h.client = &http.Client{}
	}
	t.Cleanup(h.srv.Close)
	jar, _ := cookiejar.New(nil)
	h.client.Jar = jar
	h.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h.client.Timeout = 10 * time.Second
	return h
}

// reply is a response read to the end and closed.
type reply struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

// Cookies are the cookies the response set.
func (r *reply) Cookies() []*http.Cookie { return r.cookies }

func (h *harness) do(req *http.Request) (*reply, string) {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return &reply{StatusCode: resp.StatusCode, Header: resp.Header, cookies: resp.Cookies()}, string(b)
}

func (h *harness) get(path string) (*reply, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}

// post sends a form as a same-origin browser would, with extra headers on top.
func (h *harness) post(path string, form url.Values, headers map[string]string) (*reply, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return h.do(req)
}

func (h *harness) login(operator string) {
	h.t.Helper()
	resp, _ := h.post("/login", url.Values{"token": {token}, "operator": {operator}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		h.t.Fatalf("login: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the anti-forgery token from a page, as the page's own forms carry it.
func (h *harness) csrf() string {
	h.t.Helper()
	_, body := h.get("/rebuilds")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		h.t.Fatalf("no csrf field on /rebuilds:\n%s", body)
	}
	return m[1]
}

var pagePaths = []string{"/", "/charts", "/rebuilds", "/indices", "/dlq", "/verify"}

func TestPagesAndActionsNeedTheLogin(t *testing.T) {
	h := newHarness(t, true, false)
	for _, p := range pagePaths {
		resp, body := h.get(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a login: %d to %q, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(strings.ToLower(body), "pipeline") {
			t.Errorf("GET %s without a login shows the pipeline", p)
		}
	}
	resp, body := h.get("/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) || strings.Contains(strings.ToLower(body), "pipeline") {
		t.Errorf("login page: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.post("/rebuilds", url.Values{"source": {"database"}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(h.rebuilds.Starts()) != 0 {
		t.Errorf("POST /rebuilds without a login: %d, starts %v; want 401 and nothing started", resp.StatusCode, h.rebuilds.Starts())
	}
}

func TestLoginSetsASessionCookieThatIsNotTheToken(t *testing.T) {
	h := newHarness(t, true, false)
	resp, body := h.post("/login", url.Values{"token": {"wrong"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp, _ = h.post("/login", url.Values{"token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var c *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == console.SessionCookie {
			c = x
		}
	}
	switch {
	case c == nil:
		t.Fatal("no session cookie")
	case !c.HttpOnly || c.SameSite != http.SameSiteStrictMode:
		t.Errorf("cookie %+v: want HttpOnly and SameSite=Strict", c)
	case c.Secure:
		t.Errorf("cookie Secure over plain HTTP: the browser would never send it back")
	case strings.Contains(c.Value, token) || len(c.Value) < 32:
		t.Errorf("cookie value %q: want a random session id, not the token", c.Value)
	}
	resp, body = h.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Pipeline") || strings.Contains(body, token) {
		t.Fatalf("after login: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.post("/logout", url.Values{"csrf": {h.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	// The old cookie is dead on the server, not only deleted in this browser.
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/", nil)
	req.AddCookie(c)
	h.client.Jar, _ = cookiejar.New(nil)
	if resp, _ = h.do(req); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the logged-out session still opens the console: %d", resp.StatusCode)
	}
}

func TestSessionCookieIsSecureOverTLS(t *testing.T) {
	h := newHarness(t, true, true)
	resp, _ := h.post("/login", url.Values{"token": {token}}, nil)
	if len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("login over TLS: cookies %v, want one Secure cookie", resp.Cookies())
	}
}

func TestCrossSiteActionsAreRefused(t *testing.T) {
	h := newHarness(t, true, false)
	h.login("alice")
	csrf := h.csrf()
	form := func(extra ...string) url.Values {
		v := url.Values{"source": {"kafka"}, "confirm": {"yes"}, "csrf": {csrf}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	for name, tc := range map[string]struct {
		form    url.Values
		headers map[string]string
	}{
		"foreign origin":          {form(), map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": ""}},
		"cross-site fetch":        {form(), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": ""}},
		"same-site, other port":   {form(), map[string]string{"Sec-Fetch-Site": "same-site", "Origin": ""}},
		"opaque origin":           {form(), map[string]string{"Origin": "null", "Sec-Fetch-Site": ""}},
		"both foreign":            {form(), map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}},
		"no form token":           {form("csrf", ""), nil},
		"another session's token": {form("csrf", "AAAA"), nil},
	} {
		resp, _ := h.post("/rebuilds", tc.form, tc.headers)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
	}
	if s := h.rebuilds.Starts(); len(s) != 0 {
		t.Fatalf("a refused request started a rebuild: %v", s)
	}
	resp, _ := h.post("/rebuilds", form("confirm", "no"), nil)
	if resp.StatusCode != http.StatusBadRequest || len(h.rebuilds.Starts()) != 0 {
		t.Errorf("unconfirmed start: %d, want 400 and nothing started", resp.StatusCode)
	}
	resp, _ = h.post("/rebuilds", form(), nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/rebuilds/rb-1" {
		t.Fatalf("same-origin start: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if s := h.rebuilds.Starts(); len(s) != 1 || s[0] != readmodel.SourceKafka {
		t.Errorf("starts %v, want one from kafka", s)
	}
	// Chromium sends "Origin: null" with a form under some referrer policies; Sec-Fetch-Site,
	// which page scripts cannot set, says same-origin and decides.
	if resp, _ := h.post("/rebuilds", form(), map[string]string{"Origin": "null"}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin start with Origin: null: %d, want 303", resp.StatusCode)
	}
	// A login form posted from another site is refused too (login forgery).
	resp, _ = h.post("/login", url.Values{"token": {token}}, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", resp.StatusCode)
	}
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	h := newHarness(t, true, false)
	check := func(path string, resp *reply) {
		csp := resp.Header.Get("Content-Security-Policy")
		if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "default-src 'none'") ||
			!strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
	}
	resp, _ := h.get("/login")
	check("/login", resp)
	h.login("")
	for _, p := range append(pagePaths, "/static/console.js") {
		resp, _ := h.get(p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
		check(p, resp)
	}
}

var external = regexp.MustCompile(`(?i)(src|href|action)\s*=\s*"(https?:)?//`)
var inline = regexp.MustCompile(`(?i)<script>|<style|\sstyle=|\son[a-z]+=`)

// TestPagesUseOnlyEmbeddedAssets: nothing is loaded from elsewhere, and nothing inline that
// the CSP would block (so the pages work offline and under the policy).
func TestPagesUseOnlyEmbeddedAssets(t *testing.T) {
	h := newHarness(t, true, false)
	h.dlq.messages = []ops.DLQMessage{{Ref: ops.DLQRef{Partition: 0, Offset: 1}, Class: "poison", Reason: "bad", AggregateID: "p-1", FailedAt: time.Now()}}
	h.login("")
	h.post("/rebuilds", url.Values{"source": {"database"}, "confirm": {"yes"}, "csrf": {h.csrf()}}, nil)
	for _, p := range append(pagePaths, "/rebuilds/rb-1", "/dlq/0:1", "/login") {
		_, body := h.get(p)
		if m := external.FindString(body); m != "" {
			t.Errorf("%s refers to an external asset: %s", p, m)
		}
		if m := inline.FindString(body); m != "" {
			t.Errorf("%s has inline script or style the CSP blocks: %s", p, m)
		}
		for _, asset := range []string{"/static/console.css", "/static/console.js"} {
			if p != "/login" && !strings.Contains(body, asset) {
				t.Errorf("%s does not load %s", p, asset)
			}
		}
	}
	for _, asset := range []string{"/static/console.css", "/static/console.js"} {
		if resp, body := h.get(asset); resp.StatusCode != http.StatusOK || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", asset, resp.StatusCode, len(body))
		}
	}
}

// TestHostileDeadLetterRendersInert: a dead letter is data from the event stream; whatever
// it holds is shown as text, never run.
func TestHostileDeadLetterRendersInert(t *testing.T) {
	h := newHarness(t, true, false)
	h.dlq.messages = []ops.DLQMessage{{
		Ref: ops.DLQRef{Partition: 2, Offset: 7}, Class: `poison"><script>alert(2)</script>`, FailedAt: time.Now(),
		Reason: `<img src=x onerror=alert(1)>`, AggregateID: `"><script>alert(3)</script>`,
		Headers: []ops.DLQHeader{{Key: "<b>x</b>", Value: `<script>alert(4)</script>`}},
		Payload: []byte(`{"name":"<script>alert(5)</script>"}`),
	}}
	h.login("")
	for _, p := range []string{"/dlq", "/dlq/2:7", "/dlq?unhandled=no"} {
		resp, body := h.get(p)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, resp.StatusCode, body)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", "<b>x</b>"} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s renders %q as markup", p, raw)
			}
		}
	}
	_, body := h.get("/dlq/2:7")
	if !strings.Contains(body, "&lt;script&gt;alert(5)&lt;/script&gt;") || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the hostile payload is not shown escaped:\n%s", body)
	}
}

// TestReplayRunsAfterADryRunInTheLoginsName: the replay button does a dry run; the replay
// itself needs the confirmation the dry run's page carries; both go through the use case with
// the operator named at the login, which the audit trail records.
func TestReplayRunsAfterADryRunInTheLoginsName(t *testing.T) {
	h := newHarness(t, true, false)
	h.dlq.messages = []ops.DLQMessage{{Ref: ops.DLQRef{Partition: 0, Offset: 3}, Class: "poison", Reason: "bad", AggregateID: "p-1", FailedAt: time.Now()}}
	h.login("alice")
	csrf := h.csrf()
	resp, body := h.post("/dlq/replay", url.Values{"csrf": {csrf}, "ref": {"0:3"}, "dry_run": {"yes"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "would-replay") || !strings.Contains(body, `name="confirm"`) {
		t.Fatalf("dry run: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = h.post("/dlq/replay", url.Values{"csrf": {csrf}, "ref": {"0:3"}, "dry_run": {"no"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replay without the dry run's confirmation: %d, want 400", resp.StatusCode)
	}
	resp, body = h.post("/dlq/replay", url.Values{"csrf": {csrf}, "ref": {"0:3"}, "dry_run": {"no"}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Replayed 1") {
		t.Fatalf("replay: %d\n%s", resp.StatusCode, body)
	}
	got := h.dlq.Replays()
	if len(got) != 2 || !got[0].DryRun || got[1].DryRun {
		t.Fatalf("replays %+v: want a dry run, then the replay", got)
	}
	for _, r := range got {
		if r.Operator != "alice" || len(r.Refs) != 1 || r.Refs[0] != (ops.DLQRef{Partition: 0, Offset: 3}) {
			t.Errorf("replay request %+v: want message 0:3 by alice", r)
		}
	}
	// A resolution needs a reason; the use case's refusal is a 400 with its message.
	resp, body = h.post("/dlq/resolve", url.Values{"csrf": {csrf}, "ref": {"0:3"}, "dry_run": {"yes"}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "reason") {
		t.Errorf("resolve without a reason: %d\n%s", resp.StatusCode, body)
	}
}

func TestRollbackRefusalIsShown(t *testing.T) {
	h := newHarness(t, true, false)
	h.rebuilds.rollbackErr = fmt.Errorf("rollback to product_search_v1_a: %w", rebuild.ErrRollbackMappingOutdated)
	h.login("")
	_, body := h.get("/indices")
	if !strings.Contains(body, "product_search_v1_a") {
		t.Fatalf("indices page:\n%s", body)
	}
	// The prune form offers what the use case does by default and accepts at most.
	if want := fmt.Sprintf(`name="keep" value="%d" min="0" max="%d"`, rebuild.DefaultPruneKeep, rebuild.MaxPruneKeep); !strings.Contains(body, want) {
		t.Errorf("indices page has no %s:\n%s", want, body)
	}
	resp, body := h.post("/indices/rollback", url.Values{"csrf": {h.csrf()}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "outdated mapping") {
		t.Errorf("refused rollback: %d\n%s", resp.StatusCode, body)
	}
	h.rebuilds.rollbackErr = fmt.Errorf("something internal at postgres://user:secret@db")
	resp, body = h.post("/indices/rollback", url.Values{"csrf": {h.csrf()}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "secret") {
		t.Errorf("unexpected failure: %d, leaks its cause: %v", resp.StatusCode, strings.Contains(body, "secret"))
	}
}

func TestRebuildPageShowsProgressAndRefreshesAsAFragment(t *testing.T) {
	h := newHarness(t, true, false)
	h.login("")
	h.post("/rebuilds", url.Values{"source": {"database"}, "confirm": {"yes"}, "csrf": {h.csrf()}}, nil)
	_, body := h.get("/rebuilds/rb-1")
	for _, want := range []string{`<progress id="rebuild-progress" max="100" value="25">`, "50 of 200 documents", "left", "Cancel rebuild", "data-refresh"} {
		if !strings.Contains(body, want) {
			t.Errorf("rebuild page lacks %q", want)
		}
	}
	_, frag := h.get("/rebuilds/rb-1?fragment=1")
	if strings.Contains(frag, "<html") || !strings.Contains(frag, "rebuild-progress") {
		t.Errorf("fragment is not the live block alone:\n%s", frag)
	}
	if resp, _ := h.get("/rebuilds/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown rebuild: %d, want 404", resp.StatusCode)
	}
}

// TestWithoutALoginEachBrowserGetsASession: a loopback console without ADMIN_TOKEN opens
// at once, and still refuses forged actions.
func TestWithoutALoginEachBrowserGetsASession(t *testing.T) {
	h := newHarness(t, false, false)
	resp, body := h.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Pipeline") {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	resp, _ = h.post("/rebuilds", url.Values{"source": {"database"}, "confirm": {"yes"}}, nil)
	if resp.StatusCode != http.StatusForbidden || len(h.rebuilds.Starts()) != 0 {
		t.Errorf("POST without the form token: %d", resp.StatusCode)
	}
}

// TestServesHTTPSWithItsOwnCertificate: with CONSOLE_TLS_* the listener speaks TLS, and the
// login's cookie is Secure.
func TestServesHTTPSWithItsOwnCertificate(t *testing.T) {
	ca := securetest.NewCA(t, t.TempDir(), "console")
	pair := ca.Issue(t, "console", "127.0.0.1")
	v, err := adminauth.NewVerifier(token)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := console.NewServer(console.Config{Addr: "127.0.0.1:0", TLSCertFile: pair.CertFile, TLSKeyFile: pair.KeyFile, ShutdownTimeout: time.Second},
		console.Deps{Operations: &fakeOps{}, Rebuilds: &fakeRebuilds{}, DeadLetters: &fakeDLQ{}, Auth: v})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm("https://"+ln.Addr().String()+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("login over HTTPS: %d, cookies %v; want 303 and a Secure cookie", resp.StatusCode, resp.Cookies())
	}
	if _, err := console.NewServer(console.Config{Addr: "127.0.0.1:0", TLSCertFile: pair.CertFile},
		console.Deps{Operations: &fakeOps{}, Rebuilds: &fakeRebuilds{}, DeadLetters: &fakeDLQ{}}); err == nil {
		t.Error("a certificate without its key was accepted")
	}
}
