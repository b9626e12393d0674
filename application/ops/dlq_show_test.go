package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
)

func TestDLQShow(t *testing.T) {
	svc, _ := ops.NewDLQService(sampleDLQ(), nil, nil, decorator.Deps{})
	m, err := svc.Show(context.Background(), ops.DLQRef{Partition: 1, Offset: 0})
	if err != nil || m.EventID != "e-2" {
		t.Fatalf("show: %+v, %v", m, err)
	}
	if _, err := svc.Show(context.Background(), ops.DLQRef{Partition: 9, Offset: 9}); !errors.Is(err, ops.ErrDLQMessageNotFound) {
		t.Fatalf("show of a missing message: %v", err)
	}
}
