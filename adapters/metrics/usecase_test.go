package metrics_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/domain/product"
)

// TestUseCaseOutcomeSeparatesClientMistakes: a client's or an operator's mistake is counted
// apart from a failure, so an alert on failing use cases is not set off by bad input.
func TestUseCaseOutcomeSeparatesClientMistakes(t *testing.T) {
	r := newRegistry(t)
	for name, err := range map[string]error{
		"create_product":    fmt.Errorf("create product: %w", product.ErrDuplicateSKU),
		"get_status":        fmt.Errorf("status: %w", ops.ErrInvalid),
		"verify_read_model": fmt.Errorf("verify: %w", ops.ErrVerifyRunning),
		"show_dlq":          fmt.Errorf("dlq show 9:9: %w", ops.ErrDLQMessageNotFound),
		"replay_dlq":        ops.ErrReplayInvalidRequest,
		"resolve_dlq":       ops.ErrResolveInvalidRequest,
		"list_dlq":          ops.ErrDLQInvalidFilter,
		"list_dlq_audit":    errors.New("audit log unreachable"),
	} {
		r.ObserveUseCase(name, time.Millisecond, err)
	}
	r.ObserveUseCase("list_dlq", time.Millisecond, nil)
	for name, want := range map[string]string{
		"create_product": "client_error", "get_status": "client_error", "verify_read_model": "client_error", "show_dlq": "client_error",
		"replay_dlq": "client_error", "resolve_dlq": "client_error", "list_dlq": "client_error", "list_dlq_audit": "error",
	} {
		if n, ok := histogramCount(t, r, "catalog_use_case_duration_seconds", map[string]string{"use_case": name, "outcome": want}); !ok || n != 1 {
			t.Errorf("%s: %d observations with outcome %s (found %v), want 1", name, n, want, ok)
		}
	}
	if n, ok := histogramCount(t, r, "catalog_use_case_duration_seconds", map[string]string{"use_case": "list_dlq", "outcome": "ok"}); !ok || n != 1 {
		t.Errorf("list_dlq ok: %d observations (found %v), want 1", n, ok)
	}
}
