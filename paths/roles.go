package paths

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Common role fields (every type): the engine owns their names and rules.
const (
	fieldType             = backend.FieldType
	fieldRotationPeriod   = backend.FieldRotationPeriod
	fieldRotationSchedule = backend.FieldRotationSchedule
	fieldRotationWindow   = backend.FieldRotationWindow
	fieldAutoRotate       = backend.FieldAutoRotate
	fieldVersionsKept     = backend.FieldVersionsKept
	fieldPasswordPolicy   = backend.FieldPasswordPolicy
	fieldConsumers        = backend.FieldConsumers
	fieldHealthChecks     = backend.FieldHealthChecks
	fieldHealthTimeout    = backend.FieldHealthTimeout
	fieldRollback         = backend.FieldRollback
	fieldTags             = backend.FieldTags
	fieldStrictConsumers  = backend.FieldStrictConsumers
)

func commonRoleFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		fieldType: {Type: framework.TypeString, Description: "Kind of secret: " + strings.Join(rotators.Names(), ", ") + ". Required at create; cannot change."},
		fieldRotationPeriod: {Type: framework.TypeDurationSecond,
			Description: "Rotate this long after the last rotation (e.g. 2160h; 5s to 43800h). Give this or rotation_schedule."},
		fieldRotationSchedule: {Type: framework.TypeString,
			Description: "5-field cron expression, UTC (e.g. '0 0 1 1,4,7,10 *' for quarterly), at most 128 bytes; one that never fires (30 February) is refused. Give this or rotation_period."},
		fieldRotationWindow: {Type: framework.TypeDurationSecond,
			Description: "With rotation_schedule: how long after a scheduled time the rotation may still start (at most 8760h); a missed window waits for the next scheduled time."},
		fieldAutoRotate: {Type: framework.TypeBool, Default: true,
			Description: "Rotate on the schedule. False: only rotated on request."},
		fieldVersionsKept: {Type: framework.TypeInt, Default: backend.DefaultVersionsKept,
			Description: fmt.Sprintf("How many values to keep, current included (%d to %d).", backend.MinVersionsKept, backend.MaxVersionsKept)},
		fieldPasswordPolicy: {Type: framework.TypeString,
			Description: "Name of a Vault password policy for generated passwords (at most 512 bytes each). Default: 26 random base32 characters."},
		fieldConsumers: {Type: framework.TypeCommaStringSlice,
			Description: "Services restarted, in this order, on every rotation: docker:CONTAINER or compose:PROJECT/SERVICE, each optionally ?stop_timeout=DURATION (at most 1h). Checked to exist before the target is touched. At most 16, each at most 256 bytes."},
		fieldHealthChecks: {Type: framework.TypeCommaStringSlice,
			Description: "Checks that must pass after the restarts: http(s)://... (2xx) or tcp://host:port (connect). At most 16, each at most 512 bytes."},
		fieldHealthTimeout: {Type: framework.TypeDurationSecond, Default: int(backend.DefaultHealthTimeout.Seconds()),
			Description: "How long the health checks (and each restarted container) may take to pass (1s to 1h)."},
		fieldTags: {Type: framework.TypeCommaStringSlice,
			Description: fmt.Sprintf("Free-form labels (owner:alice, team:payments) that select roles for rotate-many; at most %d, each at most 128 bytes, printable, no commas.", backend.MaxTags)},
		fieldStrictConsumers: {Type: framework.TypeBool, Default: false,
			Description: "After the consumers restarted and passed their health checks, sessions of the role's logins opened before the rotation (possible forgotten consumers) fail the deploy, as does a look that could not be made (false: they are reported as warnings)."},
		fieldRollback: {Type: framework.TypeBool, Default: true,
			Description: "When the consumers do not come back healthy: restore the old value at the target and restart them again (true), or keep the new value and mark the rotation failed (false)."},
	}
}

// roleFields is every field a role write accepts: the common ones and each kind's own.
func roleFields() map[string]*framework.FieldSchema {
	fields := commonRoleFields()
	fields["name"] = nameField()["name"]
	for _, k := range rotators.All() {
		for _, f := range k.Fields() {
			if existing, ok := fields[f.Name]; ok {
				existing.Description += fmt.Sprintf(" (%s) %s", k.Name(), f.Description)
				continue
			}
			fields[f.Name] = kindFieldSchema(f, k.Name())
		}
	}
	return fields
}

func pathRoles(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "roles"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.handleRoleList, Summary: "List the roles."},
			},
			HelpSynopsis:    "List the roles under rotation.",
			HelpDescription: "Lists the names of every role; read roles/NAME for one role's settings and schedule.",
		},
		{
			Pattern:        namePattern("roles/"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "role"},
			Fields:         roleFields(),
			ExistenceCheck: b.roleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.handleRoleWrite, Summary: "Create a role: import its current value, or rotate it at once."},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.handleRoleWrite, Summary: "Update a role's settings."},
				logical.ReadOperation:   &framework.PathOperation{Callback: b.handleRoleRead, Summary: "Read a role's settings, schedule and health (never a secret)."},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.handleRoleDelete, Summary: "Delete a role; the target is not changed."},
			},
			HelpSynopsis: "Manage a secret under rotation.",
			HelpDescription: `A role is one secret under rotation. Fields are flat: the common ones apply to every
type; the others belong to one type and are rejected on a role of another type.

Create with the current value (e.g. password=...) to import it as version 1 without
changing the target; create without it to rotate at once where the type can (postgres
with admin_role). Write-only fields (password) are never returned.`,
		},
	}
}

func (b *Backend) roleExists(ctx context.Context, _ *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if backend.ValidateRoleName(name) != nil {
		return false, nil
	}
	v, err := b.engine.ReadRole(ctx, name)
	return v != nil, err
}

// handleRoleList lists the roles with their key columns (`vault list -detailed rotation/roles`).
func (b *Backend) handleRoleList(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	rows, err := b.engine.Status(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rows))
	info := make(map[string]interface{}, len(rows))
	for _, r := range rows {
		names = append(names, r.Name)
		info[r.Name] = map[string]interface{}{
			"type": r.Type, "last_rotated": timeOrNil(r.LastRotated), "next_rotation": timeOrNil(r.NextRotation),
			"overdue": r.Overdue, "last_outcome": r.LastOutcome, "failing": r.Failing,
		}
	}
	sort.Strings(names)
	return logical.ListResponseWithInfo(names, info), nil
}

func (b *Backend) handleRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	typ := d.Get(fieldType).(string)
	given := make([]string, 0, len(req.Data))
	for k := range req.Data {
		given = append(given, k)
	}
	// The engine decides the kind (and refuses foreign fields) before the kind's fields are
	// decoded: the type rules have one owner.
	kind, err := b.engine.RoleKind(ctx, name, typ, given)
	if err != nil {
		return respondErr(name, err)
	}

	in := backend.RoleInput{Type: typ, Settings: map[string]interface{}{}, Secrets: map[string]string{}, Given: given}
	if v, ok := d.GetOk(fieldRotationPeriod); ok {
		p := time.Duration(v.(int)) * time.Second
		in.RotationPeriod = &p
	}
	if v, ok := d.GetOk(fieldRotationSchedule); ok {
		s := v.(string)
		in.RotationSchedule = &s
	}
	if v, ok := d.GetOk(fieldRotationWindow); ok {
		w := time.Duration(v.(int)) * time.Second
		in.RotationWindow = &w
	}
	if v, ok := d.GetOk(fieldAutoRotate); ok {
		a := v.(bool)
		in.AutoRotate = &a
	}
	if v, ok := d.GetOk(fieldVersionsKept); ok {
		n := v.(int)
		in.VersionsKept = &n
	}
	if v, ok := d.GetOk(fieldPasswordPolicy); ok {
		p := v.(string)
		in.PasswordPolicy = &p
	}
	if v, ok := d.GetOk(fieldConsumers); ok {
		list := v.([]string)
		in.Consumers = &list
	}
	if v, ok := d.GetOk(fieldHealthChecks); ok {
		list := v.([]string)
		in.HealthChecks = &list
	}
	if v, ok := d.GetOk(fieldHealthTimeout); ok {
		t := time.Duration(v.(int)) * time.Second
		in.HealthTimeout = &t
	}
	if v, ok := d.GetOk(fieldRollback); ok {
		b := v.(bool)
		in.RollbackOnFailure = &b
	}
	if v, ok := d.GetOk(fieldTags); ok {
		list := v.([]string)
		in.Tags = &list
	}
	if v, ok := d.GetOk(fieldStrictConsumers); ok {
		b := v.(bool)
		in.StrictConsumers = &b
	}
	for _, f := range kind.Fields() {
		if _, given := req.Data[f.Name]; !given {
			continue
		}
		v, _, err := d.GetOkErr(f.Name)
		if err != nil {
			return logical.ErrorResponse("%s: %s", f.Name, err), nil
		}
		if f.Kind == rotators.FieldSecret {
			in.Secrets[f.Name], _ = v.(string)
			continue
		}
		in.Settings[f.Name] = v
	}

	res, err := b.engine.WriteRole(withRequester(ctx, req), name, in)
	if err != nil {
		return respondErr(name, err)
	}
	if res.Rotation == nil {
		return nil, nil
	}
	return &logical.Response{Data: rotationData(res.Rotation)}, nil
}

func (b *Backend) handleRoleRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	v, err := b.engine.ReadRole(ctx, name)
	if err != nil || v == nil {
		return nil, err
	}
	r := v.Role
	data := r.Settings.Public()
	data[fieldType] = r.Type
	data[fieldRotationPeriod] = int64(r.RotationPeriod.Seconds())
	data[fieldRotationSchedule] = r.RotationSchedule
	data[fieldRotationWindow] = int64(r.RotationWindow.Seconds())
	data[fieldAutoRotate] = r.AutoRotate
	data[fieldVersionsKept] = r.VersionsKept
	data[fieldPasswordPolicy] = r.PasswordPolicy
	data[fieldConsumers] = nonNil(r.Consumers)
	data[fieldHealthChecks] = nonNil(r.HealthChecks)
	data[fieldHealthTimeout] = int64(r.HealthTimeoutOrDefault().Seconds())
	data[fieldRollback] = r.RollbackOnFailure()
	data[fieldStrictConsumers] = r.StrictConsumers
	data[fieldTags] = nonNil(r.Tags)
	data["current_version"] = v.CurrentVersion
	data["last_rotated"] = timeOrNil(v.LastRotated)
	data["next_rotation"] = timeOrNil(v.NextRotation)
	data["last_outcome"] = v.LastOutcome
	data["last_error"] = v.LastError
	data["consecutive_failures"] = v.ConsecutiveFailures
	data["failing"] = v.Failing
	data["pending"] = v.Pending
	data["due_at"] = timeOrNil(v.DueAt)
	data["overdue"] = v.Overdue
	return &logical.Response{Data: data}, nil
}

func (b *Backend) handleRoleDelete(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, errResp := nameOf(d)
	if errResp != nil {
		return errResp, nil
	}
	if err := b.engine.DeleteRole(ctx, name); err != nil {
		return respondErr(name, err)
	}
	return nil, nil
}

func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
