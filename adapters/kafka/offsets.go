package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetLister is a kadm offset listing: ListStartOffsets, ListEndOffsets and the like.
type offsetLister func(context.Context, ...string) (kadm.ListedOffsets, error)

// listPartitionOffsets lists topic's offset of every partition with list, riding out, for up
// to grace, the moments in which a cluster cannot answer although nothing is wrong for good:
// a topic created a moment ago that a broker does not know yet, and partitions whose leader
// died (ListOffsets goes to each partition's leader as the client last saw it, so a dead
// leader fails the listing until the client's metadata names the new one; it is refreshed
// before every retry). Authentication failures and a cancelled ctx return at once.
func listPartitionOffsets(ctx context.Context, cl *kgo.Client, list offsetLister, topic string, grace time.Duration) (map[int32]int64, error) {
	deadline := time.Now().Add(grace)
	wait := 50 * time.Millisecond
	for {
		out, err := listPartitionOffsetsOnce(ctx, list, topic)
		var auth *kadm.AuthError
		if err == nil || errors.As(err, &auth) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return out, err
		}
		cl.ForceMetadataRefresh()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func listPartitionOffsetsOnce(ctx context.Context, list offsetLister, topic string) (map[int32]int64, error) {
	res, err := list(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := res.Error(); err != nil { // an unknown topic is reported as a partition -1 error
		return nil, err
	}
	ps := res[topic]
	if len(ps) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions (does it exist?)", topic)
	}
	out := make(map[int32]int64, len(ps))
	for p, o := range ps {
		out[p] = o.Offset
	}
	return out, nil
}
