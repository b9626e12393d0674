// Command kprobe exits 0 once a Kafka cluster answers a metadata request (and, when asked, has
// the expected brokers and a fully replicated probe topic), and non-zero otherwise.
//
// scripts/deps.sh uses it to wait for the local brokers: an open TCP port is not enough, a KRaft
// broker accepts connections before it can serve metadata, and a three-broker cluster is only
// usable for RF 3 once every broker is registered and follows the leaders. Run from the
// repository root:
//
//	go run ./scripts/deps/kprobe -b 127.0.0.1:9094 [-wait 90s]
//	go run ./scripts/deps/kprobe -b 127.0.0.1:29092,127.0.0.1:29093 -brokers 3 -topic _deps_probe -isr 3 -min-isr 2 -no-urp
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// want is what the cluster must show before the probe succeeds.
type want struct {
	// brokers is the least number of registered brokers (0: any).
	brokers int
	// topic, when set, is created with the brokers' default replication factor if missing, so
	// the probe also checks that default.
	topic string
	// partitions is the partition count of a topic the probe creates.
	partitions int
	// isr is the replication factor and in-sync replica count every partition of topic must have
	// (0: the number of brokers).
	isr int
	// minISR is the min.insync.replicas the topic must show (0: not checked).
	minISR int
	// noURP fails the probe while any partition of any topic has fewer in-sync replicas than
	// replicas: a restarted broker has caught up only once it is back in every ISR.
	noURP bool
}

func main() {
	brokers := flag.String("b", "127.0.0.1:9094", "comma-separated seed brokers, asked in turn until one answers")
	timeout := flag.Duration("timeout", 3*time.Second, "timeout of one probe")
	wait := flag.Duration("wait", 0, "keep retrying for this long before giving up (0: one attempt)")
	quiet := flag.Bool("q", false, "print nothing on success")
	var w want
	flag.IntVar(&w.brokers, "brokers", 0, "least number of registered brokers (0: any)")
	flag.StringVar(&w.topic, "topic", "", "probe topic: created with the broker default replication factor if missing, then checked")
	flag.IntVar(&w.partitions, "partitions", 3, "partitions of a probe topic the probe creates")
	flag.IntVar(&w.isr, "isr", 0, "replication factor and ISR size every partition of -topic must have (0: -brokers)")
	flag.IntVar(&w.minISR, "min-isr", 0, "min.insync.replicas -topic must have (0: any)")
	flag.BoolVar(&w.noURP, "no-urp", false, "fail while any partition of any topic is under-replicated")
	flag.Parse()
	if flag.NArg() > 0 || w.brokers < 0 || w.isr < 0 || w.minISR < 0 || w.partitions < 1 {
		fmt.Fprintln(os.Stderr, "kprobe: bad usage (see -h)")
		os.Exit(2)
	}
	if w.isr == 0 {
		w.isr = w.brokers
	}

	deadline := time.Now().Add(*wait)
	for {
		summary, err := probe(strings.Split(*brokers, ","), *timeout, w)
		if err == nil {
			if !*quiet {
				fmt.Println(summary)
			}
			return
		}
		if !time.Now().Before(deadline) {
			fmt.Fprintf(os.Stderr, "kprobe: %s: %v\n", *brokers, err)
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// probe asks the seeds in turn, so that one dead broker (a drill kills them) does not fail the
// probe of a cluster whose other brokers answer.
func probe(seeds []string, timeout time.Duration, w want) (string, error) {
	var errs []error
	for _, seed := range seeds {
		summary, err := probeVia(seed, timeout, w)
		if err == nil {
			return summary, nil
		}
		errs = append(errs, fmt.Errorf("via %s: %w", seed, err))
	}
	return "", errors.Join(errs...)
}

func probeVia(seed string, timeout time.Duration, w want) (string, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seed),
		kgo.DialTimeout(timeout),
		kgo.RequestRetries(0),
	)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	md, err := adm.Metadata(ctx)
	if err != nil {
		return "", fmt.Errorf("no metadata: %w", err)
	}
	if len(md.Brokers) == 0 {
		return "", errors.New("metadata lists no brokers")
	}
	if md.Controller < 0 {
		return "", errors.New("metadata names no active controller yet")
	}
	ids := md.Brokers.NodeIDs()
	slices.Sort(ids)
	if len(ids) < w.brokers {
		return "", fmt.Errorf("%d of %d brokers registered (%s)", len(ids), w.brokers, joinIDs(ids))
	}
	urp := underReplicated(md.Topics)
	if w.noURP && urp > 0 {
		return "", fmt.Errorf("%d partitions under-replicated", urp)
	}
	summary := fmt.Sprintf("cluster=%s brokers=%d broker_ids=%s controller=%d under_replicated=%d",
		md.Cluster, len(ids), joinIDs(ids), md.Controller, urp)
	if w.topic == "" {
		return summary, nil
	}
	detail, err := probeTopic(ctx, adm, md, w)
	if err != nil {
		return "", fmt.Errorf("topic %s: %w", w.topic, err)
	}
	return summary + " " + detail, nil
}

// probeTopic creates the probe topic if it is missing and checks that every partition has w.isr
// replicas, all in sync, and a leader.
func probeTopic(ctx context.Context, adm *kadm.Client, md kadm.Metadata, w want) (string, error) {
	td, ok := md.Topics[w.topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		// -1: the brokers' default.replication.factor, which is what this checks.
		if _, err := adm.CreateTopic(ctx, int32(w.partitions), -1, nil, w.topic); err != nil &&
			!errors.Is(err, kerr.TopicAlreadyExists) {
			return "", fmt.Errorf("create: %w", err)
		}
		return "", errors.New("created, waiting for its partitions")
	}
	if td.Err != nil {
		return "", td.Err
	}
	if len(td.Partitions) == 0 {
		return "", errors.New("no partitions yet")
	}
	for _, p := range td.Partitions.Sorted() {
		switch {
		case p.Err != nil && !errors.Is(p.Err, kerr.ReplicaNotAvailable):
			return "", fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		case p.Leader < 0:
			return "", fmt.Errorf("partition %d has no leader", p.Partition)
		case w.isr > 0 && len(p.Replicas) != w.isr:
			return "", fmt.Errorf("partition %d has %d replicas, want %d (default.replication.factor)", p.Partition, len(p.Replicas), w.isr)
		case w.isr > 0 && len(p.ISR) < w.isr:
			return "", fmt.Errorf("partition %d has ISR %s of replicas %s", p.Partition, joinIDs(p.ISR), joinIDs(p.Replicas))
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, w.topic)
	if err != nil {
		return "", fmt.Errorf("describe configs: %w", err)
	}
	rc, err := rcs.On(w.topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return "", fmt.Errorf("describe configs: %w", err)
	}
	minISR := ""
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" {
			minISR = c.MaybeValue()
		}
	}
	if w.minISR > 0 && minISR != strconv.Itoa(w.minISR) {
		return "", fmt.Errorf("min.insync.replicas is %q, want %d", minISR, w.minISR)
	}
	return fmt.Sprintf("topic=%s partitions=%d isr=%d/%d min.insync.replicas=%s",
		w.topic, len(td.Partitions), w.isr, w.isr, minISR), nil
}

// underReplicated counts partitions of all topics whose ISR is smaller than their replica set.
func underReplicated(tds kadm.TopicDetails) int {
	n := 0
	for _, td := range tds {
		for _, p := range td.Partitions {
			if len(p.ISR) < len(p.Replicas) {
				n++
			}
		}
	}
	return n
}

func joinIDs(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}
