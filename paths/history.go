package paths

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathHistory(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "history/", suffix: "history", read: b.handleHistory,
		summary:  "Read a role's rotation record.",
		synopsis: "Read a role's rotation record.",
		help: "Every rotation of the role, newest first, bounded by history_limit: time, trigger, outcome, versions, " +
			"each step with its duration and error, consumers and health checks, and who asked. Never a secret value.",
	}.path()}
}

func (b *Backend) handleHistory(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	if v, err := b.engine.ReadRole(ctx, name); err != nil || v == nil {
		if err == nil {
			err = backend.ErrRoleNotFound
		}
		return respondErr(name, err)
	}
	hist, err := b.engine.History(ctx, name)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]interface{}, 0, len(hist))
	for _, h := range hist {
		entry := map[string]interface{}{
			"time": timeOrNil(h.Time), "trigger": string(h.Trigger), "outcome": h.Outcome,
			"version_before": h.VersionBefore, "version_after": h.VersionAfter,
			"rolled_back": h.RolledBack, "steps": stepsData(h.Steps),
		}
		addFailureAndDeploy(entry, h.FailedStep, h.Error, h.Consumers, h.Health)
		if h.RequestedBy != (backend.Requester{}) {
			entry["requested_by"] = map[string]interface{}{"entity_id": h.RequestedBy.EntityID, "accessor": h.RequestedBy.Accessor}
		}
		list = append(list, entry)
	}
	return &logical.Response{Data: map[string]interface{}{"history": list}}, nil
}
