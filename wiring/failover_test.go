package wiring_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/durationpb"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
	"github.com/marketplace/catalog/service"
)

// produceToEachPartition writes one valid create event to every partition of topic.
func produceToEachPartition(t *testing.T, c testkafka.Cluster, topic string, partitions int, sku string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p := range partitions {
		id, evs := history(t, fmt.Sprintf("%s-%d", sku, p), 1, false)
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Key: []byte(id.String()), Value: evs[0]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// groupMembers returns the group's state and how many of its members hold partitions.
func groupMembers(t *testing.T, c testkafka.Cluster, group string) (state string, assigned int) {
	t.Helper()
	adm, closeFn := admin(t, c)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return "", 0
	}
	g := described[group]
	for _, m := range g.Members {
		if ca, ok := m.Assigned.AsConsumer(); ok && len(ca.Topics) > 0 {
			assigned++
		}
	}
	return g.State, assigned
}

// caughtUp reports whether the group has committed every partition of topic up to its end.
func caughtUp(t *testing.T, c testkafka.Cluster, group, topic string) bool {
	t.Helper()
	adm, closeFn := admin(t, c)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		if c, found := committed.Lookup(topic, o.Partition); !found || c.At < o.Offset {
			ok = false
		}
	})
	return ok
}

// TestProjectorFailoverAfterSIGKILL: two `catalog project` processes share the partitions;
// one is killed with SIGKILL and events are written to every partition at once. Every
// partition is projected again within 10 s at default settings (the group's session timeout
// of 6 s, heartbeats every second), and while the dead replica's partitions wait, the status
// names them as stalled. Before, they stalled for the client default session timeout of 45 s.
func TestProjectorFailoverAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a projector process")
	}
	for _, broker := range testkafka.Clusters(t) {
		t.Run("", func(t *testing.T) {
			cluster := broker(t)
			t.Run(cluster.Name, func(t *testing.T) { projectorFailover(t, cluster) })
		})
	}
}

func projectorFailover(t *testing.T, cluster testkafka.Cluster) {
	esURL, compat := testenv.ElasticsearchURL(t)
	name := strings.ToLower(testenv.Name("fo"))
	testkafka.DropOnCleanup(t, cluster, name+".events", "dlq."+name+".events")
	cfg, _ := freshDeployment(t, func(c *service.Config) {
		c.KafkaBrokers = cluster.Brokers
		c.ElasticsearchURL, c.ElasticsearchCompat = esURL, compat
		c.SearchAlias = name
		c.ProductEventsTopic, c.DLQTopic, c.ProjectorGroup = name+".events", "dlq."+name+".events", name+"-projector"
		c.TopicPartitions = 6
	})
	t.Cleanup(func() { (&readPath{esURL: esURL, component: &component{cfg: cfg}}).dropIndices(t) })
	group, topic := cfg.ProjectorGroup, cfg.ProductEventsTopic

	// The first replica creates the topics and the alias; the second joins it.
	first := startCatalogProc(t, cfg, t.TempDir(), "project")
	eventuallyT(t, 60*time.Second, "the first projector in the group", func() bool { s, n := groupMembers(t, cluster, group); return s == "Stable" && n == 1 })
	startCatalogProc(t, cfg, t.TempDir(), "project")
	eventuallyT(t, 60*time.Second, "two projectors sharing the partitions", func() bool { s, n := groupMembers(t, cluster, group); return s == "Stable" && n == 2 })
	produceToEachPartition(t, cluster, topic, cfg.TopicPartitions, "WARM")
	eventuallyT(t, 60*time.Second, "both projectors to project", func() bool { return caughtUp(t, cluster, group, topic) })

	// The status watches the group from a process of its own.
	client := opsClient(t, startOpsAdmin(t, cfg))
	maxStall := durationpb.New(2 * time.Second)
	var (
		mu      sync.Mutex
		stalled string
	)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(watchCtx, 10*time.Second)
			st, err := client.GetStatus(ctx, &operationsv1.GetStatusRequest{MaxStall: maxStall})
			cancel()
			if err == nil {
				for _, p := range st.GetProblems() {
					if p.GetCheck() == ops.CheckProjectorStalled {
						mu.Lock()
						if stalled == "" {
							stalled = p.GetMessage()
						}
						mu.Unlock()
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer func() { stopWatch(); <-watched }()
	time.Sleep(time.Second) // the status's first look at the committed offsets

	first.kill(t)
	killed := time.Now()
	produceToEachPartition(t, cluster, topic, cfg.TopicPartitions, "AFTER")
	deadline := killed.Add(60 * time.Second)
	for !caughtUp(t, cluster, group, topic) {
		if time.Now().After(deadline) {
			t.Fatalf("partitions still not projected 60 s after the SIGKILL")
		}
		time.Sleep(100 * time.Millisecond)
	}
	failover := time.Since(killed)
	t.Logf("failover: every partition projected again %.1f s after a projector was SIGKILLed", failover.Seconds())
	if failover > 10*time.Second {
		t.Errorf("failover took %s, want under 10 s", failover.Round(100*time.Millisecond))
	}
	stopWatch()
	<-watched
	mu.Lock()
	defer mu.Unlock()
	if stalled == "" || !regexp.MustCompile(`partition \d+ for \d+s`).MatchString(stalled) {
		t.Errorf("the status never named the dead replica's stalled partitions (problem %q)", stalled)
	} else {
		t.Logf("status while they waited: %s", stalled)
	}
}

// TestFreshnessIsZeroWhenIdleAndGrowsWhileEventsWait: on an idle, caught-up pipeline every
// partition's freshness is 0, however long ago the last event was; while the search cluster
// is unreachable the partition of a waiting event reports its age, the status names that
// partition as stalled, and both clear once it is projected. Before, freshness was now minus
// the newest event's occurred_at: it rose on an idle catalog.
func TestFreshnessIsZeroWhenIdleAndGrowsWhileEventsWait(t *testing.T) {
	var proxy *testenv.Proxy
	rp := startReadPath(t, withProxiedSearch(&proxy))
	product201(t, rp.component, "FRESH-1", "Fresh lamp", "fresh", 100)
	rp.waitSearch(t, "category=fresh", 20*time.Second, "the product", func(p searchPage) bool { return p.Total == 1 })
	freshness := regexp.MustCompile(`^catalog_[a-z_]*freshness[a-z_]*(\{[^}]*\})?$`)
	time.Sleep(4 * time.Second) // idle
	idle := metricValues(t, rp.base, freshness)
	if len(idle) == 0 {
		t.Fatal("no freshness series on /metrics")
	}
	for series, v := range idle {
		if v > 1 {
			t.Errorf("%s = %v on an idle, caught-up pipeline, want 0", series, v)
		}
	}

	proxy.Down()
	product201(t, rp.component, "FRESH-2", "Waiting lamp", "fresh", 100)
	var waiting string
	eventuallyT(t, 30*time.Second, "a partition's freshness above 3 s while its event waits", func() bool {
		for series, v := range metricValues(t, rp.base, freshness) {
			if v > 3 {
				waiting = series
				return true
			}
		}
		return false
	})
	client := opsClient(t, rp.cfg.GRPCAddr)
	req := &operationsv1.GetStatusRequest{MaxStall: durationpb.New(2 * time.Second)}
	st := awaitStatus(t, client, req, 30*time.Second, "the waiting partition named as stalled", func(st *operationsv1.GetStatusResponse) bool {
		return slices.Contains(errorChecks(st), ops.CheckProjectorStalled)
	})
	part := regexp.MustCompile(`partition="(\d+)"`).FindStringSubmatch(waiting)[1]
	for _, p := range st.GetProblems() {
		if p.GetCheck() == ops.CheckProjectorStalled && !strings.Contains(p.GetMessage(), "partition "+part+" for") {
			t.Errorf("stalled problem %q does not name partition %s, whose freshness grows", p.GetMessage(), part)
		}
	}

	proxy.Up()
	rp.waitSearch(t, "category=fresh", 60*time.Second, "the waiting product", func(p searchPage) bool { return p.Total == 2 })
	eventuallyT(t, 30*time.Second, "freshness back to 0", func() bool {
		for _, v := range metricValues(t, rp.base, freshness) {
			if v > 1 {
				return false
			}
		}
		return true
	})
	awaitStatus(t, client, req, 30*time.Second, "no stalled partition once the event is projected", func(st *operationsv1.GetStatusResponse) bool {
		return !slices.Contains(errorChecks(st), ops.CheckProjectorStalled)
	})
}
