package ops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

func TestDLQListFilters(t *testing.T) {
	svc, err := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		f       ops.DLQFilter
		limit   int
		want    []string
		matched int
	}{
		{"all, oldest failure first", ops.DLQFilter{}, 0, []string{"0:0", "1:1", "1:0", "0:1", "2:0"}, 5},
		{"class", ops.DLQFilter{Classes: []string{"REJECTED"}}, 0, []string{"0:0", "1:1", "0:1"}, 3},
		{"classes", ops.DLQFilter{Classes: []string{"undecodable", "validation"}}, 0, []string{"1:0", "2:0"}, 2},
		{"aggregate", ops.DLQFilter{AggregateID: strings.ToUpper(dlqAggB)}, 0, []string{"1:0", "0:1"}, 2},
		{"since inclusive", ops.DLQFilter{Since: dlqBase.Add(time.Hour)}, 0, []string{"1:0", "0:1", "2:0"}, 3},
		{"until exclusive", ops.DLQFilter{Until: dlqBase.Add(time.Hour)}, 0, []string{"0:0", "1:1"}, 2},
		{"range and class", ops.DLQFilter{Classes: []string{"rejected"}, Since: dlqBase.Add(time.Minute), Until: dlqBase.Add(3 * time.Hour)}, 0, []string{"1:1", "0:1"}, 2},
		{"limit keeps the newest", ops.DLQFilter{}, 2, []string{"0:1", "2:0"}, 5},
		{"nothing matches", ops.DLQFilter{Classes: []string{"panic"}}, 10, []string{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := svc.List(context.Background(), tc.f, tc.limit, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := dlqRefsOf(res.Messages); !slices.Equal(got, tc.want) || res.Matched != tc.matched {
				t.Fatalf("got %v (matched %d), want %v (matched %d)", got, res.Matched, tc.want, tc.matched)
			}
		})
	}
	if _, err := svc.List(context.Background(), ops.DLQFilter{Since: dlqBase, Until: dlqBase}, 0, false); !errors.Is(err, ops.ErrDLQInvalidFilter) {
		t.Fatalf("an empty time range: %v", err)
	}
	if _, err := svc.List(context.Background(), ops.DLQFilter{}, -1, false); !errors.Is(err, ops.ErrDLQInvalidFilter) {
		t.Fatalf("a negative limit: %v", err)
	}
}

func TestDLQListLimitOverManyMessages(t *testing.T) {
	dlq := &fakeDLQ{topic: "dlq"}
	for i := range 1000 {
		// Failure times out of offset order, as across partitions.
		dlq.msgs = append(dlq.msgs, dlqMsg(int32(i%3), int64(i), "rejected", dlqAggA, fmt.Sprint(i), dlqBase.Add(time.Duration((i*7919)%1000)*time.Second)))
	}
	svc, _ := ops.NewDLQService(dlq, nil, nil, decorator.Deps{})
	res, err := svc.List(context.Background(), ops.DLQFilter{}, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 1000 || len(res.Messages) != 10 {
		t.Fatalf("matched %d, kept %d", res.Matched, len(res.Messages))
	}
	for i, m := range res.Messages {
		if want := dlqBase.Add(time.Duration(990+i) * time.Second); !m.FailedAt.Equal(want) {
			t.Fatalf("message %d failed at %s, want %s", i, m.FailedAt, want)
		}
	}
}

func TestListUnhandled(t *testing.T) {
	svc, _, _, _ := newReplayer(t)
	ctx := context.Background()
	if _, err := svc.Resolve(ctx, ops.ResolveRequest{Refs: []ops.DLQRef{{0, 0}}, Operator: "a", Reason: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Replay(ctx, ops.ReplayRequest{Refs: []ops.DLQRef{{1, 1}}, Operator: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := svc.List(ctx, ops.DLQFilter{}, 2, true)
	if err != nil || res.Matched != 3 || !slices.Equal(dlqRefsOf(res.Messages), []string{"0:1", "2:0"}) {
		t.Fatalf("unhandled: %d matched, %v, %v", res.Matched, dlqRefsOf(res.Messages), err)
	}
	bare, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	if _, err := bare.List(ctx, ops.DLQFilter{}, 0, true); !errors.Is(err, ops.ErrAuditUnavailable) {
		t.Fatalf("unhandled without an audit log: %v", err)
	}
}
