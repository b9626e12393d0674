package ops

import (
	"context"
	"fmt"

	"github.com/marketplace/catalog/application/decorator"
)

// ShowDLQ reads one dead letter.
type ShowDLQ struct {
	// Ref is where the message sits in the DLQ topic.
	Ref DLQRef
}

// ShowDLQHandler answers ShowDLQ; a message that does not exist fails with an error
// wrapping ErrDLQMessageNotFound.
type ShowDLQHandler decorator.Handler[ShowDLQ, DLQMessage]

type showDLQHandler struct {
	reader DLQReader
}

// NewShowDLQHandler returns the decorated handler over reader.
func NewShowDLQHandler(reader DLQReader, deps decorator.Deps) (ShowDLQHandler, error) {
	if reader == nil {
		return nil, errNilReader
	}
	return decorator.Apply[ShowDLQ, DLQMessage](showDLQHandler{reader: reader}, deps.Log, deps.Metrics), nil
}

// Handle returns the message.
func (h showDLQHandler) Handle(ctx context.Context, q ShowDLQ) (DLQMessage, error) {
	m, err := h.reader.GetDLQ(ctx, q.Ref)
	if err != nil {
		return DLQMessage{}, fmt.Errorf("dlq show %s: %w", q.Ref, err)
	}
	return m, nil
}
