// Command kprobe exits 0 once a Kafka cluster answers a metadata request, and non-zero otherwise.
//
// scripts/deps.sh uses it to wait for the local broker: an open TCP port is not enough, a KRaft
// broker accepts connections before it can serve metadata. Run from the repository root:
//
//	go run ./scripts/deps/kprobe -b 127.0.0.1:9094 [-wait 90s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("b", "127.0.0.1:9094", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 3*time.Second, "timeout of one metadata request")
	wait := flag.Duration("wait", 0, "keep retrying for this long before giving up (0: one attempt)")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()

	deadline := time.Now().Add(*wait)
	for {
		summary, err := probe(strings.Split(*brokers, ","), *timeout)
		if err == nil {
			if !*quiet {
				fmt.Println(summary)
			}
			return
		}
		if !time.Now().Before(deadline) {
			fmt.Fprintf(os.Stderr, "kprobe: no metadata from %s: %v\n", *brokers, err)
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func probe(seeds []string, timeout time.Duration) (string, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(timeout),
		kgo.RequestRetries(0),
	)
	if err != nil {
		return "", err
	}
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return "", err
	}
	if len(md.Brokers) == 0 {
		return "", errors.New("metadata lists no brokers")
	}
	if md.Controller < 0 {
		return "", errors.New("metadata names no active controller yet")
	}
	return fmt.Sprintf("cluster=%s brokers=%d controller=%d", md.Cluster, len(md.Brokers), md.Controller), nil
}
