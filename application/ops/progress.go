package ops

import (
	"sync"
	"time"
)

// CommitProgress remembers, for every partition of a consumer group, when its committed
// offset last moved, so that a partition stuck on one message shows up as stalled instead of
// as a lag that only grows. Kafka does not say when an offset was committed, so this has to
// be watched: every look at a group's lag (the metrics sampler every few seconds, each
// status) goes through Observe. A partition first seen with records waiting counts from that
// first look, so a process that starts while a partition is stuck reports it after the limit
// has passed. It is safe for concurrent use.
type CommitProgress struct {
	now func() time.Time

	mu    sync.Mutex
	parts map[progressKey]progressMark
}

type progressKey struct {
	group, topic string
	partition    int32
}

// progressMark is a partition's committed offset and since when it stood there with
// records waiting behind it.
type progressMark struct {
	committed int64
	since     time.Time
}

// NewCommitProgress returns an empty tracker on the clock now (nil means time.Now).
func NewCommitProgress(now func() time.Time) *CommitProgress {
	if now == nil {
		now = time.Now
	}
	return &CommitProgress{now: now, parts: map[progressKey]progressMark{}}
}

// Observe records gl's committed offsets and returns gl with every partition's StalledFor
// set: how long its committed offset has stood still while it had lag.
func (c *CommitProgress) Observe(gl GroupLag) GroupLag {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[progressKey]bool, len(gl.Partitions))
	parts := make([]PartitionLag, len(gl.Partitions))
	for i, pl := range gl.Partitions {
		k := progressKey{gl.Group, gl.Topic, pl.Partition}
		seen[k] = true
		m, ok := c.parts[k]
		pl.StalledFor = 0
		switch {
		case pl.Lag == 0, !ok, m.committed != pl.Committed:
			c.parts[k] = progressMark{committed: pl.Committed, since: now}
		default:
			pl.StalledFor = max(now.Sub(m.since), 0)
		}
		parts[i] = pl
	}
	for k := range c.parts {
		if k.group == gl.Group && k.topic == gl.Topic && !seen[k] {
			delete(c.parts, k) // a partition that is gone (a recreated topic)
		}
	}
	gl.Partitions = parts
	return gl
}
