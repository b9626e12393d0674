package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
)

// ErrNotRetained is returned by EventLog.Read when part of the requested range has already
// been deleted from the log (retention, DeleteRecords). A rebuild that silently skipped those
// events would build an index that misses changes, so the gap is an error, not a warning. It
// is the port's rebuild.ErrNotRetained, so the use case can tell it apart.
var ErrNotRetained = rebuild.ErrNotRetained

// readBatchSize bounds a batch handed to the caller's fn: it is the most records one poll takes
// from the client's buffer, and one poll makes at most one batch.
const readBatchSize = 1000

// Fetch sizes of a Read. Together with kgo buffering at most one fetch per broker, they bound
// a Read's memory to about readFetchMaxBytes per broker plus three decoded batches, whatever
// the size of the topic.
const (
	readFetchMaxBytes          = 32 << 20
	readFetchMaxPartitionBytes = 4 << 20
	readFetchMaxWait           = time.Second
)

// EventLog reads product events straight from partitions, without a consumer group, so a
// rebuild (docs/ARCHITECTURE.md, "Rebuild") can replay and catch up as often as it likes without joining,
// rebalancing or committing for the live projector's group. It implements rebuild.EventLog.
//
// EndOffsets shares one admin client; every Read builds its own consuming client, so
// concurrent Reads do not share assignments or buffers. An EventLog is safe for concurrent use.
type EventLog struct {
	rr *rangeReader
}

var _ rebuild.EventLog = (*EventLog)(nil)

// NewEventLog returns an EventLog over topic. It does not contact the cluster; a missing
// broker or topic shows up on the first EndOffsets or Read, where the caller can report it.
func NewEventLog(cfg Config, topic string, log *slog.Logger) (*EventLog, error) {
	rr, err := newRangeReader(cfg, topic, rangeReaderConfig{op: "event log", component: "event-log", clientSuffix: "-event-log", grace: listGrace}, log)
	if err != nil {
		return nil, err
	}
	return &EventLog{rr: rr}, nil
}

// Close releases the shared client's connections. A Read still running may fail with a
// closed-client error; its own consuming client is closed when it returns.
func (l *EventLog) Close() { l.rr.Close() }

// EndOffsets returns the high watermark of every partition: the positions a rebuild captures
// before filling, and again before catching up and after the switch. A topic that does not
// exist is an error (after unknownTopicGrace) rather than an empty result, so a misconfigured
// topic name cannot pass for an empty log.
func (l *EventLog) EndOffsets(ctx context.Context) (rebuild.Offsets, error) {
	ends, err := l.rr.listed(ctx, l.rr.adm.ListEndOffsets)
	if err != nil {
		return nil, fmt.Errorf("event log: end offsets of %s: %w", l.rr.topic, err)
	}
	return ends, nil
}

// StartOffsets returns the oldest retained offset of every partition: where a read from
// the beginning starts, and thus how many events a full replay reads.
func (l *EventLog) StartOffsets(ctx context.Context) (rebuild.Offsets, error) {
	starts, err := l.rr.listed(ctx, l.rr.adm.ListStartOffsets)
	if err != nil {
		return nil, fmt.Errorf("event log: start offsets of %s: %w", l.rr.topic, err)
	}
	return starts, nil
}

// Committed implements rebuild.EventLog: group's committed offsets on every partition of the
// topic, 0 where it committed none (the projector then starts from the oldest record, so
// nothing of that partition is known to be applied). A group that never committed at all
// reads as all zeros.
func (l *EventLog) Committed(ctx context.Context, group string) (rebuild.Offsets, error) {
	if group == "" {
		return nil, errors.New("event log: committed offsets: empty group")
	}
	ends, err := l.EndOffsets(ctx)
	if err != nil {
		return nil, err
	}
	committed, err := l.rr.adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("event log: committed offsets of %s: %w", group, err)
	}
	out := make(rebuild.Offsets, len(ends))
	for p := range ends {
		out[p] = 0
		if c, ok := committed.Lookup(l.rr.topic, p); ok && c.Err == nil && c.At > 0 {
			out[p] = c.At
		}
	}
	return out, nil
}

// listGrace is how long an offset listing keeps asking a cluster that cannot answer yet: a
// topic created a moment ago is unknown to brokers until the controller's metadata reaches
// them (a rebuild started right after EnsureTopics must not fail on that), and a dead
// partition leader is replaced within the brokers' session timeout (9 s by default; a rebuild
// started while a broker is down must not fail on it either).
const listGrace = 15 * time.Second

// Read reads every partition in to from from[p] (inclusive; nil or a missing partition means
// the earliest retained record) up to to[p] (exclusive), calling fn with batches of at most
// 1000 decoded events, in log order within a partition, and the position after the batch
// (every partition of the read: the offset of its next record not handed to fn yet, to[p] once
// it is complete), from which a later Read continues exactly where this one left off. fn runs
// on the caller's goroutine, one batch at a time, while the next batch is being decoded; it
// may keep the slice and the position. Records
// that are not product events are counted in skipped and otherwise ignored: the live
// projector dead-letters them, and a rebuild must not stop on a record nobody can fix.
//
// Behaviour at the edges, chosen so a rebuild neither loses events nor hangs:
//   - from[p] >= to[p] is an empty range, done at once; when every range is empty Read returns
//     without connecting a consumer.
//   - Offsets are not dense (transaction markers, aborted records, compaction), so a partition
//     is done when a record at or beyond to[p]-1 was seen, or when the broker's high watermark
//     shows nothing is left before to[p]. Records at or beyond to[p] are dropped.
//   - A to[p] beyond the end of the log (not something EndOffsets returns, but possible after
//     an unclean leader election truncated the log) ends the partition at the log's end, with
//     a warning, instead of waiting for records that may never come.
//   - Only committed records are read (read_committed), so events of aborted transactions are
//     never applied; a transaction still open below to[p] is waited for, bounded by ctx.
//   - A from[p] below the log start (records deleted by retention) fails with ErrNotRetained;
//     so does retention overtaking a slow Read.
//   - A partition in to that the topic does not have, or a negative offset, is an error.
//   - ctx bounds everything: cancelling it returns ctx's error promptly.
//   - An error from fn stops the read and is returned as it is (wrapped).
func (l *EventLog) Read(ctx context.Context, from, to rebuild.Offsets, fn func([]product.Event, rebuild.Offsets) error) (read, skipped int64, err error) {
	if len(to) == 0 {
		return 0, 0, nil
	}
	pending, at, err := l.plan(ctx, from, to)
	if err != nil {
		return 0, 0, err
	}
	if len(pending) == 0 {
		return 0, 0, nil
	}
	started := time.Now()
	cl, err := l.rr.consumer(pending,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A record deleted under the read is a hole in the rebuild; fail rather than jump.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxBytes(readFetchMaxBytes),
		kgo.FetchMaxPartitionBytes(readFetchMaxPartitionBytes),
		kgo.FetchMaxWait(readFetchMaxWait),
	)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()

	// The decoder runs ahead of fn by at most one batch: decoding the next batch overlaps
	// the caller's writes, and memory stays bounded to three batches plus the client's buffer.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan decoded, 1)
	var decodeErr error
	go func() {
		defer close(batches)
		skipped, decodeErr = l.decode(rctx, cl, pending, at, batches)
	}()
	for batch := range batches {
		if err != nil {
			continue // drain so the decoder can see the cancel and stop
		}
		if ferr := fn(batch.events, batch.next); ferr != nil {
			err = fmt.Errorf("event log: read %s: handler: %w", l.rr.topic, ferr)
			cancel()
			continue
		}
		read += int64(len(batch.events))
	}
	// The closed channel orders the decoder's writes to skipped and decodeErr before this.
	if err != nil {
		return read, skipped, err
	}
	if decodeErr != nil {
		return read, skipped, decodeErr
	}
	l.rr.log.Debug("read events", "read", read, "skipped", skipped, "took", time.Since(started))
	return read, skipped, nil
}

// decoded is one batch for Read's fn, with the position after it.
type decoded struct {
	events []product.Event
	next   rebuild.Offsets
}

// decode polls cl until every pending partition reached its end, sending batches of decoded
// events to out, each with at as it stands after the batch: at holds every partition of the
// read, and moves a partition on as its records are decoded. It returns the number of records
// skipped as not product events.
func (l *EventLog) decode(ctx context.Context, cl *kgo.Client, pending map[int32]*span, at rebuild.Offsets, out chan<- decoded) (skipped int64, err error) {
	var firstSkip error
	defer func() {
		if skipped > 0 {
			l.rr.log.Warn("skipped records that are not product events", "skipped", skipped, "first", firstSkip)
		}
	}()
	for len(pending) > 0 {
		fetches := cl.PollRecords(ctx, readBatchSize)
		if cerr := ctx.Err(); cerr != nil {
			return skipped, fmt.Errorf("event log: read %s: %w", l.rr.topic, cerr)
		}
		for _, fe := range fetches.Errors() {
			if _, loss := errors.AsType[*kgo.ErrDataLoss](fe.Err); loss || errors.Is(fe.Err, kerr.OffsetOutOfRange) {
				return skipped, fmt.Errorf("%w: read %s partition %d: %w", ErrNotRetained, fe.Topic, fe.Partition, fe.Err)
			}
			return skipped, fmt.Errorf("event log: read %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		batch := make([]product.Event, 0, fetches.NumRecords())
		var done, atEnd []int32
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			s := pending[fp.Partition]
			if s == nil || fp.Topic != l.rr.topic {
				return // finished already; what was still buffered is beyond its range
			}
			_, _ = s.take(fp.Records, func(r *kgo.Record) error {
				ev, derr := envelope.Unmarshal(r.Value)
				if derr != nil {
					skipped++
					if firstSkip == nil {
						firstSkip = fmt.Errorf("partition %d offset %d: %w", r.Partition, r.Offset, derr)
					}
					l.rr.log.Debug("skipping a record that is not a product event", "partition", r.Partition, "offset", r.Offset, "error", derr)
					return nil
				}
				batch = append(batch, ev)
				return nil
			})
			at[fp.Partition] = min(s.next, s.to)
			switch {
			case s.done():
				done = append(done, fp.Partition)
			case s.next >= fp.HighWatermark:
				atEnd = append(atEnd, fp.Partition)
			}
		})
		if len(atEnd) > 0 {
			// The log seems to end before to: check with ListOffsets before giving up on
			// records that do exist.
			ended, lerr := l.rr.endedEarly(ctx, pending, atEnd)
			if lerr != nil {
				return skipped, lerr
			}
			done = append(done, ended...)
		}
		for _, p := range done {
			delete(pending, p)
		}
		if len(done) > 0 && len(pending) > 0 {
			cl.RemoveConsumePartitions(map[string][]int32{l.rr.topic: done})
		}
		if len(batch) == 0 {
			continue
		}
		select {
		case out <- decoded{events: batch, next: maps.Clone(at)}:
		case <-ctx.Done():
			return skipped, fmt.Errorf("event log: read %s: %w", l.rr.topic, ctx.Err())
		}
	}
	return skipped, nil
}

// plan resolves each partition's range against the log's current start and end, so that
// empty ranges never reach a consumer and lost ranges fail before anything is read. at is the
// position before the read: where each partition's range starts (its end for one with nothing
// to read).
func (l *EventLog) plan(ctx context.Context, from, to rebuild.Offsets) (pending map[int32]*span, at rebuild.Offsets, err error) {
	starts, ends, err := l.rr.bounds(ctx)
	if err != nil {
		return nil, nil, err
	}
	topic := l.rr.topic
	pending = make(map[int32]*span, len(to))
	at = make(rebuild.Offsets, len(to))
	for _, p := range slices.Sorted(maps.Keys(to)) { // in order, so the same error every time
		end := to[p]
		logStart, ok := starts[p]
		if !ok {
			return nil, nil, fmt.Errorf("event log: %s has no partition %d", topic, p)
		}
		start, explicit := from[p]
		if !explicit {
			start = logStart
		}
		if start < 0 || end < 0 {
			return nil, nil, fmt.Errorf("event log: %s partition %d: negative offset (from %d, to %d)", topic, p, start, end)
		}
		if start >= end {
			at[p] = end
			continue
		}
		if start < logStart {
			return nil, nil, fmt.Errorf("%w: %s partition %d: from %d, but the log starts at %d", ErrNotRetained, topic, p, start, logStart)
		}
		at[p] = start
		if hwm := ends[p]; start >= hwm {
			l.rr.log.Warn("the log ends before the requested end offset; nothing to read",
				"partition", p, "from", start, "end", hwm, "requested", end)
			continue
		}
		pending[p] = &span{next: start, to: end}
	}
	return pending, at, nil
}
