package paths

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

// pathMany is rotate-many and its jobs. Both act across roles whatever per-role policies say,
// so both are root paths: a policy needs sudo on them (README "Security model").
func pathMany(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "rotate-many$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "many"},
			Fields: map[string]*framework.FieldSchema{
				"tag":     {Type: framework.TypeString, Description: "Rotate every role that carries this tag (e.g. owner:alice)."},
				"roles":   {Type: framework.TypeCommaStringSlice, Description: fmt.Sprintf("Rotate these roles (at most %d).", backend.MaxManyRoles)},
				"glob":    {Type: framework.TypeString, Description: "Rotate every role whose name matches: '*' any, 'team-a-*' prefix, '*-db' suffix, '*x*' substring."},
				"dry_run": {Type: framework.TypeBool, Description: "List what would rotate; rotate nothing."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.handleRotateMany, Summary: "Rotate every selected role now (needs sudo)."},
			},
			HelpSynopsis: "Rotate many roles at once: by tag, by names, or by a name glob.",
			HelpDescription: fmt.Sprintf(`Give exactly one of tag, roles or glob. Each selected role is rotated through the
whole protocol on its own (a failing role rolls back alone), at most max_parallel at once.
Up to %d roles are answered here with each role's outcome; more run as a job: the answer
carries job_id, and jobs/ID shows its state (running, done, interrupted) and each role's
outcome. dry_run=true lists the selection. Needs sudo: it acts across roles whatever
per-role policies say.`, backend.ManyInline),
		},
		{
			Pattern:      "jobs/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "jobs"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.handleJobList, Summary: "List the rotate-many jobs kept (needs sudo)."},
			},
			HelpSynopsis:    "List rotate-many jobs.",
			HelpDescription: "The ids of the last 100 rotate-many jobs.",
		},
		{
			Pattern:      "jobs/(?P<id>.+)",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "job"},
			Fields:       map[string]*framework.FieldSchema{"id": {Type: framework.TypeString, Description: "The job id a rotate-many answered.", Required: true}},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.handleJobRead, Summary: "Read a rotate-many job (needs sudo)."},
			},
			HelpSynopsis:    "Read a rotate-many job.",
			HelpDescription: "state (running, done, interrupted: the plugin stopped first; each role's own record is recovered as usual), created, finished, requested_by, and each role's outcome.",
		},
	}
}

func (b *Backend) handleRotateMany(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	res, err := b.engine.RotateMany(withRequester(ctx, req), backend.ManyRequest{
		Tag: d.Get("tag").(string), Roles: d.Get("roles").([]string), Glob: d.Get("glob").(string), DryRun: d.Get("dry_run").(bool),
	})
	if err != nil {
		return respondErr("", err)
	}
	data := map[string]interface{}{"roles": nonNil(res.Roles)}
	if res.JobID != "" {
		data["job_id"] = res.JobID
	}
	if res.Outcomes != nil {
		data["outcomes"] = manyData(res.Outcomes)
	}
	return &logical.Response{Data: data}, nil
}

func (b *Backend) handleJobList(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	ids, err := b.engine.ListJobs(ctx)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(ids), nil
}

func (b *Backend) handleJobRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	j, err := b.engine.ReadJob(ctx, d.Get("id").(string))
	if err != nil {
		return respondErr("", err)
	}
	if j == nil {
		return nil, nil
	}
	data := map[string]interface{}{
		"id": j.ID, "state": j.State, "created": timeOrNil(j.Created), "finished": timeOrNil(j.Finished),
		"outcomes": manyData(j.Outcomes),
	}
	if j.By != (backend.Requester{}) {
		data["requested_by"] = map[string]interface{}{"entity_id": j.By.EntityID, "accessor": j.By.Accessor}
	}
	return &logical.Response{Data: data}, nil
}

func manyData(outs []backend.ManyOutcome) []map[string]interface{} {
	list := make([]map[string]interface{}, 0, len(outs))
	for _, o := range outs {
		m := map[string]interface{}{"role": o.Role, "outcome": o.Result}
		if o.Version != 0 {
			m["version"] = o.Version
		}
		if o.FailedStep != "" || o.Error != "" {
			m["failed_step"], m["error"] = o.FailedStep, o.Error
		}
		if o.Detail != "" {
			m["detail"] = o.Detail
		}
		list = append(list, m)
	}
	return list
}
