package wiring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

type component struct {
	base string
	cfg  service.Config
	db   *postgres.DB
	stop func() error
}

// startServe runs `catalog serve` in-process through the real wiring: fresh database, the
// embedded broker, the real HTTP server on a loopback port.
func startServe(t *testing.T, opts ...func(*service.Config)) *component {
	t.Helper()
	cfg, _ := freshDeployment(t, opts...)
	return serveInProcess(t, cfg)
}

// freshDeployment is a new, migrated database and a configuration for it: free loopback
// ports, a data directory, the embedded broker and search engine unless opts say otherwise.
func freshDeployment(t *testing.T, opts ...func(*service.Config)) (service.Config, *postgres.DB) {
	t.Helper()
	ctx := context.Background()
	cfg := service.Config{DatabaseURL: testenv.NewDatabase(t), DataDir: t.TempDir(),
		EmbeddedKafkaAddr: testenv.Addr(t), HTTPAddr: testenv.Addr(t), GRPCAddr: testenv.Addr(t), ShutdownTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	db, cleanup, err := wiring.InitializeDatabase(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	if _, err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return cfg, db
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (c *component) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header}
	if len(bytes.TrimSpace(raw)) > 0 {
		_ = json.Unmarshal(raw, &out.body)
	}
	return out
}

func (c *component) rows(t *testing.T) (products, outbox int) {
	t.Helper()
	ctx := context.Background()
	if err := c.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM outbox_messages)`).Scan(&products, &outbox); err != nil {
		t.Fatal(err)
	}
	return
}

const validBody = `{"sku":"C-1","name":"Lamp","description":"d","category":"home","brand":"Acme","price":{"amount":1999,"currency":"EUR"},"stock":5,"attributes":{"color":"red"}}`

// TestBadInputWritesNothing: every client mistake gets its 4xx as problem+json and leaves no
// product row and no outbox row behind.
func TestBadInputWritesNothing(t *testing.T) {
	c := startServe(t)
	created := c.do(t, "POST", "/v1/products", validBody)
	if created.status != 201 {
		t.Fatalf("create: %d %v", created.status, created.body)
	}
	id := created.body["id"].(string)
	baseProducts, baseOutbox := c.rows(t)

	huge := `{"sku":"BIG","name":"` + strings.Repeat("x", 2<<20) + `","price":{"amount":1,"currency":"EUR"},"stock":1}`
	cases := []struct {
		name, method, path, body string
		headers                  []string
		want                     int
	}{
		{"malformed json", "POST", "/v1/products", `{"sku":`, nil, 400},
		{"wrong type", "POST", "/v1/products", `{"sku":"X","name":"n","price":{"amount":5,"currency":"EUR"},"stock":"many"}`, nil, 400},
		{"unknown field", "POST", "/v1/products", `{"sku":"X","name":"n","price":{"amount":5,"currency":"EUR"},"stock":1,"colour":"red"}`, nil, 400},
		{"negative price", "POST", "/v1/products", `{"sku":"X","name":"n","price":{"amount":-5,"currency":"EUR"},"stock":1}`, nil, 422},
		{"negative stock", "POST", "/v1/products", `{"sku":"X","name":"n","price":{"amount":5,"currency":"EUR"},"stock":-1}`, nil, 422},
		{"unknown currency", "POST", "/v1/products", `{"sku":"X","name":"n","price":{"amount":5,"currency":"XXX"},"stock":1}`, nil, 422},
		{"oversize body", "POST", "/v1/products", huge, nil, 413},
		{"missing if-match", "PUT", "/v1/products/" + id, validBody, nil, 428},
		{"stale if-match", "PUT", "/v1/products/" + id, validBody, []string{"If-Match", "7"}, 409},
		{"unknown id", "PUT", "/v1/products/0190a0b0-0000-7000-8000-000000000000", validBody, []string{"If-Match", "1"}, 404},
		{"non-uuid id", "PUT", "/v1/products/not-a-uuid", validBody, []string{"If-Match", "1"}, 400},
		{"get non-uuid", "GET", "/v1/products/not-a-uuid", "", nil, 400},
		{"get unknown", "GET", "/v1/products/0190a0b0-0000-7000-8000-000000000000", "", nil, 404},
		{"delete unknown", "DELETE", "/v1/products/0190a0b0-0000-7000-8000-000000000000", "", []string{"If-Match", "1"}, 404},
		{"duplicate sku", "POST", "/v1/products", validBody, nil, 409},
		{"invalid utf-8 in name", "POST", "/v1/products", strings.NewReplacer(`"C-1"`, `"C-U8"`, `"Lamp"`, "\"bad \xff\xfe utf8\"").Replace(validBody), nil, 400},
		{"invalid utf-8 in update", "PUT", "/v1/products/" + id, strings.Replace(validBody, `"red"`, "\"r\xc3d\"", 1), []string{"If-Match", "1"}, 400},
		{"escaped lone surrogate", "POST", "/v1/products", strings.NewReplacer(`"C-1"`, `"C-U16"`, `"Lamp"`, `"L\udc00mp"`).Replace(validBody), nil, 400},
		{"duplicate member", "POST", "/v1/products", strings.Replace(validBody, `"sku":"C-1"`, `"sku":"C-2","sku":"C-3"`, 1), nil, 400},
		{"duplicate member in update", "PUT", "/v1/products/" + id, strings.Replace(validBody, `"stock":5`, `"stock":5,"stock":6`, 1), []string{"If-Match", "1"}, 400},
		{"null body", "POST", "/v1/products", `null`, nil, 400},
		{"array body", "POST", "/v1/products", `[1,2]`, nil, 400},
		{"delete without if-match", "DELETE", "/v1/products/" + id, "", nil, 428},
		{"delete stale if-match", "DELETE", "/v1/products/" + id, "", []string{"If-Match", "2"}, 409},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(t, tc.method, tc.path, tc.body, tc.headers...)
			if r.status != tc.want {
				t.Errorf("status %d, want %d (%v)", r.status, tc.want, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("content type %q, want application/problem+json", ct)
			}
			if p, o := c.rows(t); p != baseProducts || o != baseOutbox {
				t.Errorf("rows changed: products %d->%d, outbox %d->%d", baseProducts, p, baseOutbox, o)
			}
		})
	}
	if r := c.do(t, "GET", "/v1/products/"+id, ""); r.status != 200 || r.body["version"] != float64(1) || r.body["name"] != "Lamp" {
		t.Errorf("the product changed under refused requests: %d %v", r.status, r.body)
	}
}

// TestWritePathEndToEnd: create (idempotent), update, delete through the API reach the
// embedded broker as versioned events; SIGTERM-style cancellation stops cleanly.
func TestWritePathEndToEnd(t *testing.T) {
	c := startServe(t)
	r1 := c.do(t, "POST", "/v1/products", validBody, "Idempotency-Key", "k-1")
	r2 := c.do(t, "POST", "/v1/products", validBody, "Idempotency-Key", "k-1")
	if r1.status != 201 || r2.body["id"] != r1.body["id"] {
		t.Fatalf("idempotent create: %d %v / %d %v", r1.status, r1.body, r2.status, r2.body)
	}
	if r := c.do(t, "POST", "/v1/products", strings.Replace(validBody, "Lamp", "Other", 1), "Idempotency-Key", "k-1"); r.status != 422 {
		t.Fatalf("key reuse with another body: %d, want 422", r.status)
	}
	id := r1.body["id"].(string)
	upd := strings.Replace(validBody, `"amount":1999`, `"amount":999`, 1)
	if r := c.do(t, "PUT", "/v1/products/"+id, upd, "If-Match", "1"); r.status != 200 || r.body["version"] != float64(2) {
		t.Fatalf("update: %d %v", r.status, r.body)
	}
	if r := c.do(t, "DELETE", "/v1/products/"+id, "", "If-Match", "2"); r.status != 204 {
		t.Fatalf("delete: %d %v", r.status, r.body)
	}
	if r := c.do(t, "GET", "/v1/products/"+id, ""); r.status != 410 && r.status != 404 {
		t.Fatalf("get after delete: %d", r.status)
	}
	if r := c.do(t, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz: %d %v", r.status, r.body)
	}
	cluster := testkafka.Cluster{Name: "embedded", Brokers: []string{c.cfg.EmbeddedKafkaAddr}}
	want := map[int64]string{1: "product.created", 2: "product.price_changed", 3: "product.deleted"}
	got := map[int64]string{}
	testkafka.ReadUntil(t, cluster, c.cfg.ProductEventsTopic, 60*time.Second, func(rs []testkafka.Record) bool {
		for _, r := range rs {
			ev, err := envelope.Unmarshal(r.Value)
			if err == nil && ev.AggregateID.String() == id {
				got[ev.AggregateVersion] = string(ev.Type)
			}
		}
		return len(got) == len(want)
	})
	for v, typ := range want {
		if got[v] != typ {
			t.Errorf("version %d: event %q, want %q (got %v)", v, got[v], typ, got)
		}
	}
	if err := c.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}
