package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/searchdoc"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
)

// targetReadRatio is the read side's target: the pipeline (projector, rebuild)
// reaches at least 70% of a raw bulk load of the same documents into the same engine.
const targetReadRatio = 0.70

// searchServer is the Elasticsearch-API server of the environment (ELASTICSEARCH_URL,
// OpenSearch from `make deps`) and a client configured exactly as the service configures its
// own (elasticsearch.NewClient: retries, compat transport, connection pool).
type searchServer struct {
	url, compat string
	client      *es8.Client
}

// realSearch returns the search server; it skips outside CI when nothing answers there.
func realSearch(b *testing.B) searchServer {
	b.Helper()
	u, compat := testenv.ElasticsearchURL(b)
	client, err := elasticsearch.NewClient(elasticsearch.Config{URL: u, Compat: compat})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.Info(client.Info.WithContext(ctx))
	if err != nil {
		testenv.Unavailable(b, "Elasticsearch-API server at "+u, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.IsError() {
		testenv.Unavailable(b, "Elasticsearch-API server at "+u, fmt.Errorf("info: %s", res.Status()))
	}
	return searchServer{url: u, compat: compat, client: client}
}

// config is the adapter configuration of alias on this server: the service's defaults.
func (s searchServer) config(alias string) elasticsearch.Config {
	return elasticsearch.Config{URL: s.url, Compat: s.compat, Alias: alias}
}

// benchAlias is a read-model alias unique to this run; every index of it is deleted when the
// benchmark ends (unless KEEP_BENCH_INDICES=1), so repeated runs do not fill the server.
func benchAlias(b *testing.B, s searchServer, prefix string) string {
	b.Helper()
	alias := strings.ToLower(testenv.Name("bench_" + prefix))
	b.Cleanup(func() { s.deleteIndices(alias + "_v*") })
	return alias
}

// deleteIndices deletes the indices matching pattern.
func (s searchServer) deleteIndices(pattern string) {
	if os.Getenv("KEEP_BENCH_INDICES") == "1" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url+"/"+pattern+"?expand_wildcards=all&ignore_unavailable=true", nil)
	if err != nil {
		return
	}
	if res, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
}

// newIndices is index management of alias, as the service builds it.
func (s searchServer) newIndices(b *testing.B, cfg elasticsearch.Config) *elasticsearch.Indices {
	b.Helper()
	ix, err := elasticsearch.NewIndices(s.client, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return ix
}

// aliasCount refreshes the alias and counts its live and tombstone documents.
func aliasCount(ctx context.Context, ix *elasticsearch.Indices, index string) (int64, error) {
	if err := ix.Refresh(ctx, index); err != nil {
		return 0, err
	}
	live, tomb, err := ix.Count(ctx, index)
	return live + tomb, err
}

// createdEvents builds n product.created events the way ProductRepository.Add does
// (product.New, then envelope.Marshal of the recorded event) and the snapshots they carry.
func createdEvents(b *testing.B, run string, n int) ([]*message.Message, []product.Snapshot) {
	b.Helper()
	msgs := make([]*message.Message, n)
	snaps := make([]product.Snapshot, n)
	for i := range n {
		now := time.Now()
		p, err := product.New(product.NewID(now), benchDetails(run, i), now)
		if err != nil {
			b.Fatal(err)
		}
		evs := p.PopEvents()
		if len(evs) != 1 {
			b.Fatalf("product.New recorded %d events", len(evs))
		}
		msg, err := envelope.Marshal(evs[0])
		if err != nil {
			b.Fatal(err)
		}
		msgs[i], snaps[i] = msg, p.Snapshot()
	}
	return msgs, snaps
}

// prefillTopic produces msgs to topic with franz-go (key = aggregate id, Watermill's headers)
// and fails the benchmark unless every record was acknowledged.
func prefillTopic(b *testing.B, c cluster, topic string, msgs []*message.Message) time.Duration {
	b.Helper()
	res := produceKgoAsync(b, c, topic, msgs)
	if res.done != int64(len(msgs)) {
		b.Fatalf("prefill %s: %d of %d records acknowledged", topic, res.done, len(msgs))
	}
	return res.elapsed
}

// groupLag is the total lag of a consumer group on topic: end offsets minus committed ones.
func groupLag(ctx context.Context, brokers []string, group string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	lags, err := kadm.NewClient(cl).Lag(ctx, group)
	if err != nil {
		return 0, err
	}
	l, ok := lags[group]
	if !ok {
		return 0, fmt.Errorf("group %s not described", group)
	}
	if err := cmp.Or(l.DescribeErr, l.FetchErr); err != nil {
		return 0, err
	}
	return l.Lag.Total(), nil
}

// bulkDoc is one pre-encoded document of a raw bulk load.
type bulkDoc struct {
	id      string
	version int64
	body    []byte
	snap    product.Snapshot
}

// encodeDoc encodes the document the adapters store for s (searchdoc), so the raw baselines
// load the same bytes; sameSource checks that against a document the adapter wrote.
func encodeDoc(s product.Snapshot) bulkDoc {
	body, err := json.Marshal(searchdoc.New(s))
	if err != nil {
		panic(err)
	}
	return bulkDoc{id: string(s.ID), version: s.Version, body: body, snap: s}
}

func encodeDocs(snaps []product.Snapshot) []bulkDoc {
	out := make([]bulkDoc, len(snaps))
	for i, s := range snaps {
		out[i] = encodeDoc(s)
	}
	return out
}

// sameSource compares the _source the adapter stored for doc.id in target with doc.body; it
// returns "" when they are equal (as JSON values) and a description otherwise.
func sameSource(ctx context.Context, s searchServer, target string, doc bulkDoc) string {
	res, err := s.client.Get(target, doc.id, s.client.Get.WithContext(ctx))
	if err != nil {
		return fmt.Sprintf("get %s: %v", doc.id, err)
	}
	defer func() { _ = res.Body.Close() }()
	var got struct {
		Source map[string]any `json:"_source"`
	}
	if res.IsError() {
		return fmt.Sprintf("get %s: %s", doc.id, res.Status())
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		return fmt.Sprintf("get %s: %v", doc.id, err)
	}
	var want map[string]any
	_ = json.Unmarshal(doc.body, &want)
	if !reflect.DeepEqual(got.Source, want) {
		return fmt.Sprintf("document %s differs: adapter %v, raw baseline %v", doc.id, got.Source, want)
	}
	return ""
}

// rawBulkLoad loads docs into index with a plain esutil.BulkIndexer (the library's defaults:
// NumCPU workers, 5 MB requests) doing the same writes as the adapters (index action, the
// version as external_gte version), from one goroutine, and waits for every item (Close).
// The clock runs from the first Add to the end of Close.
func rawBulkLoad(b *testing.B, s searchServer, index string, docs []bulkDoc) drainResult {
	b.Helper()
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: s.client, Index: index})
	if err != nil {
		b.Fatal(err)
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	p := newProgress(len(docs))
	ctx := context.Background()
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.observe(ok.Load())
			}
		}
	}()
	for _, d := range docs {
		v := d.version
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "index", DocumentID: d.id, Version: &v, VersionType: "external_gte",
			Body: bytes.NewReader(d.body),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				ok.Add(1)
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				failed.Add(1)
				if err == nil {
					err = fmt.Errorf("%d %s: %s", r.Status, r.Error.Type, r.Error.Reason)
				}
				firstErr.CompareAndSwap(nil, err)
			},
		})
		if err != nil {
			b.Fatalf("raw bulk add: %v", err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		b.Fatalf("raw bulk close: %v", err)
	}
	close(stop)
	<-watched
	p.observe(ok.Load())
	p.res.failures = int(failed.Load())
	if p.res.failures > 0 {
		b.Logf("raw bulk load: %d items failed, first: %v", p.res.failures, firstErr.Load())
	}
	return p.res
}

// freshIndex creates an index of alias with the adapter's mapping (bulkLoad: the rebuild's
// load settings, refresh off and no replica; otherwise the live settings) for a raw baseline.
func freshIndex(b *testing.B, ix *elasticsearch.Indices, bulkLoad bool) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{BulkLoad: bulkLoad})
	if err != nil {
		b.Fatal(err)
	}
	return name
}
