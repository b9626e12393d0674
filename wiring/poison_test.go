package wiring_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
)

// startEmbeddedReadPath is `catalog serve` with its embedded broker (what a single machine
// runs) and the real Elasticsearch-API server.
func startEmbeddedReadPath(t *testing.T) *readPath {
	t.Helper()
	esURL, compat := testenv.ElasticsearchURL(t)
	name := strings.ToLower(testenv.Name("erp"))
	rp := &readPath{esURL: esURL, compat: compat}
	rp.component = startServe(t, func(c *service.Config) {
		c.ElasticsearchURL, c.ElasticsearchCompat = esURL, compat
		c.SearchAlias = name
		c.TopicPartitions = 6
	})
	rp.kafka = testkafka.Cluster{Name: "embedded", Brokers: []string{rp.cfg.EmbeddedKafkaAddr}}
	t.Cleanup(func() { rp.dropIndices(t) })
	return rp
}

// eachBroker runs fn on a pipeline over the embedded broker and over the real Kafka.
func eachBroker(t *testing.T, fn func(t *testing.T, rp *readPath)) {
	t.Run("embedded", func(t *testing.T) { fn(t, startEmbeddedReadPath(t)) })
	t.Run("kafka", func(t *testing.T) { fn(t, startReadPath(t)) })
}

// metricValues returns the values of the series of /metrics whose name matches re.
func metricValues(t *testing.T, base string, re *regexp.Regexp) map[string]float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || !re.MatchString(series) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		out[series] = v
	}
	return out
}

// TestOversizedPoisonRecordReachesTheDLQOnce: a 2 MB record, snappy-compressed far below the
// broker's limit by its producer, and an undecodable one land in the DLQ once each under
// their keys (the product ids); the big one keeps its headers and the head of its payload,
// with headers saying how much was cut and why. Their partitions move on: a product written
// afterwards is searchable and the group's lag drains to zero. The status reports both as
// unhandled dead letters and no stalled partition. Before, the DLQ publish of the big record
// failed for ever (Producer.MaxMessageBytes) and its partition never committed again.
func TestOversizedPoisonRecordReachesTheDLQOnce(t *testing.T) {
	eachBroker(t, func(t *testing.T, rp *readPath) {
		const bigKey, junkKey = "00000000-0000-4000-8000-0000000000b1", "00000000-0000-4000-8000-0000000000b2"
		big := bytes.Repeat([]byte("x"), 2_000_000)
		cl, err := kgo.NewClient(kgo.SeedBrokers(rp.kafka.Brokers...), kgo.ProducerBatchMaxBytes(16<<20),
			kgo.ProducerBatchCompression(kgo.SnappyCompression()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for key, value := range map[string][]byte{bigKey: big, junkKey: []byte("not-json")} {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: rp.cfg.ProductEventsTopic, Key: []byte(key), Value: value}).FirstErr(); err != nil {
				t.Fatalf("produce %d bytes: %v", len(value), err)
			}
		}

		testkafka.ReadUntil(t, rp.kafka, rp.cfg.DLQTopic, 60*time.Second, func(rs []testkafka.Record) bool { return len(rs) >= 2 })
		id := product201(t, rp.component, "AFTER-POISON-1", "After poison lamp", "afterpoison", 700)
		rp.waitSearch(t, "category=afterpoison", 30*time.Second, "the product written after the poison", func(p searchPage) bool {
			return p.Total == 1 && p.Items[0].ID == id
		})
		eventuallyT(t, 30*time.Second, "the projector group's lag to drain", func() bool {
			return groupLag(t, rp.kafka, rp.cfg.ProjectorGroup, rp.cfg.ProductEventsTopic) == 0
		})
		dlq := testkafka.ReadUntil(t, rp.kafka, rp.cfg.DLQTopic, 5*time.Second, func(rs []testkafka.Record) bool { return len(rs) > 2 })
		keys := map[string]testkafka.Record{}
		for _, r := range dlq {
			keys[r.Key] = r
		}
		if len(dlq) != 2 || len(keys) != 2 {
			t.Fatalf("DLQ holds %d records under keys %v, want the two poison records once each", len(dlq), slices.Collect(maps.Keys(keys)))
		}
		b, j := keys[bigKey], keys[junkKey]
		cut, _ := strconv.Atoi(b.Headers["dlq_payload_cut_bytes"])
		if b.Headers["dlq_error_class"] != "undecodable" || b.Headers["dlq_payload_truncated"] != "true" || b.Headers["dlq_payload_bytes"] != "2000000" ||
			cut == 0 || cut+len(b.Value) != len(big) || !bytes.Equal(b.Value, big[:len(b.Value)]) || b.Headers["dlq_truncation_reason"] == "" ||
			b.Headers["dlq_original_topic"] != rp.cfg.ProductEventsTopic || b.Headers["dlq_original_offset"] == "" {
			t.Errorf("the 2 MB record in the DLQ: %d bytes, headers %v", len(b.Value), b.Headers)
		}
		if string(j.Value) != "not-json" || j.Headers["dlq_error_class"] != "undecodable" || j.Headers["dlq_payload_truncated"] != "" {
			t.Errorf("the undecodable record in the DLQ: %q, headers %v", j.Value, j.Headers)
		}

		// The status sees two unhandled dead letters and no stalled partition.
		client := opsClient(t, rp.cfg.GRPCAddr)
		st := awaitStatus(t, client, &operationsv1.GetStatusRequest{}, 30*time.Second, "two unhandled dead letters", func(st *operationsv1.GetStatusResponse) bool {
			return st.GetDlq().GetUnhandled() == 2 && st.GetProjector().GetTotalLag() == 0
		})
		if st.GetDlq().GetDepth() != 2 || !slices.Equal(errorChecks(st), []string{ops.CheckDLQ}) {
			t.Fatalf("status: dlq %v, errors %v (%v)", st.GetDlq(), errorChecks(st), st.GetProblems())
		}
		// Nothing was written to the DLQ twice, and no publish failed.
		m := metricValues(t, rp.base, regexp.MustCompile(`^catalog_projector_(dead_lettered_total|dlq_publish_failures_total)`))
		if m[`catalog_projector_dead_lettered_total{class="undecodable"}`] != 2 || m["catalog_projector_dlq_publish_failures_total"] != 0 ||
			m[`catalog_projector_dead_lettered_total{class="rejected"}`] != 0 {
			t.Errorf("dead-letter counters %v", m)
		}
	})
}
