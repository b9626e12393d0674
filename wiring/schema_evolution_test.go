package wiring_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/eventschema"
	"github.com/marketplace/catalog/service"
)

// withLiveIndexOfMappingVersion makes the alias's live index one that an earlier release
// created (mapping version v) before the service starts: the state a deployment of this
// release finds.
func withLiveIndexOfMappingVersion(v int) readPathOption {
	return func(t *testing.T, c *service.Config) {
		ecfg := elasticsearch.Config{URL: c.ElasticsearchURL, Compat: c.ElasticsearchCompat, Alias: c.SearchAlias}
		ix := searchIndices(t, ecfg)
		ctx := context.Background()
		name, err := ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{MappingVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.SwitchAlias(ctx, "", name); err != nil {
			t.Fatal(err)
		}
	}
}

// legacyProduct is a product of the release before tags with a name under the looser limit of
// an even older one (300 characters): its row, inserted with SQL as that release wrote it (no
// tags column), and its event in data version 1 (no data_version, no tags).
func legacyProduct(t *testing.T, rp *readPath, sku, name string) (product.ID, []byte) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	id := product.NewID(now)
	_, err := rp.db.Pool.Exec(context.Background(), `INSERT INTO products (id, sku, name, description, category, brand,
price_amount, price_currency, stock, attributes, version, created_at, updated_at)
VALUES ($1, $2, $3, 'legacy', 'legacy', 'Acme', 1000, 'EUR', 3, '{}', 1, $4, $4)`, id.String(), sku, name, now)
	if err != nil {
		t.Fatal(err)
	}
	d := product.UnmarshalDetailsFromHistory(sku, name, "legacy", "legacy", "Acme", 1000, "EUR", 3, nil, nil)
	msg, err := envelope.Marshal(product.Event{ID: product.NewID(now), Type: product.EventCreated, AggregateID: id, AggregateVersion: 1,
		OccurredAt: now, State: product.Snapshot{ID: id, Details: d, Version: 1, CreatedAt: now, UpdatedAt: now}})
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(msg.Payload, &env); err != nil {
		t.Fatal(err)
	}
	delete(env, "data_version")
	delete(env["data"].(map[string]any), "tags")
	v1, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventschema.ValidateAs(1, v1); err != nil {
		t.Fatalf("the legacy event is not a data version 1 event: %v", err)
	}
	return id, v1
}

// tagsPage is a search result with what the drill looks at.
type tagsPage struct {
	Items []struct {
		ID   string   `json:"id"`
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	} `json:"items"`
	Total int64 `json:"total"`
}

func (rp *readPath) searchTags(t *testing.T, qs string, timeout time.Duration, what string, cond func(tagsPage) bool) tagsPage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := http.Get(rp.base + "/v1/products/search?" + qs)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var p tagsPage
		if res.StatusCode == 200 && json.Unmarshal(raw, &p) == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("search ?%s: %s not reached within %s (last: %d %s)", qs, what, timeout, res.StatusCode, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topicRecords reads every record of topic from the start to its current end.
func topicRecords(t *testing.T, rp *readPath, topic string) []*kgo.Record {
	t.Helper()
	adm, closeAdm := admin(t, rp.kafka)
	defer closeAdm()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			total += o.Offset
		}
	})
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(rp.kafka.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records", topic, len(out), total)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out
}

// TestSchemaChangeDrill deploys this release (data version 2, mapping version 2: tags) over
// the state the release before left: a live index of mapping version 1, a product row written
// under an even older name limit (300 characters) and its version 1 event in Kafka. Nothing is
// dead-lettered; the old event projects with empty tags, a new product's tags are searchable at
// once; status reports the live index's mapping as behind the code; a Kafka rebuild that cannot
// validate leaves the alias alone; rebuilds from Kafka (a log of v1 and v2 events) and from the
// database produce v2 indices; a rollback to the v1 index is refused with the reason; events
// this release writes validate against their JSON Schema and, with CLOUDEVENTS_SOURCE set,
// carry CloudEvents binary-mode headers through the outbox and the relay.
func TestSchemaChangeDrill(t *testing.T) {
	const ceSource = "/catalog-drill"
	rp := startReadPath(t, withLiveIndexOfMappingVersion(1), func(_ *testing.T, c *service.Config) { c.CloudEventsSource = ceSource })
	v1Index := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if !strings.Contains(v1Index, "_v1_") {
		t.Fatalf("live index %s, want the v1 index made before the start", v1Index)
	}
	// The startup gave the v1 index the field this release writes, in place.
	if code, raw := esRequest(t, "GET", rp.esURL+"/"+v1Index+"/_mapping", ""); code != 200 || !strings.Contains(string(raw), `"tags"`) {
		t.Fatalf("mapping of %s after the start: %d %s; want tags added", v1Index, code, raw)
	}

	// Old history: a 300-character name, in a row and in a version 1 event.
	legacyName := "Heritagelamp " + strings.Repeat("x", 287)
	legacyID, legacyEvent := legacyProduct(t, rp, "LEGACY-1", legacyName)
	rp.publish(t, rp.cfg.ProductEventsTopic, legacyEvent)
	// New history: a product with tags, through the API (a data version 2 event).
	r := rp.do(t, "POST", "/v1/products", `{"sku":"DRILL-1","name":"Drill lantern","category":"drill","price":{"amount":500,"currency":"EUR"},"stock":2,"tags":["sale","drill"]}`)
	if r.status != 201 {
		t.Fatalf("create with tags: %d %v", r.status, r.body)
	}
	tagged := r.body["id"].(string)

	p := rp.searchTags(t, "q=heritagelamp", 30*time.Second, "the version 1 event projected", func(p tagsPage) bool { return p.Total == 1 })
	if it := p.Items[0]; it.ID != legacyID.String() || it.Name != legacyName || it.Tags == nil || len(it.Tags) != 0 {
		t.Fatalf("the legacy product shows %+v; want its 300-character name and empty tags", it)
	}
	p = rp.searchTags(t, "tags=sale,nothing", 30*time.Second, "the tagged product found by tag on the extended v1 index", func(p tagsPage) bool { return p.Total == 1 })
	if it := p.Items[0]; it.ID != tagged || !slices.Equal(it.Tags, []string{"sale", "drill"}) {
		t.Fatalf("tags=sale found %+v", it)
	}

	// Status: the live index's mapping is behind the code.
	out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, time.Minute, "status", "--json")
	var st struct {
		Problems  []struct{ Severity, Check, Message string } `json:"problems"`
		ReadModel struct {
			Index               string `json:"index"`
			IndexMappingVersion int    `json:"index_mapping_version"`
			CodeMappingVersion  int    `json:"code_mapping_version"`
		} `json:"read_model"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("catalog status --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	behind := slices.IndexFunc(st.Problems, func(p struct{ Severity, Check, Message string }) bool { return p.Check == "mapping_outdated" })
	if code != 1 || behind < 0 || st.ReadModel.Index != v1Index || st.ReadModel.IndexMappingVersion != 1 || st.ReadModel.CodeMappingVersion != 2 {
		t.Fatalf("catalog status: exit %d, read model %+v, problems %+v; want mapping_outdated for v1 behind v2", code, st.ReadModel, st.Problems)
	}
	t.Logf("status: %s", st.Problems[behind].Message)

	// A row without an event: a Kafka rebuild cannot validate and must leave the alias alone.
	orphanID, orphanEvent := legacyProduct(t, rp, "LEGACY-2", "Orphan row")
	_, errOut, code = runCLI(t, rp.cfg.GRPCAddr, 3*time.Minute, "rebuild", "--source=kafka", "--wait")
	if code == 0 {
		t.Fatalf("a Kafka rebuild missing %s succeeded", orphanID)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != v1Index {
		t.Fatalf("the alias moved to %s although the rebuild failed validation", got)
	}
	t.Logf("failed Kafka rebuild, alias kept: %s", tail(errOut, 2))
	rp.publish(t, rp.cfg.ProductEventsTopic, orphanEvent)

	// The log now mixes v1 and v2 events; the Kafka rebuild makes a v2 index.
	out, errOut, code = runCLI(t, rp.cfg.GRPCAddr, 3*time.Minute, "rebuild", "--source=kafka", "--wait")
	if code != 0 {
		t.Fatalf("catalog rebuild --source=kafka: exit %d\n%s\n%s", code, out, errOut)
	}
	kafkaIndex := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if !strings.Contains(kafkaIndex, "_v2_") {
		t.Fatalf("the Kafka rebuild made %s, want a v2 index", kafkaIndex)
	}
	rp.searchTags(t, "q=heritagelamp", 30*time.Second, "the legacy product in the Kafka-built index", func(p tagsPage) bool { return p.Total == 1 })
	rp.searchTags(t, "tags=drill", 30*time.Second, "the tagged product in the Kafka-built index", func(p tagsPage) bool { return p.Total == 1 })

	// Back to the v1 index: refused, with the reason, and the alias stays.
	out, errOut, code = runCLI(t, rp.cfg.GRPCAddr, time.Minute, "index", "rollback")
	if code == 0 || !strings.Contains(out+errOut, "mapping") || !strings.Contains(out+errOut, "catalog rebuild") {
		t.Fatalf("rollback to the v1 index: exit %d\n%s\n%s; want a refusal naming the mapping", code, out, errOut)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != kafkaIndex {
		t.Fatalf("the refused rollback moved the alias to %s", got)
	}
	t.Logf("rollback refused: %s", strings.TrimSpace(errOut))

	// The database rebuild makes a v2 index too.
	out, errOut, code = runCLI(t, rp.cfg.GRPCAddr, 3*time.Minute, "rebuild", "--wait")
	if code != 0 {
		t.Fatalf("catalog rebuild: exit %d\n%s\n%s", code, out, errOut)
	}
	dbIndex := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	if dbIndex == kafkaIndex || !strings.Contains(dbIndex, "_v2_") {
		t.Fatalf("the database rebuild left the alias on %s", dbIndex)
	}
	rp.searchTags(t, "q=heritagelamp", 30*time.Second, "the legacy row in the database-built index", func(p tagsPage) bool { return p.Total == 1 })
	rp.searchTags(t, "tags=sale", 30*time.Second, "the tagged product in the database-built index", func(p tagsPage) bool { return p.Total == 1 })
	out, _, code = runCLI(t, rp.cfg.GRPCAddr, time.Minute, "status", "--json")
	if code != 0 || strings.Contains(out, "mapping_outdated") {
		t.Fatalf("catalog status after the rebuilds: exit %d\n%s", code, out)
	}

	// Nothing was dead-lettered, and every event on the topic is valid under the schema of
	// its data version; those this release wrote are the newest version.
	if dlq := topicRecords(t, rp, rp.cfg.DLQTopic); len(dlq) != 0 {
		t.Fatalf("%d dead letters, the first: %s %s", len(dlq), dlq[0].Value, dlq[0].Headers)
	}
	records := topicRecords(t, rp, rp.cfg.ProductEventsTopic)
	written := 0
	for _, rec := range records {
		if err := eventschema.Validate(rec.Value); err != nil {
			t.Errorf("record %d/%d: %v\n%s", rec.Partition, rec.Offset, err, rec.Value)
		}
		headers := map[string]string{}
		for _, h := range rec.Headers {
			headers[h.Key] = string(h.Value)
		}
		if _, ours := headers[envelope.MetaDataVersion]; !ours {
			continue // a legacy event this test produced
		}
		written++
		if v, _ := eventschema.DataVersion(rec.Value); headers[envelope.MetaDataVersion] != "2" || v != 2 {
			t.Errorf("record %d/%d written as data version %s/%d, want 2", rec.Partition, rec.Offset, headers[envelope.MetaDataVersion], v)
		}
		if headers["ce_specversion"] != "1.0" || headers["ce_source"] != ceSource || headers["ce_type"] != "product.created" ||
			headers["ce_id"] != headers[envelope.MetaEventID] || headers["ce_subject"] != string(rec.Key) ||
			headers["ce_dataschema"] != envelope.DataSchema(2) || headers["content-type"] != "application/json" {
			t.Errorf("record %d/%d lacks the CloudEvents headers: %v", rec.Partition, rec.Offset, headers)
		}
	}
	if len(records) != 3 || written != 1 {
		t.Fatalf("%d records on the topic, %d written by this release; want the 2 legacy events and 1 of ours", len(records), written)
	}
}
