package ops

import (
	"context"
	"fmt"
)

// DLQCounts is the dead-letter topic in numbers.
type DLQCounts struct {
	// Depth is the number of retained messages, handled or not.
	Depth int64
	// Handled counts retained messages an operator replayed or resolved.
	Handled int64
	// Unhandled counts retained messages nobody has dealt with yet: the health signal.
	Unhandled int64
}

// CountDeadLetters measures the dead-letter topic: its depth from Kafka, and how much of it
// is still unhandled according to the audit log. It is the one definition of an unhandled
// dead letter, for the status and the metrics alike.
func CountDeadLetters(ctx context.Context, events EventStats, ledger DLQLedger, topic string) (DLQCounts, error) {
	offsets, err := events.TopicOffsets(ctx, topic)
	if err != nil {
		return DLQCounts{}, err
	}
	c := DLQCounts{Depth: offsets.Depth()}
	if c.Depth == 0 {
		return c, nil
	}
	if c.Handled, err = ledger.HandledDLQMessages(ctx, topic, offsets); err != nil {
		return DLQCounts{Depth: c.Depth}, fmt.Errorf("audit log: %w", err)
	}
	c.Handled = min(c.Handled, c.Depth)
	c.Unhandled = c.Depth - c.Handled
	return c, nil
}
