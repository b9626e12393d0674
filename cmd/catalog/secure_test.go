package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/internal/securetest"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/service"
)

// setEnv sets the process environment for the commands a test runs in-process; every
// setting not named is unset, so the developer's environment cannot leak in.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, st := range settingsOf(&service.Config{}) {
		t.Setenv(st.env, "")
		if err := os.Unsetenv(st.env); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := env["CONSOLE_ADDR"]; !ok {
		// The console is on by default on a fixed port; tests that want it give it theirs.
		t.Setenv("CONSOLE_ADDR", "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// serveInProcess runs `catalog serve` with the current environment until the test ends and
// waits until its API answers on base. It returns the process's log.
func serveInProcess(t *testing.T, base string, client *http.Client) *testenv.Output {
	t.Helper()
	logs := &testenv.Output{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited %d:\n%s", code, logs)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop within 60s")
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := client.Get(base + "/healthz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return logs
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before it was healthy:\n%s", code, logs)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not healthy on %s after 2m:\n%s", base, logs)
		}
	}
}

// httpJSON sends a request and decodes the JSON answer.
func httpJSON(t *testing.T, client *http.Client, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// waitSearch polls the search API until q finds want products.
func waitSearch(t *testing.T, client *http.Client, base, q string, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got any
	for time.Now().Before(deadline) {
		code, body := httpJSON(t, client, http.MethodGet, base+"/v1/products/search?q="+q, "")
		if got = body["total"]; code == http.StatusOK && got == float64(want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("search %q: total %v, want %d", q, got, want)
}

func writeSecret(t *testing.T, name, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dropSearchIndices removes the alias's indices from the shared search server.
func dropSearchIndices(t *testing.T, target, compat, alias string) {
	t.Cleanup(func() {
		client, err := elasticsearch.NewClient(elasticsearch.Config{URL: target, Compat: compat})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if res, err := (esapi.IndicesDeleteRequest{Index: []string{alias + "_*"}, AllowNoIndices: esapi.BoolPtr(true)}).Do(ctx, client); err == nil {
			_ = res.Body.Close()
		}
	})
}

// TestSecureClusters runs `catalog serve` against a Kafka that requires SASL_SSL with
// SCRAM-SHA-512 and a search cluster that requires TLS and an API key, with the admin token
// set, and drives it the way an operator does: a write reaches the search API through the
// relay and the projector, `status --json` reads the pipeline, a rebuild from Kafka reads the
// event log, a dead-lettered event is replayed, the admin commands need the token. No secret
// appears in any log line or output.
func TestSecureClusters(t *testing.T) {
	k := securetest.StartKafka(t)
	target, compat := testenv.ElasticsearchURL(t)
	proxy := securetest.StartSearchProxy(t, target, nil)
	dbURL := testenv.NewDatabase(t)
	migrateDB(t, dbURL)
	name := strings.ToLower(strings.ReplaceAll(testenv.Name("secure"), "_", "-"))
	alias := strings.ReplaceAll(name, "-", "_")
	dropSearchIndices(t, target, compat, alias)
	token := "admin-" + strings.Repeat("x", 8) + fmt.Sprint(time.Now().UnixNano())
	httpAddr, grpcAddr := testenv.Addr(t), testenv.Addr(t)
	env := map[string]string{
		"DATABASE_URL": dbURL, "HTTP_ADDR": httpAddr, "GRPC_ADDR": grpcAddr, "CATALOG_DATA_DIR": t.TempDir(),
		"KAFKA_BROKERS": k.Addr, "KAFKA_TLS_CA_FILE": k.CA.CertFile, "KAFKA_SASL_MECHANISM": kafka.SASLSCRAMSHA512,
		"KAFKA_SASL_USERNAME": securetest.KafkaUser, "KAFKA_SASL_PASSWORD_FILE": writeSecret(t, "kafka-pw", k.Password),
		"ELASTICSEARCH_URL": proxy.URL, "ELASTICSEARCH_COMPAT": compat, "ELASTICSEARCH_CA_FILE": proxy.CA.CertFile,
		"ELASTICSEARCH_API_KEY": proxy.APIKey, "ADMIN_TOKEN_FILE": writeSecret(t, "token", token),
		"SEARCH_ALIAS": alias, "PRODUCT_EVENTS_TOPIC": name + ".events", "DLQ_TOPIC": name + ".dlq", "PROJECTOR_GROUP": name + "-projector",
		"TOPIC_PARTITIONS": "3", "OUTBOX_LANES": "2", "LOG_LEVEL": "debug", "LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "10s",
	}
	setEnv(t, env)
	base := "http://" + httpAddr
	logs := serveInProcess(t, base, http.DefaultClient)
	var outputs []string

	// The write path and the read path through both secured clusters.
	code, created := httpJSON(t, http.DefaultClient, http.MethodPost, base+"/v1/products",
		`{"sku":"SEC-1","name":"Secured kettle","description":"d","category":"kitchen","brand":"Acme","price":{"amount":1999,"currency":"EUR"},"stock":5,"attributes":{}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	waitSearch(t, http.DefaultClient, base, "kettle", 1)

	// status reads the outbox, the projector's lag, the DLQ depth (Kafka) and the read model.
	var st map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		out, errOut, code := runCLI(t, "status", "--json")
		outputs = append(outputs, out, errOut)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
		}
		if code == exitOK || time.Now().After(deadline) {
			if code != exitOK {
				t.Fatalf("status stays unhealthy: %s\n%s", out, errOut)
			}
			break
		}
		time.Sleep(time.Second)
	}
	for _, part := range []string{"projector", "dlq", "read_model", "outbox"} {
		if sec, ok := st[part].(map[string]any); !ok || sec["read_error"] != nil {
			t.Errorf("status %s: %v", part, st[part])
		}
	}

	// A rebuild from Kafka reads the event log through SASL_SSL and switches the alias.
	out, errOut, code := runCLI(t, "rebuild", "--source=kafka", "--wait")
	outputs = append(outputs, out, errOut)
	if code != exitOK {
		t.Fatalf("rebuild --source=kafka: exit %d\n%s\n%s", code, out, errOut)
	}
	waitSearch(t, http.DefaultClient, base, "kettle", 1)

	// A dead-lettered event is listed and replayed; the projector indexes the replay.
	e := &dlqEnv{cluster: k.Cluster(t), dlqTopic: env["DLQ_TOPIC"], eventsTopic: env["PRODUCT_EVENTS_TOPIC"]}
	ev := e.deadLetter(t, "SEC-DLQ", "rejected", time.Now().Add(-time.Minute))
	out, errOut, code = runCLI(t, "dlq", "list", "--json")
	outputs = append(outputs, out, errOut)
	if code != exitOK || !strings.Contains(out, ev.AggregateID.String()) {
		t.Fatalf("dlq list: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "dlq", "replay", "--aggregate", ev.AggregateID.String(), "--operator", "secure-test")
	outputs = append(outputs, out, errOut)
	if code != exitOK || !strings.Contains(errOut, "replayed 1 of 1") {
		t.Fatalf("dlq replay: exit %d\n%s\n%s", code, out, errOut)
	}
	waitSearch(t, http.DefaultClient, base, "SEC-DLQ", 1)

	// The admin commands need the token: with it they work, without or wrong they are refused.
	out, errOut, code = runCLI(t, "index", "list")
	outputs = append(outputs, out, errOut)
	if code != exitOK || !strings.Contains(out, alias) {
		t.Fatalf("index list with the token: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Setenv("ADMIN_TOKEN_FILE", "")
	for _, wrong := range []string{"", "wrong-" + token} {
		t.Setenv("ADMIN_TOKEN", wrong)
		for _, args := range [][]string{{"index", "list"}, {"status"}, {"rebuild", "--wait"}, {"index", "prune", "--keep", "0"}} {
			out, errOut, code := runCLI(t, args...)
			outputs = append(outputs, out, errOut)
			if code != exitFailure || !strings.Contains(errOut, "requires the admin token: set ADMIN_TOKEN") {
				t.Errorf("%v with token %q: exit %d\n%s", args, wrong, code, errOut)
			} else if args[0] == "index" && wrong == "" {
				t.Logf("%v without the token: %s", args, errOut)
			}
		}
	}

	all := logs.String() + strings.Join(outputs, "\n")
	for what, secret := range map[string]string{"Kafka password": k.Password, "API key": proxy.APIKey, "admin token": token} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s appears in the logs or the output", what)
		}
	}
	for _, want := range []string{`"security":"TLS (CA ` + k.CA.CertFile + `), SASL SCRAM-SHA-512 as \"catalog\""`, `"credentials":"API key"`, `"token":true`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the start-up log does not say %s", want)
		}
	}
}

// TestWrongCredentialsStopTheRoleAtOnce: a wrong Kafka password stops `catalog relay` and the
// DLQ tools, a wrong search API key stops `catalog project`, each within seconds (no retry
// loop), exit 1, with the setting to check and without the secret.
func TestWrongCredentialsStopTheRoleAtOnce(t *testing.T) {
	k := securetest.StartKafka(t)
	target, compat := testenv.ElasticsearchURL(t)
	proxy := securetest.StartSearchProxy(t, target, nil)
	dbURL := testenv.NewDatabase(t)
	migrateDB(t, dbURL)
	const wrong = "pw-wrong-never-printed"
	kafkaEnv := map[string]string{
		"DATABASE_URL": dbURL, "KAFKA_BROKERS": k.Addr, "KAFKA_TLS_CA_FILE": k.CA.CertFile, "KAFKA_SASL_MECHANISM": kafka.SASLSCRAMSHA512,
		"KAFKA_SASL_USERNAME": securetest.KafkaUser, "KAFKA_SASL_PASSWORD": wrong, "HTTP_ADDR": testenv.Addr(t), "GRPC_ADDR": testenv.Addr(t),
		"ELASTICSEARCH_URL": proxy.URL, "ELASTICSEARCH_COMPAT": compat, "ELASTICSEARCH_CA_FILE": proxy.CA.CertFile, "ELASTICSEARCH_API_KEY": proxy.APIKey,
		"SEARCH_ALIAS": strings.ToLower(testenv.Name("wrongcreds")),
	}
	check := func(t *testing.T, args []string, want string) {
		t.Helper()
		var stderr testenv.Output
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		start := time.Now()
		code := run(ctx, args, &stderr)
		if d := time.Since(start); code != exitFailure || d > 45*time.Second || !strings.Contains(stderr.String(), want) {
			t.Fatalf("%v: exit %d after %s, want 1 at once with %q:\n%s", args, code, d, want, stderr.String())
		}
		t.Logf("%v: %s", args, stderr.String())
		if strings.Contains(stderr.String(), wrong) || strings.Contains(stderr.String(), "wrong-key-never-printed") {
			t.Fatalf("%v printed the secret:\n%s", args, stderr.String())
		}
	}
	setEnv(t, kafkaEnv)
	check(t, []string{"relay"}, "SASL authentication failed")
	check(t, []string{"dlq", "list"}, "SASL authentication failed")
	kafkaEnv["KAFKA_SASL_PASSWORD"] = k.Password
	kafkaEnv["ELASTICSEARCH_API_KEY"] = "wrong-key-never-printed"
	setEnv(t, kafkaEnv)
	check(t, []string{"project"}, "the cluster refused the credentials: check ELASTICSEARCH_API_KEY")
}

// serveChecks runs `catalog serve` with env against an unreachable database and a cancelled
// context: a configuration serve refuses exits 2, one that passes its checks exits 1.
func serveChecks(t *testing.T, env map[string]string) (int, string) {
	t.Helper()
	env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	setEnv(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stderr testenv.Output
	return run(ctx, []string{"serve"}, &stderr), stderr.String()
}

// TestServeRefusesAnOpenAdminPort: without the admin token or mutual TLS, serve will not put
// the admin port beyond loopback: exit 2 and one line naming GRPC_ADDR and ADMIN_TOKEN,
// before anything is started. Loopback, the token or mutual TLS pass the check.
func TestServeRefusesAnOpenAdminPort(t *testing.T) {
	ca := securetest.NewCA(t, t.TempDir(), "grpc")
	srv := ca.Issue(t, "grpc", "127.0.0.1")
	serveWith := func(env map[string]string) (int, string) { return serveChecks(t, env) }
	for _, addr := range []string{"0.0.0.0:18599", "[::]:18599", ":18599", "catalog.internal:9090", "10.1.2.3:9090"} {
		code, stderr := serveWith(map[string]string{"GRPC_ADDR": addr})
		t.Logf("GRPC_ADDR=%s: %s", addr, stderr)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "GRPC_ADDR") || !strings.Contains(stderr, "ADMIN_TOKEN") {
			t.Errorf("GRPC_ADDR=%s without authentication: exit %d, stderr %q; want exit 2 and one line", addr, code, stderr)
		}
	}
	for name, env := range map[string]map[string]string{
		"loopback":   {"GRPC_ADDR": "127.0.0.1:18599"},
		"localhost":  {"GRPC_ADDR": "localhost:18599"},
		"ipv6":       {"GRPC_ADDR": "[::1]:18599"},
		"token":      {"GRPC_ADDR": "0.0.0.0:18599", "ADMIN_TOKEN": "some-long-admin-token"},
		"mutual TLS": {"GRPC_ADDR": "0.0.0.0:18599", "GRPC_TLS_CERT_FILE": srv.CertFile, "GRPC_TLS_KEY_FILE": srv.KeyFile, "GRPC_TLS_CLIENT_CA_FILE": ca.CertFile},
	} {
		// Past the check the command goes on and fails on the unreachable database (exit 1).
		if code, stderr := serveWith(env); code != exitFailure || strings.Contains(stderr, "ADMIN_TOKEN") {
			t.Errorf("%s: exit %d, stderr %q; want the check passed", name, code, stderr)
		}
	}
}

// TestServeRefusesAnOpenConsole: the console does what the admin port does, so without
// ADMIN_TOKEN serve will not put it beyond loopback: exit 2 and one line naming CONSOLE_ADDR.
func TestServeRefusesAnOpenConsole(t *testing.T) {
	serveWith := func(env map[string]string) (int, string) { return serveChecks(t, env) }
	for _, addr := range []string{"0.0.0.0:18598", ":18598", "10.1.2.3:8081"} {
		code, stderr := serveWith(map[string]string{"CONSOLE_ADDR": addr})
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "CONSOLE_ADDR") || !strings.Contains(stderr, "ADMIN_TOKEN") {
			t.Errorf("CONSOLE_ADDR=%s without a login: exit %d, stderr %q; want exit 2 and one line", addr, code, stderr)
		}
	}
	for name, env := range map[string]map[string]string{
		"default":  {},
		"disabled": {"CONSOLE_ADDR": ""},
		"loopback": {"CONSOLE_ADDR": "127.0.0.1:18598"},
		"token":    {"CONSOLE_ADDR": "0.0.0.0:18598", "ADMIN_TOKEN": "some-long-admin-token"},
	} {
		if code, stderr := serveWith(env); code != exitFailure || strings.Contains(stderr, "CONSOLE_ADDR") {
			t.Errorf("%s: exit %d, stderr %q; want the check passed", name, code, stderr)
		}
	}
}

// TestAdminPortMutualTLSAndHTTPS: a serve (embedded broker and search engine) whose admin port
// requires client certificates on every interface, with the REST API over HTTPS and /metrics
// on METRICS_ADDR. The CLI reaches the admin port with its client certificate and not without.
func TestAdminPortMutualTLSAndHTTPS(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	migrateDB(t, dbURL)
	dir := t.TempDir()
	ca := securetest.NewCA(t, dir, "admin")
	srvCert, cliCert := ca.Issue(t, "server", "127.0.0.1", "localhost"), ca.Issue(t, "operator", "operator")
	stranger := securetest.NewCA(t, t.TempDir(), "stranger").Issue(t, "stranger", "stranger")
	httpAddr, metricsAddr, grpcPort := testenv.Addr(t), testenv.Addr(t), testenv.FreePort(t)
	env := map[string]string{
		"DATABASE_URL": dbURL, "HTTP_ADDR": httpAddr, "METRICS_ADDR": metricsAddr, "GRPC_ADDR": fmt.Sprintf("0.0.0.0:%d", grpcPort),
		"EMBEDDED_KAFKA_ADDR": testenv.Addr(t), "CATALOG_DATA_DIR": t.TempDir(), "SHUTDOWN_TIMEOUT": "5s",
		"GRPC_TLS_CERT_FILE": srvCert.CertFile, "GRPC_TLS_KEY_FILE": srvCert.KeyFile, "GRPC_TLS_CLIENT_CA_FILE": ca.CertFile,
		"HTTP_TLS_CERT_FILE": srvCert.CertFile, "HTTP_TLS_KEY_FILE": srvCert.KeyFile,
	}
	setEnv(t, env)
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	serveInProcess(t, "https://"+httpAddr, tlsClient)

	if res, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		_ = res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("the REST API also answers plain HTTP")
		}
	}
	if code, _ := httpJSON(t, tlsClient, http.MethodGet, "https://"+httpAddr+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("/metrics on HTTP_ADDR with METRICS_ADDR set: %d, want 404", code)
	}
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "catalog_") {
		t.Errorf("METRICS_ADDR /metrics: %d", res.StatusCode)
	}

	t.Setenv("GRPC_CLIENT_TLS_CA_FILE", ca.CertFile)
	if out, errOut, code := runCLI(t, "index", "list"); code != exitFailure || !strings.Contains(errOut, "TLS") {
		t.Errorf("index list without a client certificate: exit %d\n%s\n%s", code, out, errOut)
	} else {
		t.Logf("without a client certificate: %s", errOut)
	}
	t.Setenv("GRPC_CLIENT_TLS_CERT_FILE", stranger.CertFile)
	t.Setenv("GRPC_CLIENT_TLS_KEY_FILE", stranger.KeyFile)
	if _, errOut, code := runCLI(t, "index", "list"); code != exitFailure || !strings.Contains(errOut, "TLS") {
		t.Errorf("index list with a certificate of another CA: exit %d\n%s", code, errOut)
	}
	t.Setenv("GRPC_CLIENT_TLS_CERT_FILE", cliCert.CertFile)
	t.Setenv("GRPC_CLIENT_TLS_KEY_FILE", cliCert.KeyFile)
	if out, errOut, code := runCLI(t, "index", "list"); code != exitOK || !strings.Contains(out, "product_search") {
		t.Errorf("index list with the client certificate: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, "status"); code == exitFailure && strings.Contains(errOut, "TLS") {
		t.Errorf("status with the client certificate: %s", errOut)
	}
	// A plaintext client is told the port wants TLS.
	t.Setenv("GRPC_CLIENT_TLS_CA_FILE", "")
	t.Setenv("GRPC_CLIENT_TLS_CERT_FILE", "")
	t.Setenv("GRPC_CLIENT_TLS_KEY_FILE", "")
	if _, errOut, code := runCLI(t, "index", "list"); code != exitFailure || !strings.Contains(errOut, "TLS") {
		t.Errorf("index list in plaintext: exit %d\n%s", code, errOut)
	} else {
		t.Logf("plaintext: %s", errOut)
	}
}

func migrateDB(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
}
