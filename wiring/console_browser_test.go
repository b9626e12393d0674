package wiring_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
)

// consoleScreenshotsEnv names a directory the browser test also writes its screenshots to
// (docs/console/ to refresh the README's pictures); they always go to the test's artifacts.
const consoleScreenshotsEnv = "CONSOLE_SCREENSHOTS_DIR"

// TestConsoleInABrowser drives the operations console of a running `catalog serve` (real
// PostgreSQL, the embedded broker, the real search server, the admin token set) from
// headless Chromium: log in, see the pipeline, start a rebuild and watch its progress bar
// reach the end, replay a dead letter after its dry run (the audit trail names the login),
// and see the rollback refused because the previous index is behind the code's mapping.
// Each page is saved as a screenshot.
func TestConsoleInABrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "chromium (apt-get install chromium)", err)
	}
	esURL, compat := testenv.ElasticsearchURL(t)
	const adminToken = "console-browser-test-token"
	var old string
	name := strings.ToLower(testenv.Name("con"))
	comp := startServe(t, func(c *service.Config) {
		c.ElasticsearchURL, c.ElasticsearchCompat, c.SearchAlias = esURL, compat, name
		c.TopicPartitions = 3
		c.ConsoleAddr, c.ConsoleSampleInterval = testenv.Addr(t), time.Second
		c.AdminToken = service.NewSecret(adminToken)
		withOldMappingIndex(&old)(t, c)
	})
	rp := &readPath{component: comp, esURL: esURL, compat: compat}
	t.Cleanup(func() { rp.dropIndices(t) })
	base := "http://" + comp.cfg.ConsoleAddr

	createProducts(t, comp, "CON", "console", 30)
	rp.waitSearch(t, "category=console&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 30 })
	// A record the projector cannot decode: it lands in the DLQ.
	cl, err := kgo.NewClient(kgo.SeedBrokers(comp.cfg.EmbeddedKafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: comp.cfg.ProductEventsTopic, Key: []byte("00000000-0000-4000-8000-00000000c0de"),
		Value: []byte(`<script>alert("dlq")</script>`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkafka.ReadUntil(t, testkafka.Cluster{Name: "embedded", Brokers: []string{comp.cfg.EmbeddedKafkaAddr}}, comp.cfg.DLQTopic, 60*time.Second,
		func(rs []testkafka.Record) bool { return len(rs) >= 1 })

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The pages ask before every action (window.confirm); the operator says yes. The listener
	// must not call the browser itself, so a goroutine answers the dialogs.
	dialogs := make(chan struct{}, 8)
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case dialogs <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for range dialogs {
			_ = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
				return err
			}))
		}
	}()
	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv(consoleScreenshotsEnv); d != "" {
		dirs = append(dirs, d)
	}
	shot := func(file string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			for _, d := range dirs {
				if err := os.WriteFile(filepath.Join(d, file), png, 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			// Say what the browser shows: the step's selector alone rarely explains it.
			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			defer dcancel()
			page, _ := chromedp.Run(dctx, chromedp.Text(css("body")))
			loc, _ := chromedp.Run(dctx, chromedp.Location())
			t.Fatalf("%s: %v\nthe browser is at %s and shows:\n%s", what, err, loc, page)
		}
	}
	// textWith reads sel's text once it holds every one of want. A page the browser is still
	// replacing (a form's answer arriving) detaches the node between the query and the read,
	// so a failed read or a text without want is retried until the deadline.
	textWith := func(sel string, want ...string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
			scancel()
			missing := ""
			for _, w := range want {
				if !strings.Contains(s, w) {
					missing = w
					break
				}
			}
			if err == nil && missing == "" {
				return s
			}
			if time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("read %s: %v", sel, err)
				}
				t.Fatalf("%s does not show %q:\n%s", sel, missing, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	text := func(sel string) string { t.Helper(); return textWith(sel) }

	run("open the console", chromedp.Navigate(base+"/"))
	run("see the login", chromedp.WaitVisible(css(`input[name="token"]`)), shot("login.png"))
	run("log in",
		chromedp.SendKeys(css(`input[name="token"]`), adminToken),
		chromedp.SendKeys(css(`input[name="operator"]`), "alice"),
		chromedp.Click(css(`.login button[type="submit"]`)),
	)
	run("see the pipeline", chromedp.WaitVisible(css(`.flow`)))
	textWith("main", "Outbox", "Alias / index", name)
	run("pipeline", shot("pipeline.png"))

	// A rebuild from the database, watched on the live progress bar until it has switched.
	run("start a rebuild",
		chromedp.Navigate(base+"/rebuilds"),
		chromedp.WaitVisible(css(`form[action="/rebuilds"]`)),
		chromedp.Click(css(`form[action="/rebuilds"] input[name="confirm"]`)),
		chromedp.Click(css(`form[action="/rebuilds"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`#rebuild-progress`)),
	)
	run("watch the rebuild", chromedp.WaitVisible(css(`.rebuild[data-phase="succeeded"]`)))
	run("progress", shot("rebuild.png"))
	pctx2, pcancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel2()
	attr, err := chromedp.Run(pctx2, chromedp.AttributeValue(css(`#rebuild-progress`), "value"))
	if err != nil {
		t.Fatal(err)
	}
	if value := attr.Value; value != "100" || !strings.Contains(text(".progress-text"), "30 of 30 documents") {
		t.Errorf("finished rebuild: progress %q, %q", value, text(".progress-text"))
	}
	run("rebuilds", chromedp.Navigate(base+"/rebuilds"), chromedp.WaitVisible(css(`tr.succeeded`)), shot("rebuilds.png"))

	// The dead letter: shown escaped, replayed after a dry run, in alice's name.
	run("dead letters", chromedp.Navigate(base+"/dlq"), chromedp.WaitVisible(css(`form[action="/dlq/replay"]`)), shot("dlq.png"))
	run("dead letter", chromedp.Click(css(`table a[href^="/dlq/"]`)), chromedp.WaitVisible(css(`pre.payload`)))
	if got := text("pre.payload"); got != `<script>alert("dlq")</script>` {
		t.Fatalf("the payload is not shown as text: %q", got)
	}
	run("dead letter page", shot("dlq-message.png"))
	run("dry run",
		chromedp.Navigate(base+"/dlq"),
		chromedp.Click(css(`form[action="/dlq/replay"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`#confirm-action`)),
	)
	textWith("#summary", "Dry run: 1 of 1")
	run("replay",
		shot("dlq-dry-run.png"),
		chromedp.Click(css(`input[name="confirm"]`)),
		chromedp.Click(css(`#confirm-action`)),
		chromedp.WaitNotPresent(css(`#confirm-action`)),
	)
	textWith("#summary", "Replayed 1 of 1", "alice")
	run("audit trail", chromedp.Navigate(base+"/dlq?unhandled=no"), chromedp.WaitVisible(css(`main`)))
	textWith("main", "alice", "replay") // the audit trail names alice's replay

	// The previous index has mapping v0: the rollback is refused and the alias stays.
	run("indices", chromedp.Navigate(base+"/indices"), chromedp.WaitVisible(css(`form[action="/indices/rollback"]`)), shot("indices.png"))
	textWith("main", old, "behind the code")
	run("roll back",
		chromedp.Click(css(`form[action="/indices/rollback"] input[name="confirm"]`)),
		chromedp.Click(css(`form[action="/indices/rollback"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`p.error`)),
		shot("rollback-refused.png"),
	)
	textWith("main", "409", "outdated mapping")

	run("verify", chromedp.Navigate(base+"/verify"), chromedp.Click(css(`form[action="/verify"] button`)),
		chromedp.WaitVisible(css(`.panel .light`)), shot("verify.png"))
	// Some traffic for the charts, sampled every second.
	for i := range 4 {
		createProducts(t, comp, fmt.Sprintf("CHART%d", i), "charts", 10)
		time.Sleep(time.Second)
	}
	run("charts", chromedp.Navigate(base+"/charts"), chromedp.WaitVisible(css(`.charts svg polyline`)), shot("charts.png"))
	run("pipeline after", chromedp.Navigate(base+"/"), chromedp.WaitVisible(css(`.flow`)), shot("pipeline.png"))
}
