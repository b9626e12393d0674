package kafka_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testkafka"
)

// TestHelperGroupMember is not a test: run as a subprocess, it joins a consumer group and
// waits to be killed, leaving a member that never says goodbye.
func TestHelperGroupMember(t *testing.T) {
	brokers, group, topic := os.Getenv("HELPER_BROKERS"), os.Getenv("HELPER_GROUP"), os.Getenv("HELPER_TOPIC")
	if brokers == "" {
		t.Skip("helper process only")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.SessionTimeout(30*time.Second),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { os.Stdout.WriteString("JOINED\n") }))
	if err != nil {
		t.Fatal(err)
	}
	for {
		cl.PollFetches(context.Background())
	}
}

// TestConcurrentSubscriberCloseDoesNotWaitForADeadMember: a replica killed with SIGKILL stays
// in its consumer group until its session times out, and the rebalance a new member starts
// waits for it. Closing the new member then must not wait that long (franz-go's Close waits
// for the in-flight join): the service's shutdown would hang for the whole session timeout.
func TestConcurrentSubscriberCloseDoesNotWaitForADeadMember(t *testing.T) {
	c := testkafka.Real(t)
	topic := testkafka.CreateTopic(t, c, "deadmember", 2)
	group := "dead-member-" + topic

	cmd := exec.Command(os.Args[0], "-test.run", "^TestHelperGroupMember$")
	cmd.Env = append(os.Environ(), "HELPER_BROKERS="+strings.Join(c.Brokers, ","), "HELPER_GROUP="+group, "HELPER_TOPIC="+topic)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	joined := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "JOINED" {
				close(joined)
				return
			}
		}
	}()
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the helper never joined the group")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	s, err := kafka.NewConcurrentSubscriber(kafka.Config{Brokers: c.Brokers}, kafka.ConcurrentSubscriberConfig{ConsumerGroup: group, FromOldest: true}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the join is now waiting for the dead member
	start := time.Now()
	closed := make(chan struct{})
	go func() { _ = s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("Close returned in %s with a dead member in the group (session timeout 30s)", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close still waiting after 15s: it waits for the dead member's session to time out")
	}
}
