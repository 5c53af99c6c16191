package paths

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathStatus(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "status",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "status"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.handleStatus, Summary: "Inventory of every role, most overdue first."},
		},
		HelpSynopsis: "Inventory of every secret under rotation.",
		HelpDescription: `One row per role: type, current version, last_rotated, age, next_rotation, due_at,
overdue (past due, e.g. a manual-only token older than its period), auto_rotate, last_outcome,
consecutive_failures and failing. Sorted most overdue first: the answer to "no secret is older
than its rotation period".`,
	}}
}

func (b *Backend) handleStatus(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	rows, err := b.engine.Status(ctx)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]interface{}, 0, len(rows))
	overdue := 0
	for _, r := range rows {
		if r.Overdue {
			overdue++
		}
		list = append(list, statusData(r))
	}
	return &logical.Response{Data: map[string]interface{}{"roles": list, "total": len(rows), "overdue": overdue}}, nil
}

func statusData(r backend.StatusRow) map[string]interface{} {
	return map[string]interface{}{
		"name": r.Name, "type": r.Type, "current_version": r.CurrentVersion,
		"last_rotated": timeOrNil(r.LastRotated), "age_seconds": int64(r.Age.Seconds()),
		"next_rotation": timeOrNil(r.NextRotation), "due_at": timeOrNil(r.DueAt),
		"overdue": r.Overdue, "overdue_seconds": int64(r.OverdueBy.Seconds()), "auto_rotate": r.AutoRotate,
		"last_outcome": r.LastOutcome, "consecutive_failures": r.ConsecutiveFailures, "failing": r.Failing,
	}
}
