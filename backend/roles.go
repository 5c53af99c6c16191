package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// RoleInput is one role write: only the fields the request carried are set.
type RoleInput struct {
	Type              string
	RotationPeriod    *time.Duration
	RotationSchedule  *string
	RotationWindow    *time.Duration
	AutoRotate        *bool
	VersionsKept      *int
	PasswordPolicy    *string
	Consumers         *[]string
	HealthChecks      *[]string
	HealthTimeout     *time.Duration
	RollbackOnFailure *bool
	StrictConsumers   *bool
	Tags              *[]string
	// Settings are the type-specific fields, decoded by their field kinds.
	Settings map[string]interface{}
	// Secrets are the write-only fields (the current value to import).
	Secrets map[string]string
	// Given names every field the request carried, for the field rule (checkFieldNames).
	Given []string
}

// WriteResult says what a role write did.
type WriteResult struct {
	Created  bool
	Imported bool
	// Rotation is the first rotation of a role created without a value.
	Rotation *Outcome
}

// WriteRole creates or updates a role. A created role either imports the supplied current value
// (verified at the target, which is not changed) or is rotated at once; if that fails, no role
// is left behind.
func (e *Engine) WriteRole(ctx context.Context, name string, in RoleInput) (*WriteResult, error) {
	if err := ValidateRoleName(name); err != nil {
		return nil, userError(err)
	}
	if !e.writeSafe() {
		return nil, logical.ErrReadOnly // Vault forwards it to a node that may write
	}
	// One lock from the write to the end of the first rotation and its cleanup: no other
	// rotation of the role can start in between and be deleted with a failed create.
	unlock := e.locks.lock(name)
	defer unlock()
	res, err := e.writeRoleLocked(ctx, name, in)
	if err != nil || !res.Created || res.Imported {
		return res, err
	}
	out, err := e.rotateLocked(ctx, name, rotateRequest{trigger: TriggerCreate})
	if errors.Is(err, errShuttingDown) {
		// Nothing was sent to the target: no role is left behind without a value.
		if ferr := e.forgetLocked(ctx, name); ferr != nil {
			return nil, ferr
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	res.Rotation = out
	switch {
	case out.Success:
		return res, nil
	case out.Result == OutcomeUnresolved || e.pending.has(name):
		return res, userError(fmt.Errorf("the first rotation failed at %s, and the target may hold the new value, so the role is kept with that value pending until the plugin can tell: %s", out.FailedStep, out.Error))
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, err
	}
	if st.Current() != nil {
		// The target took the first value although a later step failed: it is kept.
		return res, userError(fmt.Errorf("the first rotation failed at %s after the target took the new value, which is kept as the current value: fix the role and rotate it: %s", out.FailedStep, out.Error))
	}
	if err := e.forgetLocked(ctx, name); err != nil {
		return nil, err
	}
	return nil, userError(fmt.Errorf("the first rotation failed at %s, so the role was not created: %s", out.FailedStep, out.Error))
}

func (e *Engine) writeRoleLocked(ctx context.Context, name string, in RoleInput) (*WriteResult, error) {
	existing, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, err
	}
	res := &WriteResult{Created: existing == nil}
	role, kind, err := mergeRole(name, existing, in)
	if err != nil {
		return nil, userError(err)
	}
	// Every write, not only one that changes them: a stored role always fits the lists as they
	// were when it was written.
	if err := e.Config().checkDeploy(role); err != nil {
		return nil, userError(err)
	}
	if err := e.checkLinks(ctx, role, kind, existing == nil); err != nil {
		return nil, err
	}
	releaseClaims, err := e.admit(ctx, role, existing, kind)
	defer releaseClaims()
	if err != nil {
		return nil, err
	}
	if role.PasswordPolicy != "" && (in.PasswordPolicy != nil || existing == nil) {
		if _, err := e.passwordGenerator(role.PasswordPolicy)(ctx); err != nil {
			return nil, userError(err)
		}
	}
	secret, err := kind.ImportSecret(role.Settings, in.Secrets)
	if err != nil {
		return nil, userError(err)
	}
	if secret != nil {
		// Refused here, before the target is asked or anything is stored: a value too large
		// for its kept versions would otherwise fail at promote.
		if err := rotators.CheckValueSize(secretFields(kind, in.Secrets), secret); err != nil {
			return nil, userError(err)
		}
	}
	if secret == nil && existing == nil {
		if why := kind.NeedsImport(role.Settings); why != "" {
			return nil, userError(errors.New(why))
		}
	}
	st := &State{}
	var pend *Pending
	if existing != nil {
		if st, err = e.loadState(ctx, name); err != nil {
			return nil, err
		}
		if pend, err = e.loadPending(ctx, name); err != nil {
			return nil, err
		}
	}
	if pend != nil {
		if secret != nil {
			return nil, userError(errors.New("an unresolved rotation is pending for this role; it must be resolved before a value is imported"))
		}
		// The record is resolved against the role's target; moving the target under it could
		// promote a value that works elsewhere. Only once recovery gave up on the record (parked
		// after max_failures attempts) may its operator repoint the role.
		if changesTarget(existing, role) && pend.Attempts < e.Config().MaxFailures {
			return nil, userError(fmt.Errorf("a rotation of this role is unresolved (phase %s): its type-specific settings and consumers cannot change until it is resolved (rotate/%s resolves it) or recovery parks the role", pend.Phase, name))
		}
	}
	if f := reidentified(kind, existing, role); f != "" && secret == nil && st.Current() != nil {
		return nil, userError(fmt.Errorf("%s: the role holds a value of the account it names now; import the new account's current value in the same write (%s), or delete the role and create it again", f, secretFields(kind, map[string]string{"password": "", "value": "", "private_key": ""})))
	}
	if secret != nil {
		if err := e.verifyImport(ctx, role, kind, secret); err != nil {
			return nil, err
		}
	} else if relocated(kind, existing, role) {
		if err := e.proveAtNewLocation(ctx, role, kind, st, pend); err != nil {
			return nil, err
		}
	}

	// A write is the operator's answer to a failing role: the schedule, and the recovery of a
	// pending record, may try again.
	st.Failing, st.ConsecutiveFailures, st.RetryAt = false, 0, time.Time{}
	if pend != nil && (pend.Attempts > 0 || !pend.RetryAt.IsZero()) {
		pend.Attempts, pend.RetryAt = 0, time.Time{}
		if err := putJSON(ctx, e.storage, pendingPrefix+name, pend); err != nil {
			return nil, err
		}
	}
	// Trimming asks the kind about the settings being written, not the stored ones.
	st.retain = retention(role)
	if secret != nil {
		next := 1
		if cur := st.Current(); cur != nil {
			next = cur.Number + 1
		}
		st.push(Version{Number: next, Created: e.now(), Trigger: TriggerImport, Secret: secret}, role.VersionsKept)
		st.LastRotated = e.now()
		res.Imported = true
	} else {
		st.trim(role.VersionsKept, e.now())
	}
	if err := putJSON(ctx, e.storage, rolePrefix+name, role); err != nil {
		return nil, err
	}
	if err := putJSON(ctx, e.storage, statePrefix+name, st); err != nil {
		return nil, err
	}
	if res.Imported || !res.Created {
		e.reschedule(role, st)
	}
	e.logger.Info("role written", "role", name, "type", role.Type, "created", res.Created, "imported", res.Imported)
	return res, nil
}

// changesTarget reports whether a write changes what a pending record is resolved against: the
// kind's settings or the consumers.
func changesTarget(before, after *Role) bool {
	return !sameSettings(before.Settings, after.Settings) || !slices.Equal(before.Consumers, after.Consumers)
}

// Common role fields: every type has them (README "Usage"). The kinds' own fields come from
// rotators.Kind.Fields.
const (
	FieldType             = "type"
	FieldRotationPeriod   = "rotation_period"
	FieldRotationSchedule = "rotation_schedule"
	FieldRotationWindow   = "rotation_window"
	FieldAutoRotate       = "auto_rotate"
	FieldVersionsKept     = "versions_kept"
	FieldPasswordPolicy   = "password_policy"
	FieldConsumers        = "consumers"
	FieldHealthChecks     = "health_checks"
	FieldHealthTimeout    = "health_timeout"
	FieldRollback         = "rollback_on_failure"
	FieldTags             = "tags"
	FieldStrictConsumers  = "strict_consumers"
)

// CommonFields lists the common role fields.
var CommonFields = []string{FieldType, FieldRotationPeriod, FieldRotationSchedule, FieldRotationWindow, FieldAutoRotate,
	FieldVersionsKept, FieldPasswordPolicy, FieldConsumers, FieldHealthChecks, FieldHealthTimeout, FieldRollback, FieldTags, FieldStrictConsumers}

// RoleKind is the kind a write to role name is about: the stored role's, or the requested type
// for a new role. It applies the type rules (required at create, known, never changed) and the
// field rule (only common fields and the kind's own), so that a request is refused before
// its fields are decoded. given names the fields the request carried.
func (e *Engine) RoleKind(ctx context.Context, name, requested string, given []string) (rotators.Kind, error) {
	if err := ValidateRoleName(name); err != nil {
		return nil, userError(err)
	}
	existing, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, err
	}
	kind, err := resolveKind(existing, requested)
	if err != nil {
		return nil, userError(err)
	}
	if err := checkFieldNames(kind, given); err != nil {
		return nil, userError(err)
	}
	return kind, nil
}

// resolveKind applies the type rules to a write: required at create, known, never changed.
func resolveKind(existing *Role, requested string) (rotators.Kind, error) {
	typ := requested
	if existing != nil {
		if requested != "" && requested != existing.Type {
			return nil, fmt.Errorf("type: cannot change from %s to %s; delete the role and create it again", existing.Type, requested)
		}
		typ = existing.Type
	}
	if typ == "" {
		return nil, fmt.Errorf("type: required (one of %s)", strings.Join(rotators.Names(), ", "))
	}
	kind, ok := rotators.Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("type: %q is not one of %s", typ, strings.Join(rotators.Names(), ", "))
	}
	return kind, nil
}

// checkFieldNames refuses fields that are neither common nor of the role's kind, naming them.
func checkFieldNames(kind rotators.Kind, given []string) error {
	allowed := map[string]bool{"name": true}
	for _, n := range CommonFields {
		allowed[n] = true
	}
	for _, f := range kind.Fields() {
		allowed[f.Name] = true
	}
	var foreign []string
	for _, k := range given {
		if !allowed[k] {
			foreign = append(foreign, k)
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	slices.Sort(foreign)
	return fmt.Errorf("%s: not a field of a %s role", strings.Join(foreign, ", "), kind.Name())
}

// mergeRole applies a write to the existing role (nil: create) and validates the result.
func mergeRole(name string, existing *Role, in RoleInput) (*Role, rotators.Kind, error) {
	kind, err := resolveKind(existing, in.Type)
	if err != nil {
		return nil, nil, err
	}
	if err := checkFieldNames(kind, in.Given); err != nil {
		return nil, nil, err
	}
	var role Role
	if existing == nil {
		role = Role{Name: name, Type: kind.Name(), AutoRotate: true, VersionsKept: DefaultVersionsKept}
	} else {
		role = *existing
		role.Settings = cloneSettings(existing.Settings)
	}

	if in.RotationPeriod != nil && in.RotationSchedule != nil && *in.RotationPeriod != 0 && *in.RotationSchedule != "" {
		return nil, nil, errors.New("rotation_period and rotation_schedule: give one, not both")
	}
	if in.RotationPeriod != nil {
		if *in.RotationPeriod <= 0 {
			return nil, nil, errors.New("rotation_period: must be a positive duration")
		}
		role.RotationPeriod, role.RotationSchedule, role.RotationWindow = *in.RotationPeriod, "", 0
	}
	if in.RotationSchedule != nil {
		role.RotationSchedule = strings.TrimSpace(*in.RotationSchedule)
		if role.RotationSchedule != "" {
			role.RotationPeriod = 0
		}
	}
	if in.RotationWindow != nil {
		role.RotationWindow = *in.RotationWindow
	}
	if in.AutoRotate != nil {
		role.AutoRotate = *in.AutoRotate
	}
	if in.VersionsKept != nil {
		role.VersionsKept = *in.VersionsKept
	}
	if in.PasswordPolicy != nil {
		if len(*in.PasswordPolicy) > maxPolicyNameLen {
			return nil, nil, fmt.Errorf("password_policy: longer than %d bytes", maxPolicyNameLen)
		}
		role.PasswordPolicy = *in.PasswordPolicy
	}
	if in.Consumers != nil {
		role.Consumers = *in.Consumers
	}
	if in.HealthChecks != nil {
		role.HealthChecks = *in.HealthChecks
	}
	if in.HealthTimeout != nil {
		if *in.HealthTimeout <= 0 {
			return nil, nil, errors.New("health_timeout: must be a positive duration")
		}
		role.HealthTimeout = *in.HealthTimeout
	}
	if in.RollbackOnFailure != nil {
		role.KeepFailedDeploy = !*in.RollbackOnFailure
	}
	if in.StrictConsumers != nil {
		role.StrictConsumers = *in.StrictConsumers
	}
	if in.Tags != nil {
		if err := validateTags(*in.Tags); err != nil {
			return nil, nil, err
		}
		role.Tags = *in.Tags
		if len(role.Tags) == 0 {
			role.Tags = nil
		}
	}
	if err := role.validateSchedule(); err != nil {
		return nil, nil, err
	}
	if err := role.validateDeploy(); err != nil {
		return nil, nil, err
	}

	for _, f := range kind.Fields() {
		if f.Kind == rotators.FieldSecret {
			// A write-only value is bounded before the kind parses it (ImportSecret).
			if raw, given := in.Secrets[f.Name]; given {
				if err := f.Check(raw); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		v, given := in.Settings[f.Name]
		switch {
		case given && isEmpty(v):
			role.Settings.Delete(f.Name)
		case given:
			if err := f.Check(v); err != nil {
				return nil, nil, err
			}
			if len(f.Allowed) > 0 && !contains(f.Allowed, fmt.Sprint(v)) {
				return nil, nil, fmt.Errorf("%s: %q is not one of %s", f.Name, v, strings.Join(f.Allowed, ", "))
			}
			role.Settings.Set(f, v)
		case existing == nil && f.Default != nil:
			role.Settings.Set(f, f.Default)
		}
	}
	if _, err := kind.Bind(role.Settings); err != nil {
		return nil, nil, err
	}
	if err := checkRoleSize(&role); err != nil {
		return nil, nil, err
	}
	return &role, kind, nil
}

// checkRoleSize refuses a role that would take more than MaxRoleBytes in storage. Each field is
// bounded on its own; this bounds their sum (and JSON's escapes), and names the largest field.
func checkRoleSize(role *Role) error {
	n := encodedSize(role)
	if n <= MaxRoleBytes {
		return nil
	}
	sizes := map[string]int{
		"rotation_schedule": encodedSize(role.RotationSchedule), "password_policy": encodedSize(role.PasswordPolicy),
		"consumers": encodedSize(role.Consumers), "health_checks": encodedSize(role.HealthChecks), FieldTags: encodedSize(role.Tags),
	}
	for k, v := range role.Settings.Public() {
		sizes[k] = encodedSize(v)
	}
	largest := ""
	for k, v := range sizes {
		if largest == "" || v > sizes[largest] || (v == sizes[largest] && k < largest) {
			largest = k
		}
	}
	return fmt.Errorf("%s: the role would take %d bytes in storage, more than the %d a role may take; this field takes %d", largest, n, MaxRoleBytes, sizes[largest])
}

func encodedSize(v interface{}) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0 // strings, lists and numbers always encode
	}
	return len(b)
}

// checkLinks validates role-reference fields: the referenced role exists, has the right type and
// is self-managed itself, so that links never chain or loop.
func (e *Engine) checkLinks(ctx context.Context, role *Role, kind rotators.Kind, created bool) error {
	for _, f := range kind.Fields() {
		ref := role.Settings.String(f.Name)
		if f.Kind != rotators.FieldRoleRef || ref == "" {
			continue
		}
		if ref == role.Name {
			return userError(fmt.Errorf("%s: a role cannot be its own %s", f.Name, f.Name))
		}
		linked, err := e.loadRole(ctx, ref)
		if err != nil {
			return err
		}
		if linked == nil {
			return userError(fmt.Errorf("%s: role %q does not exist", f.Name, ref))
		}
		if linked.Type != f.RefKind {
			return userError(fmt.Errorf("%s: role %q is of type %s, not %s", f.Name, ref, linked.Type, f.RefKind))
		}
		if refs := linkedNames(linked); len(refs) > 0 {
			return userError(fmt.Errorf("%s: role %q itself depends on %s; an %s must be self-managed", f.Name, ref, strings.Join(refs, ", "), f.Name))
		}
		if created {
			continue // nothing can depend on a role that did not exist
		}
		if deps, err := e.dependents(ctx, role.Name); err != nil {
			return err
		} else if len(deps) > 0 {
			return userError(fmt.Errorf("%s: roles %s depend on %q, which must therefore stay self-managed", f.Name, strings.Join(deps, ", "), role.Name))
		}
	}
	return nil
}

// verifyImport proves an imported value works at the target without changing anything.
func (e *Engine) verifyImport(ctx context.Context, role *Role, kind rotators.Kind, secret rotators.Secret) error {
	target, err := kind.Bind(role.Settings)
	if err != nil {
		return userError(err)
	}
	env, err := e.env(ctx, role, kind)
	if err != nil {
		return userError(err)
	}
	if err := target.Verify(ctx, env, secret); err != nil {
		msg := redacted(err.Error(), secret)
		if errors.Is(err, rotators.ErrRejected) {
			return userError(fmt.Errorf("the target rejects the supplied current value: %s", msg))
		}
		return userError(fmt.Errorf("cannot reach the target to check the supplied current value: %s", msg))
	}
	return nil
}

// RoleView is a role with its schedule and health, for a role read. It holds no secret.
type RoleView struct {
	Role                *Role
	CurrentVersion      int
	LastRotated         time.Time
	NextRotation        time.Time
	LastOutcome         string
	LastError           string
	ConsecutiveFailures int
	Failing             bool
	Pending             bool
	// DueAt is when the role's schedule says it should next rotate, even when auto_rotate is
	// off; Overdue is DueAt in the past.
	DueAt   time.Time
	Overdue bool
}

// ReadRole returns the role's view, or nil when it does not exist.
func (e *Engine) ReadRole(ctx context.Context, name string) (*RoleView, error) {
	role, err := e.loadRole(ctx, name)
	if err != nil || role == nil {
		return nil, err
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, err
	}
	return e.view(role, st), nil
}

// view derives a role's read view from its stored role and state.
func (e *Engine) view(role *Role, st *State) *RoleView {
	name := role.Name
	v := &RoleView{
		Role: role, LastRotated: st.LastRotated, NextRotation: role.NextRotation(st, e.now()),
		LastOutcome: st.LastOutcome, LastError: st.LastError, ConsecutiveFailures: st.ConsecutiveFailures,
		Failing: st.Failing, Pending: e.pending.has(name),
	}
	if cur := st.Current(); cur != nil {
		v.CurrentVersion = cur.Number
		v.DueAt = role.ScheduledAfter(st.LastRotated, e.now())
		v.Overdue = e.now().After(v.DueAt)
	}
	return v
}

// KeySet returns the published document of a role whose kind publishes public keys (jwt: the
// JWK Set of the current key and the retired ones still inside their verification window);
// ErrRoleNotFound for a missing role and for one whose kind publishes nothing alike. The path is
// unauthenticated, so the document is served from memory (keySetCache) and built from storage
// only on the first request after a write or after it expired. The document is shared: callers
// must not modify it.
func (e *Engine) KeySet(ctx context.Context, name string) ([]byte, error) {
	now := e.now()
	if doc, ok := e.keySets.get(name, now); ok {
		return doc, nil
	}
	token := e.keySets.begin(name)
	doc, expires, err := e.buildKeySet(ctx, name, now)
	if err != nil {
		return nil, err
	}
	e.keySets.put(token, name, doc, now, expires)
	return doc, nil
}

// buildKeySet reads the role, its kept versions and any staged value, and returns the document
// with the first time after now it would change by time alone (zero: never).
func (e *Engine) buildKeySet(ctx context.Context, name string, now time.Time) ([]byte, time.Time, error) {
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, time.Time{}, err
	}
	if role == nil {
		return nil, time.Time{}, ErrRoleNotFound
	}
	kind, err := role.Kind()
	if err != nil {
		return nil, time.Time{}, err
	}
	pub, ok := kind.(rotators.KeySetPublisher)
	if !ok {
		// The path is unauthenticated: a role that publishes nothing is answered like a missing
		// one, so that a stranger learns neither that it exists nor its type.
		return nil, time.Time{}, ErrRoleNotFound
	}
	values, err := e.publishedValues(ctx, name)
	if err != nil {
		return nil, time.Time{}, err
	}
	doc, err := pub.KeySet(role.Settings, values, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	return doc, pub.KeySetChanges(role.Settings, values, now), nil
}

// publishedValues are the role's kept values, newest first, each retired when the next newer one
// was created; while consumers restart on a staged value it comes first (they may already sign
// with it).
func (e *Engine) publishedValues(ctx context.Context, name string) ([]rotators.Published, error) {
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, err
	}
	versions := st.Versions
	if staged, err := e.staged(ctx, name); err != nil {
		return nil, err
	} else if staged != nil {
		versions = append([]Version{*staged}, versions...)
	}
	values := make([]rotators.Published, 0, len(versions))
	for i, v := range versions {
		p := rotators.Published{Secret: v.Secret, Created: v.Created}
		if i > 0 {
			p.Retired = versions[i-1].Created
		}
		values = append(values, p)
	}
	return values, nil
}

// ListRoles returns the role names.
func (e *Engine) ListRoles(ctx context.Context) ([]string, error) {
	names, err := e.storage.List(ctx, rolePrefix)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	return names, nil
}

// DeleteRole forgets a role and its kept values; the target is not touched. It refuses while a
// pending record might hold the live value, and while other roles depend on it.
func (e *Engine) DeleteRole(ctx context.Context, name string) error {
	if !e.writeSafe() {
		return logical.ErrReadOnly
	}
	unlock := e.locks.lock(name)
	defer unlock()
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return err
	}
	if role == nil {
		return nil
	}
	if p, err := e.loadPending(ctx, name); err != nil {
		return err
	} else if p != nil {
		return userError(errors.New("an unresolved rotation is pending: its value may be the live one, so the role is kept until recovery resolves it"))
	}
	deps, err := e.dependents(ctx, name)
	if err != nil {
		return err
	}
	if len(deps) > 0 {
		return userError(fmt.Errorf("roles %s use this role; delete or change them first", strings.Join(deps, ", ")))
	}
	return e.forgetLocked(ctx, name)
}

func (e *Engine) forgetLocked(ctx context.Context, name string) error {
	for _, prefix := range []string{rolePrefix, statePrefix} {
		if err := deleteKey(ctx, e.storage, prefix+name); err != nil {
			return err
		}
	}
	if err := deleteHistory(ctx, e.storage, name); err != nil {
		return err
	}
	e.histSeq.forget(name)
	e.queue.set(name, time.Time{})
	e.logger.Info("role deleted", "role", name)
	return nil
}

// dependents returns the roles that link to name (from the relations kept with the role index:
// no scan of the roles).
func (e *Engine) dependents(ctx context.Context, name string) ([]string, error) {
	if err := e.refreshRelations(ctx); err != nil {
		return nil, err
	}
	return e.relations.linking(name), nil
}

// linkedNames returns the roles a role links to through its role-reference fields.
func linkedNames(r *Role) []string {
	kind, ok := rotators.Lookup(r.Type)
	if !ok {
		return nil
	}
	var refs []string
	for _, f := range kind.Fields() {
		if ref := r.Settings.String(f.Name); f.Kind == rotators.FieldRoleRef && ref != "" {
			refs = append(refs, ref)
		}
	}
	return refs
}

// Creds returns kept version n of the role (0: the current one) and the kind's description of it.
func (e *Engine) Creds(ctx context.Context, name string, n int) (*Version, map[string]interface{}, *RoleView, error) {
	if err := checkVersionNumber(n); err != nil {
		return nil, nil, nil, err
	}
	if !e.writable(ctx) {
		return nil, nil, nil, ErrNotWritable
	}
	if n == 0 {
		// Between apply and promote, and while an outcome is unknown, the stored current value
		// may already be dead at the target: wait (bounded) for the outcome rather than hand it
		// out, and hand out nothing while it is still unknown.
		if !e.windows.wait(ctx, name, e.credsWait) {
			return nil, nil, nil, ErrOutcomePending
		}
	}
	role, st, err := e.loadRoleAndState(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	view := e.view(role, st)
	v := st.Current()
	if n != 0 {
		v = st.Version(n)
	} else if staged, err := e.staged(ctx, name); err != nil {
		return nil, nil, nil, err
	} else if staged != nil {
		v = staged
	}
	if v == nil {
		if n != 0 {
			return nil, nil, nil, userError(fmt.Errorf("version: %d is not a kept version", n))
		}
		return nil, nil, nil, userError(errors.New("the role has no value yet"))
	}
	kind, err := view.Role.Kind()
	if err != nil {
		return nil, nil, nil, err
	}
	return v, kind.Describe(view.Role.Settings, v.Secret), view, nil
}

// staged returns the value being deployed: while the consumers restart, creds hands out the
// new value (it is live at the target and verified) so that they start with it.
func (e *Engine) staged(ctx context.Context, name string) (*Version, error) {
	if !e.pending.has(name) {
		return nil, nil
	}
	p, err := e.loadPending(ctx, name)
	if err != nil || p == nil || !p.staging() {
		return nil, err
	}
	return &Version{Number: p.NewVersion, Created: p.Started, Trigger: p.Trigger, Secret: p.New}, nil
}

// checkVersionNumber refuses a negative version (0 means the current one).
func checkVersionNumber(n int) error {
	if n < 0 {
		return userError(errors.New("version: must not be negative (0 is the current version)"))
	}
	return nil
}

// VersionInfo is a kept version without its value.
type VersionInfo struct {
	Number  int       `json:"version"`
	Created time.Time `json:"created"`
	Trigger Trigger   `json:"trigger"`
	Status  string    `json:"status"`
}

// Versions lists the kept versions, newest first, without values.
func (e *Engine) Versions(ctx context.Context, name string) ([]VersionInfo, error) {
	_, st, err := e.loadRoleAndState(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]VersionInfo, 0, len(st.Versions))
	for i, v := range st.Versions {
		status := VersionPrevious
		if i == 0 {
			status = VersionActive
		}
		out = append(out, VersionInfo{Number: v.Number, Created: v.Created, Trigger: v.Trigger, Status: status})
	}
	return out, nil
}

// secretFields names the write-only fields a write supplied, for an error about their value.
func secretFields(kind rotators.Kind, supplied map[string]string) string {
	var names []string
	for _, f := range kind.Fields() {
		if _, ok := supplied[f.Name]; ok && f.Kind == rotators.FieldSecret {
			names = append(names, f.Name)
		}
	}
	return strings.Join(names, ", ")
}

func cloneSettings(s rotators.Settings) rotators.Settings {
	var c rotators.Settings
	for k, v := range s.Strings {
		c.Set(rotators.Field{Name: k, Kind: rotators.FieldString}, v)
	}
	for k, v := range s.Lists {
		c.Set(rotators.Field{Name: k, Kind: rotators.FieldList}, append([]string(nil), v...))
	}
	for k, v := range s.Ints {
		c.Set(rotators.Field{Name: k, Kind: rotators.FieldInt}, v)
	}
	for k, v := range s.Bools {
		c.Set(rotators.Field{Name: k, Kind: rotators.FieldBool}, v)
	}
	return c
}

func isEmpty(v interface{}) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []string:
		return len(x) == 0
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
