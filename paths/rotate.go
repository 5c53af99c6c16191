package paths

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathRotate(b *Backend) []*framework.Path {
	fields := nameField()
	fields["value"] = &framework.FieldSchema{Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
		Description: "The new value, for a secret only its provider can issue (a token role): the whole protocol runs with it. At most 4096 bytes for a token (4352 as stored). Write-only."}
	return []*framework.Path{{
		Pattern:      namePattern("rotate/"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "role"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.handleRotate, Summary: "Rotate a role now."},
		},
		HelpSynopsis: "Rotate a role's secret now.",
		HelpDescription: `Runs the rotation protocol: prepare (store the old and new value), apply at the
target, verify the new value there, promote it to the current version. Any failure puts the
old value back at the target. Answers with the new version and per-step timings.`,
	}}
}

func pathRollback(b *Backend) []*framework.Path {
	fields := nameField()
	fields["version"] = &framework.FieldSchema{Type: framework.TypeInt, Description: "Kept version to re-apply. Default: the previous one."}
	return []*framework.Path{{
		Pattern:      namePattern("rollback/"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rollback", OperationSuffix: "role"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.handleRollback, Summary: "Re-apply a kept version."},
		},
		HelpSynopsis: "Re-apply a kept version of a role's secret.",
		HelpDescription: `Applies a kept version (default: the previous one) at the target with the full
protocol (apply, verify, promote). It becomes a new current version holding the old value, so
the history stays linear.`,
	}}
}

func (b *Backend) handleRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	ctx = withRequester(ctx, req)
	var out *backend.Outcome
	var err error
	if v, ok := d.GetOk("value"); ok {
		out, err = b.engine.RotateTo(ctx, name, v.(string))
	} else {
		out, err = b.engine.Rotate(ctx, name)
	}
	return rotationResponse(name, out, err)
}

func (b *Backend) handleRollback(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	ctx = withRequester(ctx, req)
	version := d.Get("version").(int)
	out, err := b.engine.Rollback(ctx, name, version)
	return rotationResponse(name, out, err)
}

// rotationResponse answers a rotation: its data on success, a 400 that says which step failed
// and whether the old value is live otherwise.
func rotationResponse(name string, out *backend.Outcome, err error) (*logical.Response, error) {
	if err != nil {
		return respondErr(name, err)
	}
	if !out.Success {
		var state string
		switch out.Result {
		case backend.OutcomeUnresolved:
			state = "it is not yet known which value is live at the target; both are kept and recovery retries"
		case backend.OutcomeFailed:
			if out.NewVersion > out.OldVersion {
				state = "the new value is live at the target and is now the current one"
				break
			}
			fallthrough
		default:
			state = "the previous value is still the current one and is live at the target"
		}
		return logical.ErrorResponseWithData(rotationData(out), "rotation of %q failed at %s (%s): %s", name, out.FailedStep, state, out.Error), nil
	}
	resp := &logical.Response{Data: rotationData(out)}
	if w := backend.ForgottenWarning(out.Forgotten); w != "" {
		resp.AddWarning(w)
	}
	for _, w := range out.Warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

func rotationData(out *backend.Outcome) map[string]interface{} {
	data := map[string]interface{}{
		"version":        out.NewVersion,
		"version_before": out.OldVersion,
		"trigger":        string(out.Trigger),
		"outcome":        out.Result,
		"steps":          stepsData(out.Steps),
		"rolled_back":    out.RolledBack,
	}
	addFailureAndDeploy(data, out.FailedStep, out.Error, out.Consumers, out.Health)
	addForgotten(data, out.Forgotten, out.Warnings)
	return data
}

// addForgotten adds the look for forgotten consumers after a deploy, when it found or said
// anything (README "Finding forgotten services").
func addForgotten(data map[string]interface{}, list []backend.ForgottenConsumer, warnings []string) {
	if len(list) > 0 {
		out := make([]map[string]interface{}, 0, len(list))
		for _, f := range list {
			m := map[string]interface{}{"login": f.Login, "application_name": f.ApplicationName, "client_addr": nil, "client_port": nil,
				"backend_start": timeOrNil(f.BackendStart), "age_seconds": f.AgeSeconds}
			if f.ClientAddr != "" {
				m["client_addr"], m["client_port"] = f.ClientAddr, f.ClientPort
			}
			out = append(out, m)
		}
		data["possible_forgotten_consumers"] = out
	}
	if len(warnings) > 0 {
		data["warnings"] = warnings
	}
}

// addFailureAndDeploy adds the parts a rotation has only sometimes: the failed step with its
// error, and the deploy results.
func addFailureAndDeploy(data map[string]interface{}, failedStep, errText string, cs []backend.ConsumerResult, hs []backend.HealthResult) {
	if failedStep != "" {
		data["failed_step"] = failedStep
		data["error"] = errText
	}
	if len(cs) > 0 {
		data["consumers"] = consumersData(cs)
	}
	if len(hs) > 0 {
		data["health_checks"] = healthData(hs)
	}
}

func consumersData(list []backend.ConsumerResult) []map[string]interface{} {
	out := make([]map[string]interface{}, 0, len(list))
	for _, c := range list {
		m := map[string]interface{}{"phase": c.Phase, "consumer": c.Consumer, "container": c.Container, "status": c.Status,
			"duration": c.Duration.String(), "duration_ms": float64(c.Duration.Microseconds()) / 1000}
		if c.Error != "" {
			m["error"] = c.Error
		}
		out = append(out, m)
	}
	return out
}

func healthData(list []backend.HealthResult) []map[string]interface{} {
	out := make([]map[string]interface{}, 0, len(list))
	for _, h := range list {
		m := map[string]interface{}{"phase": h.Phase, "target": h.Target, "status": h.Status, "attempts": h.Attempts,
			"duration": h.Duration.String(), "duration_ms": float64(h.Duration.Microseconds()) / 1000}
		if h.Error != "" {
			m["error"] = h.Error
		}
		out = append(out, m)
	}
	return out
}
