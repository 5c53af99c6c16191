package paths

import (
	"context"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
)

func pathRotate(b *Backend) []*framework.Path {
	fields := nameField()
	fields["value"] = &framework.FieldSchema{Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
		Description: "The new value, for a secret only its provider can issue (a token role): the whole protocol runs with it. Write-only."}
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
	if version < 0 {
		return logical.ErrorResponse("version: must be positive"), nil
	}
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
		default:
			state = "the previous value is still the current one and is live at the target"
		}
		return logical.ErrorResponseWithData(rotationData(out), "rotation of %q failed at %s (%s): %s", name, out.FailedStep, state, out.Error), nil
	}
	return &logical.Response{Data: rotationData(out)}, nil
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
	if out.FailedStep != "" {
		data["failed_step"] = out.FailedStep
		data["error"] = out.Error
	}
	if len(out.Consumers) > 0 {
		data["consumers"] = consumersData(out.Consumers)
	}
	if len(out.Health) > 0 {
		data["health_checks"] = healthData(out.Health)
	}
	return data
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

func pathCreds(b *Backend) []*framework.Path {
	fields := nameField()
	fields["version"] = &framework.FieldSchema{Type: framework.TypeInt, Description: "Kept version to read. Default: the current one."}
	return []*framework.Path{{
		Pattern:      namePattern("creds/"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credentials"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.handleCreds, Summary: "Read the current (or a kept) credential."},
		},
		HelpSynopsis:    "Read a role's credential.",
		HelpDescription: "Returns the current value (or kept version=N) with its version and schedule. For postgres: username, password and connection_url with the password filled in.",
	}}
}

func (b *Backend) handleCreds(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	n := d.Get("version").(int)
	if n < 0 {
		return logical.ErrorResponse("version: must be positive"), nil
	}
	v, described, view, err := b.engine.Creds(ctx, name, n)
	if err != nil {
		return respondErr(name, err)
	}
	data := map[string]interface{}{}
	for k, s := range v.Secret {
		data[k] = s
	}
	for k, s := range described {
		data[k] = s
	}
	data["version"] = v.Number
	data["current_version"] = view.CurrentVersion
	data["created"] = timeOrNil(v.Created)
	data["last_rotated"] = timeOrNil(view.LastRotated)
	data["next_rotation"] = timeOrNil(view.NextRotation)
	return &logical.Response{Data: data}, nil
}

func pathVersions(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      namePattern("versions/"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "versions"},
		Fields:       nameField(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.handleVersions, Summary: "List kept versions without values."},
		},
		HelpSynopsis:    "List a role's kept versions.",
		HelpDescription: "Number, creation time, what created it and status (active or previous) of each kept version, newest first. No values.",
	}}
}

func (b *Backend) handleVersions(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	versions, err := b.engine.Versions(ctx, name)
	if err != nil {
		return respondErr(name, err)
	}
	list := make([]map[string]interface{}, 0, len(versions))
	current := 0
	for _, v := range versions {
		if v.Status == backend.VersionActive {
			current = v.Number
		}
		list = append(list, map[string]interface{}{"version": v.Number, "created": timeOrNil(v.Created), "trigger": string(v.Trigger), "status": v.Status})
	}
	return &logical.Response{Data: map[string]interface{}{"versions": list, "current_version": current}}, nil
}

func pathHistory(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      namePattern("history/"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "history"},
		Fields:       nameField(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.handleHistory, Summary: "Read a role's rotation record."},
		},
		HelpSynopsis:    "Read a role's rotation record.",
		HelpDescription: "Every rotation of the role, newest first, bounded by history_limit: time, trigger, outcome, versions and each step with its duration and error. Never a secret value.",
	}}
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
		if h.FailedStep != "" {
			entry["failed_step"] = h.FailedStep
			entry["error"] = h.Error
		}
		if len(h.Consumers) > 0 {
			entry["consumers"] = consumersData(h.Consumers)
		}
		if len(h.Health) > 0 {
			entry["health_checks"] = healthData(h.Health)
		}
		if h.RequestedBy != (backend.Requester{}) {
			entry["requested_by"] = map[string]interface{}{"entity_id": h.RequestedBy.EntityID, "accessor": h.RequestedBy.Accessor}
		}
		list = append(list, entry)
	}
	return &logical.Response{Data: map[string]interface{}{"history": list}}, nil
}

func pathConfig(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "config",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "configuration"},
		Fields: map[string]*framework.FieldSchema{
			"max_parallel":  {Type: framework.TypeInt, Default: backend.DefaultConfig().MaxParallel, Description: "How many scheduled rotations run at once."},
			"history_limit": {Type: framework.TypeInt, Default: backend.DefaultConfig().HistoryLimit, Description: "How many history entries to keep per role."},
			"retry_base":    {Type: framework.TypeDurationSecond, Default: int(backend.DefaultConfig().RetryBase.Seconds()), Description: "First backoff after a failed scheduled rotation; doubles on each failure."},
			"retry_max":     {Type: framework.TypeDurationSecond, Default: int(backend.DefaultConfig().RetryMax.Seconds()), Description: "Longest backoff."},
			"max_failures":  {Type: framework.TypeInt, Default: backend.DefaultConfig().MaxFailures, Description: "Consecutive failures after which a role is parked as failing until it is written or rotated by hand."},
			"notify_url":    {Type: framework.TypeString, Description: "http(s) URL that receives a JSON document (event, role, type, version, outcome, error, time; never a secret) on every success, failure, rollback, parking, and due reminder of a manual-only role. Empty: off."},
			"docker_host":   {Type: framework.TypeString, Default: backend.DefaultDockerHost, Description: "Docker Engine API that docker: and compose: consumers are restarted through (unix:///var/run/docker.sock, tcp://127.0.0.1:2375)."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.handleConfigRead, Summary: "Read the mount's settings."},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.handleConfigWrite, Summary: "Change the mount's settings."},
		},
		HelpSynopsis:    "The mount's rotation settings.",
		HelpDescription: "Concurrency of scheduled rotations, history size, the backoff and failure limit of scheduled retries, and the Docker engine of the consumers.",
	}}
}

func configData(c backend.Config) map[string]interface{} {
	return map[string]interface{}{
		"max_parallel": c.MaxParallel, "history_limit": c.HistoryLimit,
		"retry_base": int64(c.RetryBase.Seconds()), "retry_max": int64(c.RetryMax.Seconds()), "max_failures": c.MaxFailures,
		"docker_host": c.DockerHost, "notify_url": c.NotifyURL,
	}
}

func (b *Backend) handleConfigRead(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: configData(b.engine.Config())}, nil
}

func (b *Backend) handleConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var unknown []string
	for k := range req.Data {
		if _, ok := d.Schema[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return logical.ErrorResponse("%s: not a config field", strings.Join(unknown, ", ")), nil
	}
	c := b.engine.Config()
	if v, ok := d.GetOk("max_parallel"); ok {
		c.MaxParallel = v.(int)
	}
	if v, ok := d.GetOk("history_limit"); ok {
		c.HistoryLimit = v.(int)
	}
	if v, ok := d.GetOk("retry_base"); ok {
		c.RetryBase = secondsDuration(v.(int))
	}
	if v, ok := d.GetOk("retry_max"); ok {
		c.RetryMax = secondsDuration(v.(int))
	}
	if v, ok := d.GetOk("max_failures"); ok {
		c.MaxFailures = v.(int)
	}
	if v, ok := d.GetOk("docker_host"); ok {
		c.DockerHost = v.(string)
	}
	if v, ok := d.GetOk("notify_url"); ok {
		c.NotifyURL = v.(string)
	}
	if err := b.engine.SetConfig(ctx, c); err != nil {
		return respondErr("", err)
	}
	return nil, nil
}
