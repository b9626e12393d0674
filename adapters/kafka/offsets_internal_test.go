package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A listing that fails while a partition's leader is being replaced (the dead leader cannot
// be dialled) is asked again until the cluster answers; an authentication failure is not.
func TestListPartitionOffsetsRidesOutALeaderChange(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dead := &kadm.ShardErrors{Name: "ListOffsets", Errs: []kadm.ShardError{{Err: errors.New("unable to dial: dial tcp 127.0.0.1:29094: connect: connection refused")}}}
	calls := 0
	answer := kadm.ListedOffsets{"t": {0: {Topic: "t", Partition: 0, Offset: 7}, 1: {Topic: "t", Partition: 1, Offset: 9}}}
	flaky := func(context.Context, ...string) (kadm.ListedOffsets, error) {
		calls++
		switch calls {
		case 1:
			return nil, dead
		case 2:
			return kadm.ListedOffsets{"t": {0: {Topic: "t", Partition: 0, Err: kerr.NotLeaderForPartition}}}, nil
		}
		return answer, nil
	}
	got, err := listPartitionOffsets(context.Background(), cl, flaky, "t", 5*time.Second)
	if err != nil || calls != 3 || got[0] != 7 || got[1] != 9 {
		t.Fatalf("after %d calls: %v, %v; want the third answer", calls, got, err)
	}

	calls = 0
	refused := func(context.Context, ...string) (kadm.ListedOffsets, error) {
		calls++
		return nil, &kadm.AuthError{Err: kerr.TopicAuthorizationFailed}
	}
	if _, err := listPartitionOffsets(context.Background(), cl, refused, "t", 5*time.Second); err == nil || calls != 1 {
		t.Fatalf("authentication failure: %d calls, %v; want one call and the error", calls, err)
	}

	calls = 0
	start := time.Now()
	down := func(context.Context, ...string) (kadm.ListedOffsets, error) { calls++; return nil, dead }
	if _, err := listPartitionOffsets(context.Background(), cl, down, "t", 300*time.Millisecond); !errors.Is(err, dead) || calls < 2 || time.Since(start) > 2*time.Second {
		t.Fatalf("a leader that stays away: %d calls in %s, %v; want a few calls within the grace and its error", calls, time.Since(start), err)
	}
}
