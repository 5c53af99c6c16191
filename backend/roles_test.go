package backend

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
	// The real postgres kind, for type checks that fail before any I/O.
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/postgres"
)

func TestValidateRoleName(t *testing.T) {
	for _, ok := range []string{"a", "app-db", "A.b_c-1", "9lives", strings.Repeat("x", maxRoleNameLen)} {
		if err := ValidateRoleName(ok); err != nil {
			t.Errorf("ValidateRoleName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", "a..b", strings.Repeat("x", maxRoleNameLen+1), "-a", ".hidden", "a b", "a\x00", "é"} {
		err := ValidateRoleName(bad)
		if err == nil || !strings.HasPrefix(err.Error(), "name:") {
			t.Errorf("ValidateRoleName(%q) = %v, want an error naming the field", bad, err)
		}
	}
}

func TestWriteRoleRejectsBadNames(t *testing.T) {
	te := newEnv(t)
	_, target := newFault(t, nil)
	for _, bad := range []string{"", "a/b", "..", "a..b", strings.Repeat("n", 129)} {
		_, err := te.e.WriteRole(context.Background(), bad, faultRole(target))
		wantUserError(t, err, "name:")
	}
	if names, _ := te.e.ListRoles(context.Background()); len(names) != 0 {
		t.Fatalf("roles stored after rejected writes: %v", names)
	}
}

func TestWriteRoleImportKeepsTargetUntouched(t *testing.T) {
	te := newEnv(t)
	ft := te.importRole(t, "imp", "current-pw-1")

	if n := ft.Applies(); n != 0 {
		t.Fatalf("import changed the target: %d Apply calls", n)
	}
	if got := ft.Live(); !got.Equal(secretOf("current-pw-1")) {
		t.Fatalf("target value changed to %v", got)
	}
	st := te.state(t, "imp")
	if len(st.Versions) != 1 || st.Versions[0].Number != 1 || st.Versions[0].Trigger != TriggerImport {
		t.Fatalf("versions = %+v, want one version 1 from import", st.Versions)
	}
	if !st.Versions[0].Secret.Equal(secretOf("current-pw-1")) {
		t.Fatalf("version 1 = %v", st.Versions[0].Secret)
	}
	if !st.LastRotated.Equal(t0) {
		t.Fatalf("LastRotated = %v, want %v", st.LastRotated, t0)
	}
	if got := te.e.queue.queued("imp"); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("queued at %v, want %v", got, t0.Add(time.Hour))
	}
	if h := te.history(t, "imp"); len(h) != 0 {
		t.Fatalf("an import is not a rotation, history = %+v", h)
	}
}

func TestWriteRoleImportRejectedByTarget(t *testing.T) {
	te := newEnv(t)
	_, target := newFault(t, secretOf("the-real-one"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "wrong-guess-123"
	_, err := te.e.WriteRole(context.Background(), "imp", in)
	wantUserError(t, err, "rejects the supplied current value")
	if strings.Contains(err.Error(), "wrong-guess-123") {
		t.Fatalf("error leaks the supplied value: %v", err)
	}
	if v, _ := te.e.ReadRole(context.Background(), "imp"); v != nil {
		t.Fatal("a role was stored although its value was rejected")
	}
}

func TestWriteRoleImportTargetUnreachable(t *testing.T) {
	te := newEnv(t)
	ft, target := newFault(t, secretOf("pw-unreach"))
	ft.SetDown(true)
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-unreach"
	_, err := te.e.WriteRole(context.Background(), "imp", in)
	wantUserError(t, err, "cannot reach the target")
	if strings.Contains(err.Error(), "pw-unreach") {
		t.Fatalf("error leaks the supplied value: %v", err)
	}
}

func TestWriteRoleCreateWithoutValueRotatesAtOnce(t *testing.T) {
	te := newEnv(t)
	ft, target := newFault(t, nil)
	res, err := te.e.WriteRole(context.Background(), "gen", faultRole(target))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Imported || res.Rotation == nil {
		t.Fatalf("result = %+v, want created with a rotation", res)
	}
	out := res.Rotation
	if !out.Success || out.Trigger != TriggerCreate || out.NewVersion != 1 || out.OldVersion != 0 {
		t.Fatalf("outcome = %+v, want success version 1 from create", out)
	}
	st := te.state(t, "gen")
	if len(st.Versions) != 1 || st.Versions[0].Number != 1 || st.Versions[0].Trigger != TriggerCreate {
		t.Fatalf("versions = %+v", st.Versions)
	}
	if !ft.Live().Equal(st.Versions[0].Secret) {
		t.Fatalf("target holds %v, Vault holds %v", ft.Live(), st.Versions[0].Secret)
	}
	if got := te.e.queue.queued("gen"); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("queued at %v, want %v", got, t0.Add(time.Hour))
	}
	if h := te.history(t, "gen"); len(h) != 1 || h[0].Trigger != TriggerCreate || h[0].Outcome != OutcomeSuccess {
		t.Fatalf("history = %+v", h)
	}
}

func TestWriteRoleFailingFirstRotationLeavesNoRole(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(*faultTarget)
	}{
		{"apply fails", func(ft *faultTarget) { ft.ScriptApply(applyFailBefore) }},
		{"generate fails", func(ft *faultTarget) { ft.SetGenerateError(errTest) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			ft, target := newFault(t, nil)
			tc.script(ft)
			res, err := te.e.WriteRole(context.Background(), "gen", faultRole(target))
			wantUserError(t, err, "the role was not created")
			if res != nil {
				t.Fatalf("result = %+v, want nil", res)
			}
			ctx := context.Background()
			if v, _ := te.e.ReadRole(ctx, "gen"); v != nil {
				t.Fatal("role left behind")
			}
			for _, prefix := range []string{rolePrefix, statePrefix, pendingPrefix, historyPrefix} {
				if e, _ := te.storage.Get(ctx, prefix+"gen"); e != nil {
					t.Errorf("%s left behind", prefix+"gen")
				}
			}
			if te.e.pending.has("gen") || !te.e.queue.queued("gen").IsZero() {
				t.Fatal("in-memory schedule or pending set still knows the role")
			}
			// The name is free again.
			ft.SetGenerateError(nil)
			if _, err := te.e.WriteRole(ctx, "gen", faultRole(target)); err != nil {
				t.Fatalf("create after a failed create: %v", err)
			}
		})
	}
}

func TestWriteRoleNeedsImport(t *testing.T) {
	te := newEnv(t)
	_, target := newFault(t, nil)
	in := faultRole(target)
	in.Settings[fFaultNeedsValue] = true
	_, err := te.e.WriteRole(context.Background(), "x", in)
	wantUserError(t, err, "value: required")
}

func TestWriteRoleValidation(t *testing.T) {
	te := newEnv(t)
	_, target := newFault(t, secretOf("pw-valid"))
	base := func() RoleInput {
		in := faultRole(target)
		in.Secrets[fFaultValue] = "pw-valid"
		return in
	}
	cases := []struct {
		name    string
		mod     func(*RoleInput)
		mention string
	}{
		{"no type", func(in *RoleInput) { in.Type = "" }, "type: required"},
		{"unknown type", func(in *RoleInput) { in.Type = "nope" }, `type: "nope" is not one of`},
		{"period and schedule", func(in *RoleInput) { in.RotationSchedule = ptr("0 0 1 * *") }, "rotation_period and rotation_schedule"},
		{"neither", func(in *RoleInput) { in.RotationPeriod = nil }, "rotation_period or rotation_schedule"},
		{"empty schedule only", func(in *RoleInput) { in.RotationPeriod = nil; in.RotationSchedule = ptr("") }, "rotation_period or rotation_schedule"},
		{"invalid cron", func(in *RoleInput) { in.RotationPeriod = nil; in.RotationSchedule = ptr("61 0 * * *") }, "rotation_schedule:"},
		{"six-field cron", func(in *RoleInput) { in.RotationPeriod = nil; in.RotationSchedule = ptr("0 0 0 1 * *") }, "rotation_schedule:"},
		{"descriptor cron", func(in *RoleInput) { in.RotationPeriod = nil; in.RotationSchedule = ptr("@daily") }, "rotation_schedule:"},
		{"zero period", func(in *RoleInput) { in.RotationPeriod = ptr(time.Duration(0)) }, "rotation_period:"},
		{"negative period", func(in *RoleInput) { in.RotationPeriod = ptr(-time.Hour) }, "rotation_period:"},
		{"too short period", func(in *RoleInput) { in.RotationPeriod = ptr(time.Second) }, "rotation_period:"},
		{"window without schedule", func(in *RoleInput) { in.RotationWindow = ptr(time.Hour) }, "rotation_window:"},
		{"negative window", func(in *RoleInput) {
			in.RotationPeriod = nil
			in.RotationSchedule = ptr("0 0 1 * *")
			in.RotationWindow = ptr(-time.Hour)
		}, "rotation_window:"},
		{"versions_kept 1", func(in *RoleInput) { in.VersionsKept = ptr(1) }, "versions_kept:"},
		{"versions_kept 0", func(in *RoleInput) { in.VersionsKept = ptr(0) }, "versions_kept:"},
		{"versions_kept 101", func(in *RoleInput) { in.VersionsKept = ptr(MaxVersionsKept + 1) }, "versions_kept:"},
		{"not an allowed value", func(in *RoleInput) { in.Settings[fFaultMode] = "lax" }, "mode:"},
		{"kind rejects settings", func(in *RoleInput) { in.Settings[fFaultTarget] = "no-such-target" }, "target:"},
		{"empty import", func(in *RoleInput) { in.Secrets[fFaultValue] = "" }, "value: empty"},
		{"unknown password policy", func(in *RoleInput) { in.PasswordPolicy = ptr("nope") }, "password_policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mod(&in)
			_, err := te.e.WriteRole(context.Background(), "v", in)
			wantUserError(t, err, tc.mention)
			if v, _ := te.e.ReadRole(context.Background(), "v"); v != nil {
				t.Fatal("an invalid role was stored")
			}
		})
	}
	// The same base input is valid: the cases fail for their own reason.
	if _, err := te.e.WriteRole(context.Background(), "v", base()); err != nil {
		t.Fatalf("base input: %v", err)
	}
}

func TestWriteRoleUpdate(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "u", "pw-update-1", func(in *RoleInput) {
		in.Settings[fFaultTags] = []string{"a", "b"}
		in.Settings[fFaultSize] = 7
		in.Settings[fFaultGrace] = 30
	})

	// A type change is refused and names the field.
	_, err := te.e.WriteRole(ctx, "u", RoleInput{Type: "postgres"})
	wantUserError(t, err, "type: cannot change")

	// Defaults were applied at create.
	v, _ := te.e.ReadRole(ctx, "u")
	if v.Role.Settings.String(fFaultMode) != "normal" || !v.Role.AutoRotate || v.Role.VersionsKept != DefaultVersionsKept {
		t.Fatalf("defaults not applied: %+v", v.Role)
	}
	if got := v.Role.Settings.Duration(fFaultGrace); got != 30*time.Second {
		t.Fatalf("grace = %v", got)
	}

	// An update changes only the given fields; an empty value clears a field; the secret is
	// never stored in settings.
	_, err = te.e.WriteRole(ctx, "u", RoleInput{
		RotationSchedule: ptr("0 0 1 * *"),
		RotationWindow:   ptr(2 * time.Hour),
		Settings:         map[string]interface{}{fFaultTags: []string{}, fFaultMode: "strict"},
	})
	if err != nil {
		t.Fatal(err)
	}
	v, _ = te.e.ReadRole(ctx, "u")
	r := v.Role
	if r.RotationPeriod != 0 || r.RotationSchedule != "0 0 1 * *" || r.RotationWindow != 2*time.Hour {
		t.Fatalf("schedule not switched: %+v", r)
	}
	if r.Settings.Has(fFaultTags) || r.Settings.String(fFaultMode) != "strict" || r.Settings.Int(fFaultSize) != 7 {
		t.Fatalf("settings = %+v", r.Settings)
	}
	if r.Settings.Has(fFaultValue) {
		t.Fatal("write-only value stored in settings")
	}
	if v.CurrentVersion != 1 {
		t.Fatalf("an update without a value changed the version: %d", v.CurrentVersion)
	}
	// Back to a period clears the schedule and its window.
	if _, err := te.e.WriteRole(ctx, "u", RoleInput{RotationPeriod: ptr(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	v, _ = te.e.ReadRole(ctx, "u")
	if v.Role.RotationPeriod != 48*time.Hour || v.Role.RotationSchedule != "" || v.Role.RotationWindow != 0 {
		t.Fatalf("schedule not switched back: %+v", v.Role)
	}
	if got := te.e.queue.queued("u"); !got.Equal(t0.Add(48 * time.Hour)) {
		t.Fatalf("update did not reschedule: %v", got)
	}
}

func TestWriteRoleImportOnUpdateAddsVersion(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "u", "pw-1111")
	ft.SetLive(secretOf("pw-2222")) // changed out of band; the operator imports it
	_, err := te.e.WriteRole(ctx, "u", RoleInput{Secrets: map[string]string{fFaultValue: "pw-2222"}})
	if err != nil {
		t.Fatal(err)
	}
	st := te.state(t, "u")
	if len(st.Versions) != 2 || st.Versions[0].Number != 2 || !st.Versions[0].Secret.Equal(secretOf("pw-2222")) {
		t.Fatalf("versions = %+v", st.Versions)
	}
	// Refused while a pending record exists: its value may be the live one.
	te.putPending(t, "u", &Pending{Old: secretOf("pw-2222"), New: secretOf("pw-3333"), OldVersion: 2, NewVersion: 3})
	_, err = te.e.WriteRole(ctx, "u", RoleInput{Secrets: map[string]string{fFaultValue: "pw-2222"}})
	wantUserError(t, err, "pending")
}

func TestWriteRoleTrimsVersionsKept(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "k", "pw-trim-0")
	for i := 0; i < 4; i++ {
		if out, err := te.e.Rotate(ctx, "k"); err != nil || !out.Success {
			t.Fatalf("rotate: %v %+v", err, out)
		}
	}
	if _, err := te.e.WriteRole(ctx, "k", RoleInput{VersionsKept: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	st := te.state(t, "k")
	if len(st.Versions) != 2 || st.Versions[0].Number != 5 || st.Versions[1].Number != 4 {
		t.Fatalf("versions after versions_kept=2: %+v", st.Versions)
	}
}

func TestWriteRoleAdminRole(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "admin", "pw-admin")
	withAdmin := func(ref string) func(*RoleInput) {
		return func(in *RoleInput) { in.Settings[fFaultAdmin] = ref }
	}

	// Valid link: the rotator gets the admin's current credential.
	ft := te.importRole(t, "app", "pw-app", withAdmin("admin"))
	if out, err := te.e.Rotate(ctx, "app"); err != nil || !out.Success {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	linked := ft.LastLinked()[fFaultAdmin]
	if linked.Name != "admin" || !linked.Current.Equal(secretOf("pw-admin")) {
		t.Fatalf("rotator got linked %+v", linked)
	}

	_, other := newFault(t, secretOf("pw-x"))
	try := func(name, ref string) error {
		in := faultRole(other)
		in.Secrets[fFaultValue] = "pw-x"
		in.Settings[fFaultAdmin] = ref
		_, err := te.e.WriteRole(ctx, name, in)
		return err
	}
	wantUserError(t, try("x1", "missing"), `admin_role: role "missing" does not exist`)
	wantUserError(t, try("x2", "x2"), "admin_role: a role cannot be its own")
	wantUserError(t, try("x3", "app"), `admin_role: role "app" itself depends on admin`)

	// A role of another type: store a postgres role directly (creating one needs a database).
	if err := putJSON(ctx, te.storage, rolePrefix+"pg", &Role{Name: "pg", Type: "postgres"}); err != nil {
		t.Fatal(err)
	}
	wantUserError(t, try("x4", "pg"), `admin_role: role "pg" is of type postgres, not fault-test`)
	// The same checks guard the real postgres kind, before any I/O.
	pg := func(name, ref string) error {
		_, err := te.e.WriteRole(ctx, name, RoleInput{
			Type: "postgres", RotationPeriod: ptr(time.Hour),
			Settings: map[string]interface{}{
				"connection_url": "postgres://{{username}}:{{password}}@127.0.0.1:1/db", "username": "u", "admin_role": ref,
			},
		})
		return err
	}
	wantUserError(t, pg("pgapp", "admin"), `admin_role: role "admin" is of type fault-test, not postgres`)
	wantUserError(t, pg("pgapp", "nobody"), `admin_role: role "nobody" does not exist`)
	wantUserError(t, pg("pgapp", "pgapp"), "admin_role: a role cannot be its own")
	if err := te.storage.Delete(ctx, rolePrefix+"pg"); err != nil {
		t.Fatal(err)
	}

	// A role others depend on cannot itself get an admin_role (links never chain).
	te.importRole(t, "other", "pw-other")
	_, err := te.e.WriteRole(ctx, "admin", RoleInput{Settings: map[string]interface{}{fFaultAdmin: "other"}})
	wantUserError(t, err, `roles app depend on "admin", which must therefore stay self-managed`)

	// Nor be deleted while they do.
	wantUserError(t, te.e.DeleteRole(ctx, "admin"), "use this role")
	if err := te.e.DeleteRole(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := te.e.DeleteRole(ctx, "admin"); err != nil {
		t.Fatalf("delete after its dependent is gone: %v", err)
	}
}

func TestDeleteRole(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "d", "pw-delete")
	if out, _ := te.e.Rotate(ctx, "d"); !out.Success {
		t.Fatal("rotate failed")
	}
	te.putPending(t, "d", &Pending{Old: secretOf("a"), New: secretOf("b"), OldVersion: 2, NewVersion: 3})
	wantUserError(t, te.e.DeleteRole(ctx, "d"), "pending")
	if err := te.storage.Delete(ctx, pendingPrefix+"d"); err != nil {
		t.Fatal(err)
	}
	if err := te.e.DeleteRole(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{rolePrefix, statePrefix, historyPrefix} {
		if e, _ := te.storage.Get(ctx, prefix+"d"); e != nil {
			t.Errorf("%s kept after delete", prefix)
		}
	}
	if !te.e.queue.queued("d").IsZero() {
		t.Fatal("deleted role still scheduled")
	}
	if err := te.e.DeleteRole(ctx, "d"); err != nil {
		t.Fatalf("deleting a missing role: %v", err)
	}
}

func TestReadRoleListCredsVersions(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "b", "pw-b-1")
	te.importRole(t, "a", "pw-a-1")
	names, err := te.e.ListRoles(ctx)
	sort.Strings(names)
	if err != nil || strings.Join(names, ",") != "a,b" {
		t.Fatalf("ListRoles = %v, %v", names, err)
	}
	if v, err := te.e.ReadRole(ctx, "missing"); v != nil || err != nil {
		t.Fatalf("ReadRole(missing) = %v, %v", v, err)
	}
	te.clock.Advance(time.Minute)
	if out, _ := te.e.Rotate(ctx, "a"); !out.Success {
		t.Fatal("rotate failed")
	}

	v, desc, view, err := te.e.Creds(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Number != 2 || view.CurrentVersion != 2 || desc["dsn"] != "fake://"+faultUser+":"+v.Secret["password"] {
		t.Fatalf("creds = %+v %v %+v", v, desc, view)
	}
	if !view.NextRotation.Equal(t0.Add(time.Minute + time.Hour)) {
		t.Fatalf("next rotation = %v", view.NextRotation)
	}
	old, _, _, err := te.e.Creds(ctx, "a", 1)
	if err != nil || old.Secret["password"] != "pw-a-1" {
		t.Fatalf("creds version 1 = %+v, %v", old, err)
	}
	_, _, _, err = te.e.Creds(ctx, "a", 9)
	wantUserError(t, err, "version: 9")
	if _, _, _, err := te.e.Creds(ctx, "missing", 0); err != ErrRoleNotFound {
		t.Fatalf("Creds(missing) err = %v", err)
	}

	vs, err := te.e.Versions(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Number != 2 || vs[0].Status != VersionActive || vs[1].Number != 1 || vs[1].Status != VersionPrevious {
		t.Fatalf("versions = %+v", vs)
	}
	if _, err := te.e.Versions(ctx, "missing"); err != ErrRoleNotFound {
		t.Fatalf("Versions(missing) err = %v", err)
	}
}

func TestPasswordPolicy(t *testing.T) {
	te := newEnv(t, func(s *logical.StaticSystemView) {
		s.SetPasswordPolicy("fixed", func() (string, error) { return "from-the-policy-123", nil })
	})
	ctx := context.Background()
	te.importRole(t, "p", "pw-before", func(in *RoleInput) { in.PasswordPolicy = ptr("fixed") })
	out, err := te.e.Rotate(ctx, "p")
	if err != nil || !out.Success {
		t.Fatalf("rotate: %v %+v", err, out)
	}
	if cur := te.state(t, "p").Current(); cur.Secret["password"] != "from-the-policy-123" {
		t.Fatalf("password not from the policy: %v", cur.Secret)
	}
	// Without a policy: crypto/rand text, different every time.
	te.importRole(t, "r", "pw-before")
	te.e.Rotate(ctx, "r")
	p1 := te.state(t, "r").Current().Secret["password"]
	te.e.Rotate(ctx, "r")
	p2 := te.state(t, "r").Current().Secret["password"]
	if len(p1) < 20 || p1 == p2 || p1 == "pw-before" {
		t.Fatalf("generated passwords %q, %q", p1, p2)
	}
}

func TestSettingsDecodedIntoTypedMaps(t *testing.T) {
	// What the engine stores decodes back into the typed maps (no assertions on stored data).
	te := newEnv(t)
	te.importRole(t, "s", "pw-settings", func(in *RoleInput) {
		in.Settings[fFaultTags] = []string{"x"}
		in.Settings[fFaultSize] = int64(3)
		in.Settings[fFaultNeedsValue] = false
	})
	r, err := te.e.loadRole(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	got := r.Settings
	if got.String(fFaultMode) != "normal" || got.Int(fFaultSize) != 3 || len(got.List(fFaultTags)) != 1 ||
		got.List(fFaultTags)[0] != "x" || !got.Has(fFaultNeedsValue) || got.Bool(fFaultNeedsValue) {
		t.Fatalf("settings = %+v", got)
	}
	if got.Has(fFaultValue) || got.Has(fFaultGrace) {
		t.Fatalf("unexpected fields: %+v", got)
	}
	var _ rotators.Settings = got
}

// A first rotation whose new value the target acknowledged but that does not verify keeps the
// value as the current one: it is live at the target and there is no other (a typo in
// connection_url must not leave a login with a password nobody has).
func TestWriteRoleFirstValueThatDoesNotVerifyIsKept(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft, target := newFault(t, nil)
	ft.ScriptVerify(verifyReject)
	_, err := te.e.WriteRole(ctx, "gen", faultRole(target))
	wantUserError(t, err, "which is kept as the current value")
	if p := te.pendingRec(t, "gen"); p != nil {
		t.Fatalf("pending = %+v; the acknowledged value belongs in the state", p)
	}
	v, _ := te.e.ReadRole(ctx, "gen")
	if v == nil || v.Pending || v.CurrentVersion != 1 || v.LastOutcome != OutcomeFailed {
		t.Fatalf("role view = %+v", v)
	}
	if st := te.state(t, "gen"); !ft.Live().Equal(st.Current().Secret) {
		t.Fatalf("state = %+v, live %v", st, ft.Live())
	}
	// The operator fixes the role and rotates from the kept value.
	out, err := te.e.Rotate(ctx, "gen")
	if err != nil || !out.Success {
		t.Fatalf("rotate after the fix: %+v %v", out, err)
	}
	if st := te.state(t, "gen"); !ft.Live().Equal(st.Current().Secret) || len(st.Versions) != 2 {
		t.Fatalf("state = %+v, live %v", st, ft.Live())
	}
}

// A first rotation whose answer was lost keeps the role and its pending record: the value may be
// the only live one.
func TestWriteRoleFirstRotationUnknownKeepsRole(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft, target := newFault(t, nil)
	ft.SetSettleTime(time.Minute) // no background recovery before the test asks for one
	ft.ScriptApply(applyFailAfter)
	_, err := te.e.WriteRole(ctx, "gen", faultRole(target))
	wantUserError(t, err, "kept with that value pending")
	p := te.pendingRec(t, "gen")
	if p == nil || !p.New.Equal(ft.Live()) || p.Phase != PhaseApplying {
		t.Fatalf("pending = %+v, want the value the target may hold", p)
	}
	if r, _ := te.e.loadRole(ctx, "gen"); r == nil {
		t.Fatal("the role was deleted although its first value may be live")
	}
	te.clock.Advance(2 * time.Minute)
	te.e.recoverRole(ctx, "gen")
	if st := te.state(t, "gen"); st.Current() == nil || !st.Current().Secret.Equal(ft.Live()) {
		t.Fatalf("recovery did not promote the live first value: %+v", st)
	}
}

// While a rotation is unresolved, the target it is resolved against cannot move, unless
// recovery has parked the role.
func TestWriteRoleSettingsFrozenWhilePending(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "p", "pw-frozen")
	te.putPending(t, "p", &Pending{Old: secretOf("pw-frozen"), New: secretOf("pw-next"), OldVersion: 1, NewVersion: 2, Phase: PhaseApplying})
	in := RoleInput{Settings: map[string]interface{}{fFaultTags: []string{"moved"}}}
	_, err := te.e.WriteRole(ctx, "p", in)
	wantUserError(t, err, "unresolved")
	if r, _ := te.e.loadRole(ctx, "p"); len(r.Settings.List(fFaultTags)) != 0 {
		t.Fatal("the refused write was stored")
	}
	// A schedule change is fine.
	if _, err := te.e.WriteRole(ctx, "p", RoleInput{RotationPeriod: ptr(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Parked by the schedule only (failed rotations): still frozen, recovery has not given up.
	st := te.state(t, "p")
	st.Failing = true
	if err := putJSON(ctx, te.storage, statePrefix+"p", st); err != nil {
		t.Fatal(err)
	}
	_, err = te.e.WriteRole(ctx, "p", in)
	wantUserError(t, err, "unresolved")
	// Parked by recovery (max_failures attempts): the operator may repoint the role.
	p := te.pendingRec(t, "p")
	p.Attempts = te.e.Config().MaxFailures
	te.putPending(t, "p", p)
	if _, err := te.e.WriteRole(ctx, "p", in); err != nil {
		t.Fatal(err)
	}
}
