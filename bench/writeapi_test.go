package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5"

	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
	httpport "github.com/marketplace/catalog/ports/http"
)

// targetAPIRatio is the write API's target: the write API reaches at least 60% of a raw pgx
// transaction doing the same writes.
const targetAPIRatio = 0.60

// Phases of each closed-loop measurement.
const (
	writeWarmup = time.Second
	writeWindow = 5 * time.Second
)

// BenchmarkWriteAPI measures POST /v1/products through the real HTTP server (httpport on a
// loopback listener, the application assembled as wiring does, the Postgres repository), from
// 1 and 16 keep-alive clients, each for 5 s after 1 s of warm-up, with no relay running. The
// clients are a wrk-like load generator (see wireConn); the same API through Go's net/http
// client is printed beside it. Also at the same concurrency, same database: the create command
// called in-process (no HTTP),
// and the raw baseline, a plain pgx transaction that upserts a product row and inserts one
// outbox row of the same size.
func BenchmarkWriteAPI(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchWriteAPI(b, clients) })
	}
}

func benchWriteAPI(b *testing.B, clients int) {
	noNsPerOp(b)
	// The pool size `catalog serve` uses (16 + 2 per lane).
	db := migratedDB(b, int32(16+2*postgres.DefaultLanes))
	const topic = "product.events"
	run := runID()

	// The application, assembled as wiring/application.go does, logging at info like production
	// (formatted, then discarded), with the real Prometheus registry.
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app := newApplication(b, db, topic, log)
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	srv, err := httpport.NewServer(httpport.Config{Addr: addr}, app, httpport.Deps{
		Log: log, Ready: map[string]func(context.Context) error{"postgres": db.Ping}, Metrics: reg.Handler(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	defer func() { cancel(); <-served }()
	waitListening(b, addr, served)

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	url := "http://" + addr + "/v1/products"
	var seq atomic.Int64

	postAPI := func(ctx context.Context) error {
		body := createBody(run, int(seq.Add(1)))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		respBody, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST %s: %s: %s", url, resp.Status, respBody)
		}
		return nil
	}

	// The load generator: like wrk, one goroutine per keep-alive connection writes the request
	// and parses the response itself. Go's http.Client hands every request to a writer and a
	// reader goroutine of its own; on 2 vCPUs shared with Postgres those handoffs cost the
	// caller about 0.1 ms per request, which is the harness, not the API. Both are reported.
	conns := make(chan *wireConn, clients)
	for range clients {
		c, err := dialWire(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.close()
		conns <- c
	}
	postWire := func(ctx context.Context) error {
		c := <-conns
		defer func() { conns <- c }()
		return c.post("/v1/products", createBody(run, int(seq.Add(1))), http.StatusCreated)
	}

	// The floor of the HTTP transport: the same client and server, a handler that does nothing
	// (GET /healthz). API latency minus this is what the write path costs behind HTTP.
	health := "http://" + addr + "/healthz"
	getHealth := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", health, resp.Status)
		}
		return nil
	}

	// The same command called in-process: what the HTTP layer adds is API minus this.
	createInProcess := func(ctx context.Context) error {
		d := benchDetails(run+"i", int(seq.Add(1)))
		_, err := app.Commands.CreateProduct.Handle(ctx, command.CreateProduct{Input: command.ProductInput{
			SKU: d.SKU, Name: d.Name, Description: d.Description, Category: d.Category, Brand: d.Brand,
			Amount: d.Price.Amount(), Currency: d.Price.Currency(), Stock: d.Stock, Attributes: d.Attributes,
		}})
		return err
	}

	// The raw baseline writes an outbox row of the size the repository writes.
	sample, err := newOutboxEvent(topic, run, 0)
	if err != nil {
		b.Fatal(err)
	}
	rawTx := func(ctx context.Context) error {
		return rawWrite(ctx, db, run, int(seq.Add(1)), sample.outboxValue)
	}

	checkpoint(b, db)
	// API and raw alternate A B B A in half windows, so that a drift in background load
	// (the machine is shared) weighs on both alike and cancels out of the ratio.
	half := writeWindow / 2
	api := closedLoop(clients, writeWarmup, half, postWire)
	raw := closedLoop(clients, writeWarmup, half, rawTx)
	raw = raw.merge(closedLoop(clients, 0, half, rawTx))
	api = api.merge(closedLoop(clients, 0, half, postWire))
	viaStd := closedLoop(clients, writeWarmup/2, writeWindow/2, postAPI)
	inproc := closedLoop(clients, writeWarmup/2, writeWindow/2, createInProcess)
	floor := closedLoop(clients, writeWarmup/2, writeWindow/2, getHealth)

	for name, r := range map[string]loadResult{"api": api, "api via net/http client": viaStd, "in-process": inproc, "raw": raw, "healthz": floor} {
		if r.errs > 0 {
			b.Logf("%s: %d errors, first: %v", name, r.errs, r.firstErr)
		}
	}
	ratio := api.rate() / raw.rate()
	b.ReportMetric(api.rate(), "cmds/s")
	b.ReportMetric(ms(api.lat.pct(50)), "p50_ms")
	b.ReportMetric(ms(api.lat.pct(99)), "p99_ms")
	b.ReportMetric(raw.rate(), "raw_tx/s")
	b.ReportMetric(ms(raw.lat.pct(50)), "raw_p50_ms")
	b.ReportMetric(ms(raw.lat.pct(99)), "raw_p99_ms")
	b.ReportMetric(inproc.rate(), "inproc_cmds/s")
	b.ReportMetric(100*ratio, "%_of_raw")
	b.ReportMetric(ms(floor.lat.pct(50)), "http_floor_p50_ms")
	// Closed-loop throughput is 1/mean latency per client, so a few stalls from other work on
	// the machine move it; the ratio of medians is the steadier figure beside it.
	p50Ratio := float64(raw.lat.pct(50)) / float64(api.lat.pct(50))
	b.ReportMetric(100*p50Ratio, "%_of_raw_p50")
	b.ReportMetric(viaStd.rate(), "nethttp_client_cmds/s")
	summary(b, "write-api c=%d: %.0f cmds/s p50 %.2fms p99 %.2fms%s (keep-alive HTTP/1.1 load generator, one goroutine per connection) | raw pgx baseline: %.0f tx/s p50 %.2fms p99 %.2fms -> API at %.1f%% of raw (by p50 latency: %.1f%%), target >= %.0f%% %s | same API through Go's net/http client: %.0f cmds/s p50 %.2fms (%.1f%% of raw)%s | in-process command (no HTTP): %.0f cmds/s p50 %.2fms p99 %.2fms | HTTP floor (GET /healthz): %.0f req/s p50 %.2fms",
		clients, api.rate(), ms(api.lat.pct(50)), ms(api.lat.pct(99)), errNote(api),
		raw.rate(), ms(raw.lat.pct(50)), ms(raw.lat.pct(99)),
		100*ratio, 100*p50Ratio, 100*targetAPIRatio, verdict(ratio >= targetAPIRatio && api.errs == 0),
		viaStd.rate(), ms(viaStd.lat.pct(50)), 100*viaStd.rate()/raw.rate(), errNote(viaStd),
		inproc.rate(), ms(inproc.lat.pct(50)), ms(inproc.lat.pct(99)),
		floor.rate(), ms(floor.lat.pct(50)))
}

func errNote(r loadResult) string {
	if r.errs == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d ERRORS)", r.errs)
}

// newApplication assembles the use cases over the Postgres repository the way
// wiring/application.go does.
func newApplication(b *testing.B, db *postgres.DB, topic string, log *slog.Logger) application.Application {
	b.Helper()
	repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{Topic: topic, Lanes: postgres.DefaultLanes}, log)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	deps := decorator.Deps{Log: log, Metrics: reg}
	create, err := command.NewCreateProductHandler(repo, time.Now, deps)
	if err != nil {
		b.Fatal(err)
	}
	update, err := command.NewUpdateProductHandler(repo, time.Now, deps)
	if err != nil {
		b.Fatal(err)
	}
	del, err := command.NewDeleteProductHandler(repo, time.Now, deps)
	if err != nil {
		b.Fatal(err)
	}
	waiter, err := query.NewVersionWaiter(repo, query.VersionWaiterConfig{ReadModel: "products"})
	if err != nil {
		b.Fatal(err)
	}
	byID, err := query.NewProductByIDHandler(repo, waiter, deps)
	if err != nil {
		b.Fatal(err)
	}
	return application.Application{
		Commands: application.Commands{CreateProduct: create, UpdateProduct: update, DeleteProduct: del},
		Queries:  application.Queries{ProductByID: byID},
	}
}

// waitListening waits until the server accepts connections.
func waitListening(b *testing.B, addr string, served <-chan error) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-served:
			b.Fatalf("http server stopped: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("http server did not listen on %s", addr)
}

// createBody is the JSON a client POSTs for the i-th product (the same details as benchDetails).
func createBody(run string, i int) []byte {
	d := benchDetails(run, i)
	body, err := json.Marshal(map[string]any{
		"sku": d.SKU, "name": d.Name, "description": d.Description, "category": d.Category, "brand": d.Brand,
		"price": map[string]any{"amount": d.Price.Amount(), "currency": d.Price.Currency()},
		"stock": d.Stock, "attributes": d.Attributes,
	})
	if err != nil {
		panic(err)
	}
	return body
}

const rawUpsertProduct = `INSERT INTO products (id, sku, name, description, category, brand, price_amount, price_currency, stock, attributes, version, created_at, updated_at, deleted_at)
VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
ON CONFLICT (id) DO UPDATE SET sku=EXCLUDED.sku, name=EXCLUDED.name, description=EXCLUDED.description,
  category=EXCLUDED.category, brand=EXCLUDED.brand, price_amount=EXCLUDED.price_amount,
  price_currency=EXCLUDED.price_currency, stock=EXCLUDED.stock, attributes=EXCLUDED.attributes,
  version=EXCLUDED.version, updated_at=EXCLUDED.updated_at, deleted_at=EXCLUDED.deleted_at`

const rawInsertOutbox = `INSERT INTO outbox_messages (lane, uuid, payload, metadata, transaction_id)
VALUES ($1, $2, $3, $4, pg_current_xact_id())`

var rawAttributes = []byte(`{"color":"steel","volume":"500ml","material":"stainless steel"}`)

// rawWrite is the baseline: one pgx transaction, the product upsert and one outbox row.
func rawWrite(ctx context.Context, db *postgres.DB, run string, i int, payload []byte) error {
	now := time.Now()
	id := product.NewID(now).String()
	d := benchDetails(run+"r", i)
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, rawUpsertProduct, id, d.SKU, d.Name, d.Description, d.Category, d.Brand,
			d.Price.Amount(), d.Price.Currency(), d.Stock, rawAttributes, int64(1), now, now, nil); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, rawInsertOutbox, int16(postgres.LaneOf(id, postgres.DefaultLanes)), watermill.NewUUID(), payload, emptyMetadata)
		return err
	})
}

// loadResult is one closed-loop measurement window.
type loadResult struct {
	ops      int
	errs     int
	firstErr error
	window   time.Duration
	lat      durations // sorted
}

func (r loadResult) rate() float64 { return float64(r.ops) / r.window.Seconds() }

// merge adds another window of the same measurement.
func (r loadResult) merge(o loadResult) loadResult {
	r.ops += o.ops
	r.errs += o.errs
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	r.window += o.window
	r.lat = append(r.lat, o.lat...).sorted()
	return r
}

// closedLoop runs op from clients goroutines back to back: warmup unmeasured, then window
// measured (operations that end after the window are not counted).
func closedLoop(clients int, warmup, window time.Duration, op func(context.Context) error) loadResult {
	ctx := context.Background()
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+window)
	var (
		mu  sync.Mutex
		res = loadResult{window: window}
		wg  sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat durations
			var ops, errs int
			var firstErr error
			for {
				t0 := time.Now()
				if !t0.Before(until) {
					break
				}
				err := op(ctx)
				t1 := time.Now()
				if t0.Before(from) || t1.After(until) {
					continue
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				ops++
				lat = append(lat, t1.Sub(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			res.ops += ops
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			res.lat = append(res.lat, lat...)
		}()
	}
	wg.Wait()
	res.lat = res.lat.sorted()
	return res
}

// wireConn is one keep-alive HTTP/1.1 connection driven by its caller's goroutine: the request
// is written and the response parsed inline, with no goroutine of the client in between.
type wireConn struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	buf  bytes.Buffer
}

func dialWire(addr string) (*wireConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &wireConn{addr: addr, conn: c, br: bufio.NewReader(c)}, nil
}

// post sends body as JSON to path and reads the whole response; a status other than want is
// an error carrying the response body.
func (c *wireConn) post(path string, body []byte, want int) error {
	c.buf.Reset()
	fmt.Fprintf(&c.buf, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, c.addr, len(body))
	c.buf.Write(body)
	if _, err := c.conn.Write(c.buf.Bytes()); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, respBody)
	}
	return nil
}

func (c *wireConn) close() { _ = c.conn.Close() }
