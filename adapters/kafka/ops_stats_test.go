package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

func newOpsStats(t *testing.T, c testkafka.Cluster) *kafka.OpsStats {
	t.Helper()
	s, err := kafka.NewOpsStats(kafka.Config{Brokers: c.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// produceTo writes n records to each given partition.
func produceTo(t *testing.T, c testkafka.Cluster, topic string, perPartition map[int32]int) {
	t.Helper()
	cl := newProducer(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p, n := range perPartition {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "r%d-%d", p, i)})
		}
	}
	if err := cl.ProduceSync(ctxT(t, 20*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// awaitTopic waits until the brokers know a topic created a moment ago (KRaft brokers learn
// of it from the metadata log, which can take a few seconds on a loaded machine).
func awaitTopic(t *testing.T, s *kafka.OpsStats, topic string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.TopicOffsets(ctxT(t, 10*time.Second), topic)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s never became available: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func groupLag(t *testing.T, s *kafka.OpsStats, group, topic string) ops.GroupLag {
	t.Helper()
	gl, err := s.GroupLag(ctxT(t, 20*time.Second), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return gl
}

func lags(gl ops.GroupLag) string {
	var b strings.Builder
	for _, p := range gl.Partitions {
		fmt.Fprintf(&b, "%d:%d/%d/%d ", p.Partition, p.Committed, p.End, p.Lag)
	}
	return strings.TrimSpace(b.String())
}

// Lag per partition follows what was produced and what the group committed; a group that
// committed nothing lags by everything retained; members show when a consumer joins.
func TestOpsGroupLagPerPartition(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "ops.lag", 3)
		group := testenv.Name("ops-lag-group")
		stats := newOpsStats(t, c)
		awaitTopic(t, stats, topic)

		empty := groupLag(t, stats, group, topic)
		if empty.Committed || empty.Lag != 0 || empty.Records != 0 || len(empty.Partitions) != 3 || empty.Members != 0 {
			t.Fatalf("empty topic: %+v", empty)
		}

		produceTo(t, c, topic, map[int32]int{0: 5, 1: 3})
		none := groupLag(t, stats, group, topic)
		if none.Committed || none.Lag != 8 || none.Records != 8 || lags(none) != "0:-1/5/5 1:-1/3/3 2:-1/0/0" {
			t.Fatalf("nothing committed: %+v (%s)", none, lags(none))
		}
		if none.Group != group || none.Topic != topic {
			t.Fatalf("names %q %q", none.Group, none.Topic)
		}

		adm := kadm.NewClient(newProducer(t, c))
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 2})
		offsets.Add(kadm.Offset{Topic: topic, Partition: 1, At: 3})
		if resp, err := adm.CommitOffsets(ctxT(t, 20*time.Second), group, offsets); err != nil || resp.Error() != nil {
			t.Fatalf("commit: %v / %v", err, resp.Error())
		}
		some := groupLag(t, stats, group, topic)
		if !some.Committed || some.Lag != 3 || lags(some) != "0:2/5/3 1:3/3/0 2:-1/0/0" {
			t.Fatalf("after commits: %+v (%s)", some, lags(some))
		}

		produceTo(t, c, topic, map[int32]int{1: 4, 2: 2})
		more := groupLag(t, stats, group, topic)
		if more.Lag != 9 || lags(more) != "0:2/5/3 1:3/7/4 2:-1/2/2" {
			t.Fatalf("after more records: %+v (%s)", more, lags(more))
		}

		// A consumer joins the group (without committing): it counts as a member.
		member, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer member.Close()
		pollCtx, stopPolling := context.WithCancel(context.Background())
		defer stopPolling()
		go func() {
			for pollCtx.Err() == nil {
				member.PollFetches(pollCtx)
			}
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			gl := groupLag(t, stats, group, topic)
			if gl.Members == 1 && gl.State == "Stable" {
				if gl.Lag != 9 {
					t.Errorf("a member that commits nothing changed the lag: %d", gl.Lag)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the member never showed: %+v", gl)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func TestOpsTopicOffsets(t *testing.T) {
	eachCluster(t, func(t *testing.T, c testkafka.Cluster) {
		topic := testkafka.CreateTopic(t, c, "ops.dlq", 4)
		stats := newOpsStats(t, c)
		awaitTopic(t, stats, topic)
		ctx := ctxT(t, 20*time.Second)
		if o, err := stats.TopicOffsets(ctx, topic); err != nil || o.Depth() != 0 || len(o) != 4 {
			t.Fatalf("empty DLQ: %+v, %v", o, err)
		}
		produceTo(t, c, topic, map[int32]int{0: 1, 3: 2})
		o, err := stats.TopicOffsets(ctx, topic)
		if err != nil || o.Depth() != 3 {
			t.Fatalf("DLQ with 3 messages: %+v, %v", o, err)
		}
		want := ops.TopicOffsets{{Partition: 0, End: 1}, {Partition: 1}, {Partition: 2}, {Partition: 3, End: 2}}
		if !slices.Equal(o, want) {
			t.Fatalf("offsets %+v, want %+v", o, want)
		}
		// A missing topic is an error, not an empty DLQ (after a grace for new topics,
		// which the short deadline cuts).
		short := ctxT(t, time.Second)
		if _, err := stats.TopicOffsets(short, "no.such.topic."+testenv.Name("x")); err == nil {
			t.Fatal("depth of a missing topic")
		}
		if _, err := stats.GroupLag(short, "g", "no.such.topic."+testenv.Name("x")); err == nil {
			t.Fatal("lag on a missing topic")
		}
	})
}

func TestNewOpsStatsNeedsBrokers(t *testing.T) {
	if _, err := kafka.NewOpsStats(kafka.Config{}); err == nil {
		t.Fatal("no brokers accepted")
	}
}
