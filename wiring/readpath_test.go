package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
	"github.com/marketplace/catalog/wiring"
)

// readPath is a pipeline on the real servers: Postgres, Kafka and the Elasticsearch-API server,
// with this test's own topics, consumer group and alias.
type readPath struct {
	*component
	kafka  testkafka.Cluster
	esURL  string
	compat string
}

type readPathOption func(*testing.T, *service.Config)

// withProxiedSearch routes the service's search traffic through a proxy the test can cut.
func withProxiedSearch(p **testenv.Proxy) readPathOption {
	return func(t *testing.T, c *service.Config) {
		u, err := url.Parse(c.ElasticsearchURL)
		if err != nil {
			t.Fatal(err)
		}
		*p = testenv.NewProxy(t, u.Host)
		c.ElasticsearchURL = "http://" + (*p).Addr()
	}
}

// withIndexSettings pre-creates the alias's first index with extra settings (gc_deletes, say).
func withIndexSettings(settings map[string]any) readPathOption {
	return func(t *testing.T, c *service.Config) {
		ecfg := elasticsearch.Config{URL: c.ElasticsearchURL, Compat: c.ElasticsearchCompat, Alias: c.SearchAlias, ExtraIndexSettings: settings}
		ix := searchIndices(t, ecfg)
		if _, _, err := ix.EnsureAlias(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func startReadPath(t *testing.T, opts ...readPathOption) *readPath {
	t.Helper()
	cluster := testkafka.Real(t)
	esURL, compat := testenv.ElasticsearchURL(t)
	name := strings.ToLower(testenv.Name("rp"))
	rp := &readPath{kafka: cluster, esURL: esURL, compat: compat}
	testkafka.DropOnCleanup(t, cluster, name+".events", "dlq."+name+".events")
	rp.component = startServe(t, func(c *service.Config) {
		c.KafkaBrokers = cluster.Brokers
		c.ElasticsearchURL, c.ElasticsearchCompat = esURL, compat
		c.SearchAlias = name
		c.ProductEventsTopic = name + ".events"
		c.DLQTopic = "dlq." + name + ".events"
		c.ProjectorGroup = name + "-projector"
		c.TopicPartitions = 6
		for _, o := range opts {
			o(t, c)
		}
	})
	t.Cleanup(func() { rp.dropIndices(t) })
	return rp
}

func (rp *readPath) dropIndices(t *testing.T) {
	req, _ := http.NewRequest("DELETE", rp.esURL+"/"+rp.cfg.SearchAlias+"_v*", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
}

type searchPage struct {
	Items []struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
		Stock   int64  `json:"stock"`
		Price   struct {
			Amount int64 `json:"amount"`
		} `json:"price"`
	} `json:"items"`
	Total      int64  `json:"total"`
	NextCursor string `json:"next_cursor"`
}

func (rp *readPath) search(t *testing.T, qs string) (int, searchPage) {
	t.Helper()
	res, err := http.Get(rp.base + "/v1/products/search?" + qs)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var p searchPage
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &p)
	return res.StatusCode, p
}

// waitSearch polls the search API (the alias, through _search) until cond holds.
func (rp *readPath) waitSearch(t *testing.T, qs string, timeout time.Duration, what string, cond func(searchPage) bool) searchPage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, p := rp.search(t, qs)
		if code == 200 && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("search ?%s: %s not reached within %s (last: %d %+v)", qs, what, timeout, code, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func product201(t *testing.T, c *component, sku, name, category string, amount int64) string {
	t.Helper()
	r := c.do(t, "POST", "/v1/products", fmt.Sprintf(`{"sku":%q,"name":%q,"description":"read path","category":%q,"brand":"Acme","price":{"amount":%d,"currency":"EUR"},"stock":3,"attributes":{"color":"red"}}`, sku, name, category, amount))
	if r.status != 201 {
		t.Fatalf("create %s: %d %v", sku, r.status, r.body)
	}
	return r.body["id"].(string)
}

// TestReadPathThroughTheAPI: create, update, price change, stock change and delete through
// REST become visible through the search API.
func TestReadPathThroughTheAPI(t *testing.T) {
	rp := startReadPath(t)
	a := product201(t, rp.component, "RP-1", "Wireless speaker", "audio", 1999)
	product201(t, rp.component, "RP-2", "Wireless headphones", "audio", 5999)
	c := product201(t, rp.component, "RP-3", "Garden hose", "garden", 999)
	rp.waitSearch(t, "q=wireless", 15*time.Second, "2 wireless", func(p searchPage) bool { return p.Total == 2 })

	body := func(amount, stock int64, name string) string {
		return fmt.Sprintf(`{"sku":"RP-1","name":%q,"description":"read path","category":"audio","brand":"Acme","price":{"amount":%d,"currency":"EUR"},"stock":%d,"attributes":{}}`, name, amount, stock)
	}
	steps := []struct {
		body, check string
		cond        func(searchPage) bool
	}{
		{body(1999, 3, "Wireless speaker XL"), "q=XL", func(p searchPage) bool { return p.Total == 1 && p.Items[0].Version == 2 }},
		{body(999, 3, "Wireless speaker XL"), "q=wireless&max_price=1000", func(p searchPage) bool { return p.Total == 1 && p.Items[0].Version == 3 }},
		{body(999, 0, "Wireless speaker XL"), "q=wireless&in_stock=false", func(p searchPage) bool { return p.Total == 1 && p.Items[0].Version == 4 }},
	}
	for i, s := range steps {
		if r := rp.do(t, "PUT", "/v1/products/"+a, s.body, "If-Match", fmt.Sprint(i+1)); r.status != 200 {
			t.Fatalf("step %d: %d %v", i, r.status, r.body)
		}
		rp.waitSearch(t, s.check, 15*time.Second, fmt.Sprintf("step %d", i), s.cond)
	}
	if r := rp.do(t, "DELETE", "/v1/products/"+c, "", "If-Match", "1"); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	rp.waitSearch(t, "category=garden", 15*time.Second, "garden hose hidden", func(p searchPage) bool { return p.Total == 0 })

	for _, q := range []string{"q=" + url.QueryEscape("' OR 1=1--"), "q=name:*", "q=" + url.QueryEscape("/.*{9999}/"),
		"size=100000", "cursor=garbage", "min_price=abc", "sort=nope", "q=" + url.QueryEscape("ünïcødé ✓"), "q=" + strings.Repeat("x", 600)} {
		if code, _ := rp.search(t, q); code >= 500 {
			t.Errorf("search ?%s gave %d", q, code)
		}
	}
}

// publish writes events straight to the topic, as the relay would.
func (rp *readPath) publish(t *testing.T, topic string, values ...[]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(rp.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, v := range values {
		key := ""
		if ev, err := envelope.Unmarshal(v); err == nil {
			key = ev.AggregateID.String()
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// history returns the encoded events of one product: create, then n-1 stock changes, and a
// final delete when del.
func history(t *testing.T, sku string, n int, del bool) (product.ID, [][]byte) {
	t.Helper()
	now := time.Now()
	d, err := product.NewDetails(sku, "Order test "+sku, "", "ordering", "Acme", 100, "EUR", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := product.New(product.NewID(now), d, now)
	if err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= n; v++ {
		if del && v == n {
			err = p.Delete(now)
		} else {
			err = p.ChangeStock(int64(v*10), now)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	for _, e := range p.PopEvents() {
		m, err := envelope.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Payload)
	}
	return p.ID(), out
}

// doc reads a document straight from the alias (for versions of tombstones, which search hides).
func (rp *readPath) doc(t *testing.T, id product.ID) (version int64, deleted bool, found bool) {
	t.Helper()
	res, err := http.Get(rp.esURL + "/" + rp.cfg.SearchAlias + "/_doc/" + id.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var d struct {
		Found   bool  `json:"found"`
		Version int64 `json:"_version"`
		Source  struct {
			Deleted bool `json:"deleted"`
		} `json:"_source"`
	}
	_ = json.NewDecoder(res.Body).Decode(&d)
	return d.Version, d.Source.Deleted, d.Found
}

func eventuallyT(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOrderAndDuplicatesDoNotMatter: v3, v1, v2 published in that order end at v3; duplicates
// change nothing; a delete (v2) before its create (v1), with the create arriving after the
// index's gc_deletes window, leaves the product deleted.
func TestOrderAndDuplicatesDoNotMatter(t *testing.T) {
	rp := startReadPath(t, withIndexSettings(map[string]any{"index.gc_deletes": "1s"}))
	topic := rp.cfg.ProductEventsTopic
	id, evs := history(t, "ORD-1", 3, false)
	rp.publish(t, topic, evs[2], evs[0], evs[1], evs[2], evs[0])
	eventuallyT(t, 20*time.Second, "v3 in the read model", func() bool { v, _, ok := rp.doc(t, id); return ok && v == 3 })
	p := rp.waitSearch(t, "category=ordering", 10*time.Second, "one live product at v3", func(p searchPage) bool { return p.Total == 1 })
	if p.Items[0].Version != 3 || p.Items[0].Stock != 30 {
		t.Fatalf("document %+v, want version 3 with stock 30", p.Items[0])
	}

	delID, del := history(t, "ORD-2", 2, true)
	rp.publish(t, topic, del[1])
	eventuallyT(t, 20*time.Second, "tombstone v2", func() bool { v, d, ok := rp.doc(t, delID); return ok && v == 2 && d })
	time.Sleep(1500 * time.Millisecond) // past gc_deletes: a real delete would have forgotten its version by now
	marker, more := history(t, "ORD-3", 1, false)
	rp.publish(t, topic, del[0], more[0])
	eventuallyT(t, 20*time.Second, "the marker after the late create", func() bool { _, _, ok := rp.doc(t, marker); return ok })
	if v, d, _ := rp.doc(t, delID); v != 2 || !d {
		t.Fatalf("late create resurrected the product: version %d deleted %v", v, d)
	}
	rp.waitSearch(t, "category=ordering", 10*time.Second, "the deleted product hidden", func(p searchPage) bool { return p.Total == 2 })
}

// TestPoisonMessagesGoToTheDLQExactlyOnce: an undecodable message and an event the strict
// mapping rejects land in the DLQ once each with their headers; later events are projected.
func TestPoisonMessagesGoToTheDLQExactlyOnce(t *testing.T) {
	rp := startReadPath(t)
	// A projection bug deployed: the live index maps price as a 32-bit integer, so a price
	// above 2^31 minor units is rejected by the mapping.
	narrowPriceMapping(t, rp)
	topic := rp.cfg.ProductEventsTopic
	now := time.Now()
	d, _ := product.NewDetails("POISON-1", "Expensive", "", "poison", "Acme", 5_000_000_000, "EUR", 1, nil)
	p, _ := product.New(product.NewID(now), d, now)
	rejected, _ := envelope.Marshal(p.PopEvents()[0])
	garbage := []byte(`{"this is":"not an event"`)
	rp.publish(t, topic, garbage, rejected.Payload)
	after := product201(t, rp.component, "AFTER-1", "After the poison", "poison", 100)

	rp.waitSearch(t, "category=poison", 20*time.Second, "the event after the poison", func(p searchPage) bool {
		return p.Total == 1 && p.Items[0].ID == after
	})
	seen := map[string]int{}
	headers := map[string]map[string]string{}
	keys := map[string]string{}
	testkafka.ReadUntil(t, rp.kafka, rp.cfg.DLQTopic, 15*time.Second, func(rs []testkafka.Record) bool {
		seen = map[string]int{}
		for _, r := range rs {
			seen[string(r.Value)]++
			headers[string(r.Value)] = r.Headers
			keys[string(r.Value)] = r.Key
		}
		return seen[string(garbage)] >= 1 && seen[string(rejected.Payload)] >= 1
	})
	time.Sleep(2 * time.Second) // give a duplicate the chance to show up
	final := testkafka.ReadUntil(t, rp.kafka, rp.cfg.DLQTopic, 5*time.Second, func(rs []testkafka.Record) bool { return len(rs) >= 3 })
	if len(final) != 2 {
		t.Fatalf("DLQ holds %d messages, want exactly 2", len(final))
	}
	for value, class := range map[string]string{string(garbage): "undecodable", string(rejected.Payload): "rejected"} {
		h := headers[value]
		if seen[value] != 1 {
			t.Errorf("%.40s... in the DLQ %d times", value, seen[value])
		}
		if h["dlq_error_class"] != class {
			t.Errorf("class %q, want %q (headers %v)", h["dlq_error_class"], class, h)
		}
		for _, k := range []string{"dlq_reason", "dlq_handler", "dlq_original_topic", "dlq_original_partition", "dlq_original_offset", "dlq_attempts", "dlq_failed_at"} {
			if h[k] == "" {
				t.Errorf("DLQ message lacks header %s: %v", k, h)
			}
		}
		if h["dlq_original_topic"] != topic {
			t.Errorf("original topic %q, want %q", h["dlq_original_topic"], topic)
		}
	}
	// The dead letter keeps its record's key, the product id, so a replay lands on the
	// product's partition (the record carries no aggregate_id header to fall back on).
	if k := keys[string(rejected.Payload)]; k != p.ID().String() {
		t.Errorf("DLQ key of the rejected event %q, want the product id %s", k, p.ID())
	}
}

// narrowPriceMapping points the alias at an index whose price amount is a 32-bit integer.
func narrowPriceMapping(t *testing.T, rp *readPath) {
	t.Helper()
	get := func(path string) map[string]any {
		res, err := http.Get(rp.esURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return out
	}
	current := ""
	for name := range get("/_alias/" + rp.cfg.SearchAlias) {
		current = name
	}
	mapping := get("/" + current + "/_mapping")[current].(map[string]any)["mappings"].(map[string]any)
	raw, _ := json.Marshal(mapping)
	narrowed := strings.Replace(string(raw), `"amount":{"type":"long"}`, `"amount":{"type":"integer"}`, 1)
	narrowed = strings.Replace(narrowed, `"price_amount":{"type":"long"}`, `"price_amount":{"type":"integer"}`, 1)
	if narrowed == string(raw) {
		t.Fatalf("could not find the price amount in the mapping: %s", raw)
	}
	bad := current + "_narrow"
	put := func(method, path, body string) {
		req, _ := http.NewRequest(method, rp.esURL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode >= 300 {
			b, _ := io.ReadAll(res.Body)
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
	}
	put("PUT", "/"+bad, `{"settings":{"number_of_replicas":0},"mappings":`+narrowed+`}`)
	put("POST", "/_aliases", fmt.Sprintf(`{"actions":[{"remove":{"index":%q,"alias":%q}},{"add":{"index":%q,"alias":%q}}]}`, current, rp.cfg.SearchAlias, bad, rp.cfg.SearchAlias))
	t.Cleanup(func() { put("DELETE", "/"+bad, "") })
}

// TestSearchOutageStallsWithoutDeadLetters: the search cluster is unreachable for 20 s while
// events keep flowing; nothing goes to the DLQ and every event is projected after it returns.
func TestSearchOutageStallsWithoutDeadLetters(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s outage")
	}
	var proxy *testenv.Proxy
	rp := startReadPath(t, withProxiedSearch(&proxy))
	product201(t, rp.component, "OUT-0", "Before the outage", "outage", 100)
	rp.waitSearch(t, "category=outage", 15*time.Second, "first product", func(p searchPage) bool { return p.Total == 1 })

	proxy.Down()
	start := time.Now()
	n := 1
	for time.Since(start) < 20*time.Second {
		product201(t, rp.component, fmt.Sprintf("OUT-%d", n), "During the outage", "outage", 100)
		n++
		time.Sleep(250 * time.Millisecond)
	}
	proxy.Up()
	rp.waitSearch(t, "category=outage&size=100", 60*time.Second, fmt.Sprintf("all %d products", n), func(p searchPage) bool { return p.Total == int64(n) })
	dlq := testkafka.ReadUntil(t, rp.kafka, rp.cfg.DLQTopic, 3*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 0 })
	if len(dlq) != 0 {
		t.Fatalf("the outage sent %d messages to the DLQ; transient failures must be retried", len(dlq))
	}
	t.Logf("%d events written during a 20 s search outage, all projected after it", n-1)
}

// TestReplayFromOffsetZeroGivesTheSameReadModel resets the projector's consumer group to the
// start of the topic and replays everything: ids, versions and contents stay identical.
func TestReplayFromOffsetZeroGivesTheSameReadModel(t *testing.T) {
	rp := startReadPath(t)
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, product201(t, rp.component, fmt.Sprintf("REP-%d", i), fmt.Sprintf("Replay %d", i), "replay", int64(100+i)))
	}
	for i, id := range ids[:10] {
		if r := rp.do(t, "PUT", "/v1/products/"+id, fmt.Sprintf(`{"sku":"REP-%d","name":"Replay %d v2","category":"replay","price":{"amount":7,"currency":"EUR"},"stock":1}`, i, i), "If-Match", "1"); r.status != 200 {
			t.Fatalf("update: %d %v", r.status, r.body)
		}
	}
	for _, id := range ids[10:13] {
		if r := rp.do(t, "DELETE", "/v1/products/"+id, "", "If-Match", "1"); r.status != 204 {
			t.Fatalf("delete: %d", r.status)
		}
	}
	rp.waitSearch(t, "category=replay&size=100", 20*time.Second, "17 live", func(p searchPage) bool { return p.Total == 17 })
	eventuallyT(t, 20*time.Second, "updates projected", func() bool {
		_, p := rp.search(t, "category=replay&max_price=7&size=100")
		return p.Total == 10
	})
	before := rp.snapshotIndex(t)

	// Stop the service (its projector leaves the group), rewind the group, replay with a
	// projector process of its own.
	if err := rp.stop(); err != nil {
		t.Fatal(err)
	}
	rewindGroup(t, rp.kafka, rp.cfg.ProjectorGroup, rp.cfg.ProductEventsTopic)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	proc, cleanup, err := wiring.InitializeProject(context.Background(), rp.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	defer func() { cancel(); <-done; cleanup() }()
	eventuallyT(t, 30*time.Second, "the group to consume the whole topic again", func() bool {
		return groupLag(t, rp.kafka, rp.cfg.ProjectorGroup, rp.cfg.ProductEventsTopic) == 0
	})
	after := rp.snapshotIndex(t)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("read model changed by the replay:\nbefore %v\nafter  %v", before, after)
	}
}

// snapshotIndex returns every document of the alias, tombstones included: id -> version+source.
func (rp *readPath) snapshotIndex(t *testing.T) map[string]string {
	t.Helper()
	req, _ := http.NewRequest("POST", rp.esURL+"/"+rp.cfg.SearchAlias+"/_refresh", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	res, err := http.Get(rp.esURL + "/" + rp.cfg.SearchAlias + "/_search?size=1000&version=true")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Hits struct {
			Hits []struct {
				ID      string          `json:"_id"`
				Version int64           `json:"_version"`
				Source  json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, h := range body.Hits.Hits {
		out[h.ID] = fmt.Sprintf("%d %s", h.Version, h.Source)
	}
	if len(out) == 0 {
		t.Fatal("empty read model")
	}
	return out
}

func admin(t *testing.T, c testkafka.Cluster) (*kadm.Client, func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

func rewindGroup(t *testing.T, c testkafka.Cluster, group, topic string) {
	t.Helper()
	adm, closeFn := admin(t, c)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	// The group may still be emptying after the service stopped: retry until the broker agrees.
	for {
		resp, err := adm.CommitOffsets(ctx, group, starts.Offsets())
		if err == nil && resp.Error() == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("rewind group %s: %v / %v", group, err, resp.Error())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func groupLag(t *testing.T, c testkafka.Cluster, group, topic string) int64 {
	t.Helper()
	adm, closeFn := admin(t, c)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return -1
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(topic, o.Partition)
		if !ok {
			lag += o.Offset
			return
		}
		lag += o.Offset - c.At
	})
	return lag
}
