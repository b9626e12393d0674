package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// dlqPorts are the ports the DLQ use cases share: the reader of the DLQ topic (required),
// the replay publisher and the audit log (each optional; a use case that needs one it lacks
// fails with ErrReplayUnavailable or ErrAuditUnavailable).
type dlqPorts struct {
	reader DLQReader
	pub    ReplayPublisher
	audit  ReplayAudit
}

// errNilReader is what every DLQ use case's constructor returns without a reader.
var errNilReader = errors.New("dlq: nil reader")

// validateSelection checks what a replay and a resolution have in common: exactly one way
// of selecting messages, a limit, an operator for the audit log.
func validateSelection(kind error, refs []DLQRef, f DLQFilter, all bool, limit int, operator string) error {
	modes := 0
	if len(refs) > 0 {
		modes++
	}
	if f.Selects() {
		modes++
	}
	if all {
		modes++
	}
	switch {
	case modes == 0:
		return fmt.Errorf("%w: select messages: a <partition>:<offset>, an aggregate, an error class or a time range (or --all for every message)", kind)
	case modes > 1:
		return fmt.Errorf("%w: choose one way of selecting messages: explicit references, filters, or --all", kind)
	case limit < 0:
		return fmt.Errorf("%w: negative limit %d", kind, limit)
	case strings.TrimSpace(operator) == "":
		return fmt.Errorf("%w: the operator is required for the audit log", kind)
	case len(operator) > 200:
		return fmt.Errorf("%w: operator longer than 200 bytes", kind)
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return nil
}

// replayBatch is how many selected messages are checked against the audit log at once.
const replayBatch = 256

// errReplayStop ends a scan early without being an error of the replay.
var errReplayStop = errors.New("replay: stop")

// eachSelected hands the selected messages to fn in batches of at most replayBatch: the
// referenced ones, every one of which must exist before fn is called (a typo must not leave a
// half-done run behind), or those the filter matches (every message for a filter that
// selects nothing, which the requests allow only with All). An error of fn stops the run
// and is returned as it is; op prefixes the reader's errors.
func (s dlqPorts) eachSelected(ctx context.Context, op string, refs []DLQRef, f DLQFilter, fn func([]DLQMessage) error) error {
	if len(refs) > 0 {
		msgs := make([]DLQMessage, 0, len(refs))
		for _, ref := range refs {
			m, err := s.reader.GetDLQ(ctx, ref)
			if err != nil {
				return fmt.Errorf("%s %s: %w", op, ref, err)
			}
			msgs = append(msgs, m)
		}
		for len(msgs) > 0 {
			n := min(len(msgs), replayBatch)
			if err := fn(msgs[:n]); err != nil {
				return err
			}
			msgs = msgs[n:]
		}
		return nil
	}
	var batch []DLQMessage
	var fnErr error
	err := s.reader.ScanDLQ(ctx, f.Since, func(m DLQMessage) error {
		if !f.Matches(m) {
			return nil
		}
		batch = append(batch, m)
		if len(batch) < replayBatch {
			return nil
		}
		fnErr = fn(batch)
		batch = batch[:0]
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("%s: read %s: %w", op, s.reader.DLQTopic(), err)
	case len(batch) > 0:
		return fn(batch)
	}
	return nil
}

// replayIgnoreStop turns the early end of a run (the limit) into success.
func replayIgnoreStop(err error) error {
	if errors.Is(err, errReplayStop) {
		return nil
	}
	return err
}

// handled returns the earlier handling of each message of batch that has one.
func (s dlqPorts) handled(ctx context.Context, batch []DLQMessage) (map[DLQRef]ReplayAuditEntry, error) {
	refs := make([]DLQRef, len(batch))
	for i, m := range batch {
		refs[i] = m.Ref
	}
	return s.audit.HandledDLQRefs(ctx, s.reader.DLQTopic(), refs)
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
