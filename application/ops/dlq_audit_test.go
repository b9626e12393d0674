package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/marketplace/catalog/application/ops"
)

func TestReadAudit(t *testing.T) {
	svc, _, _, audit := newReplayer(t)
	ctx := context.Background()
	if _, err := svc.Resolve(ctx, ops.ResolveRequest{All: true, Operator: "alice", Reason: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := ops.ReadAudit(ctx, audit, ops.AuditFilter{DLQTopic: "dlq.product.events", Action: ops.AuditActionResolve})
	if err != nil || len(entries) != 5 || entries[0].ID != 5 {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	for name, f := range map[string]ops.AuditFilter{
		"no topic":       {},
		"unknown action": {DLQTopic: "d", Action: "delete"},
		"negative limit": {DLQTopic: "d", Limit: -1},
	} {
		if _, err := ops.ReadAudit(ctx, audit, f); !errors.Is(err, ops.ErrDLQInvalidFilter) {
			t.Errorf("%s: %v, want ErrDLQInvalidFilter", name, err)
		}
	}
	if _, err := ops.ReadAudit(ctx, nil, ops.AuditFilter{DLQTopic: "d"}); !errors.Is(err, ops.ErrAuditUnavailable) {
		t.Errorf("no audit log: %v", err)
	}
}
