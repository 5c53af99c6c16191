package paths

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathHistory(b *Backend) []*framework.Path {
	return []*framework.Path{roleReadPath{
		prefix: "history/", suffix: "history", read: b.handleHistory,
		extra: map[string]*framework.FieldSchema{
			"limit":  {Type: framework.TypeInt, Description: fmt.Sprintf("How many entries, newest first (default %d, at most %d).", backend.DefaultHistoryPage, backend.MaxHistoryPage)},
			"before": {Type: framework.TypeInt, Description: "Only entries numbered below this one (seq): the next_before of the previous page."},
		},
		summary:  "Read a role's rotation record.",
		synopsis: "Read a role's rotation record.",
		help: "Every rotation of the role, newest first, bounded by history_limit and paged (limit, before; the answer's " +
			"next_before reads the next page): seq, time, trigger, outcome, versions, each step with its duration and " +
			"error, consumers and health checks, and who asked. Never a secret value.",
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
	page, err := b.engine.HistoryPage(ctx, name, backend.HistoryQuery{Limit: d.Get("limit").(int), Before: int64(d.Get("before").(int))})
	if err != nil {
		return respondErr(name, err)
	}
	list := make([]map[string]interface{}, 0, len(page.Entries))
	for i, h := range page.Entries {
		entry := map[string]interface{}{
			"seq": page.Seqs[i], "time": timeOrNil(h.Time), "trigger": string(h.Trigger), "outcome": h.Outcome,
			"version_before": h.VersionBefore, "version_after": h.VersionAfter,
			"rolled_back": h.RolledBack, "steps": stepsData(h.Steps),
		}
		addFailureAndDeploy(entry, h.FailedStep, h.Error, h.Consumers, h.Health)
		addForgotten(entry, h.Forgotten, h.Warnings)
		if h.RequestedBy != (backend.Requester{}) {
			entry["requested_by"] = map[string]interface{}{"entity_id": h.RequestedBy.EntityID, "accessor": h.RequestedBy.Accessor}
		}
		list = append(list, entry)
	}
	data := map[string]interface{}{"history": list}
	if page.Next > 0 {
		data["next_before"] = page.Next
	}
	return &logical.Response{Data: data}, nil
}
