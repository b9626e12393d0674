package kafka

import (
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSpanTake pins the walk both range readers share: records already seen are dropped,
// transaction markers move the range on without reaching fn, a record at or beyond the end
// completes the range, and an error from fn stops the walk.
func TestSpanTake(t *testing.T) {
	rec := func(offset int64, control bool) *kgo.Record {
		r := &kgo.Record{Offset: offset}
		if control {
			r.Attrs = kgo.NewRecordAttrs(kgo.RecordAttrsOpts{Transactional: true, Control: true})
		}
		return r
	}
	cases := []struct {
		name     string
		span     span
		records  []*kgo.Record
		failAt   int64 // fn fails on this offset; -1 never
		want     []int64
		wantNext int64
		moved    bool
		wantErr  bool
	}{
		{name: "in range", span: span{next: 3, to: 10}, records: []*kgo.Record{rec(3, false), rec(4, false)}, failAt: -1,
			want: []int64{3, 4}, wantNext: 5, moved: true},
		{name: "seen records are dropped", span: span{next: 5, to: 10}, records: []*kgo.Record{rec(3, false), rec(4, false), rec(5, false)}, failAt: -1,
			want: []int64{5}, wantNext: 6, moved: true},
		{name: "nothing new", span: span{next: 5, to: 10}, records: []*kgo.Record{rec(4, false)}, failAt: -1,
			wantNext: 5},
		{name: "a marker moves the range but is not handed on", span: span{next: 8, to: 10}, records: []*kgo.Record{rec(8, false), rec(9, true)}, failAt: -1,
			want: []int64{8}, wantNext: 10, moved: true},
		{name: "a record beyond the range completes it", span: span{next: 8, to: 10}, records: []*kgo.Record{rec(12, false), rec(13, false)}, failAt: -1,
			wantNext: 10, moved: true},
		{name: "an error stops the walk", span: span{next: 0, to: 10}, records: []*kgo.Record{rec(0, false), rec(1, false), rec(2, false)}, failAt: 1,
			want: []int64{0, 1}, wantNext: 2, moved: true, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.span
			var got []int64
			moved, err := s.take(c.records, func(r *kgo.Record) error {
				got = append(got, r.Offset)
				if r.Offset == c.failAt {
					return errors.New("stop")
				}
				return nil
			})
			if (err != nil) != c.wantErr || moved != c.moved || s.next != c.wantNext || !slices.Equal(got, c.want) {
				t.Fatalf("take: handed %v, next %d, moved %v, err %v; want %v, %d, %v, error %v", got, s.next, moved, err, c.want, c.wantNext, c.moved, c.wantErr)
			}
			if s.done() != (s.next >= c.span.to) {
				t.Fatalf("done() = %v at next %d of %d", s.done(), s.next, c.span.to)
			}
		})
	}
}
