package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// TestGrantRefusalStoresNothing: a dependent whose admin does not grant its account is refused
// with the kind's error naming the field, nothing is stored and the target is not touched; a
// granted one is written.
func TestGrantRefusalStoresNothing(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "admin", "pw-admin", func(in *RoleInput) { in.Settings[fFaultGrants] = []string{"team-a"} })

	ft, target := newFault(t, secretOf("pw-x"))
	in := faultRole(target)
	in.Settings[fFaultAdmin] = "admin"
	in.Settings[fFaultAccount] = "team-b"
	_, err := te.e.WriteRole(ctx, "dep", in)
	wantUserError(t, err, `account: not granted by "admin"`)
	if strings.Contains(err.Error(), "pw-admin") {
		t.Fatalf("the grant error quotes the admin's value: %v", err)
	}
	if v, err := te.e.ReadRole(ctx, "dep"); err != nil || v != nil {
		t.Fatalf("a refused role was stored: %+v %v", v, err)
	}
	if ft.Applies() != 0 {
		t.Fatal("a refused role reached its target")
	}

	// The target cannot be asked: no answer either way, so not a 400, and nothing stored.
	in.Settings[fFaultAccount] = "unreachable"
	_, err = te.e.WriteRole(ctx, "dep", in)
	if !errors.Is(err, ErrTargetUnavailable) || IsUserError(err) || strings.Contains(err.Error(), "pw-admin") {
		t.Fatalf("an unreachable grant check = %v, want ErrTargetUnavailable without the admin's value", err)
	}
	if v, _ := te.e.ReadRole(ctx, "dep"); v != nil {
		t.Fatal("a role whose grant could not be checked was stored")
	}

	in.Settings[fFaultAccount] = "team-a"
	if _, err := te.e.WriteRole(ctx, "dep", in); err != nil {
		t.Fatalf("a granted role: %v", err)
	}
	// An update that changes no kind setting does not ask again (the target may be down).
	before := grantChecks.Load()
	if _, err := te.e.WriteRole(ctx, "dep", RoleInput{AutoRotate: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if grantChecks.Load() != before {
		t.Fatal("an update of common fields ran the grant check")
	}
	// An update that moves the role to another account is checked again.
	_, err = te.e.WriteRole(ctx, "dep", RoleInput{Settings: map[string]interface{}{fFaultAccount: "team-b"}})
	wantUserError(t, err, "account: not granted")
	if v, _ := te.e.ReadRole(ctx, "dep"); v.Role.Settings.String(fFaultAccount) != "team-a" {
		t.Fatalf("a refused update was stored: %+v", v.Role.Settings)
	}
}

// TestOneAccountOneRole: a second role for an account another role manages is refused, on
// create and on update, and concurrent writes of one account store it once.
func TestOneAccountOneRole(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	claim := func(a string) func(*RoleInput) { return func(in *RoleInput) { in.Settings[fFaultAccount] = a } }
	te.importRole(t, "first", "pw-1", claim("shared"))

	_, target := newFault(t, secretOf("pw-2"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-2"
	in.Settings[fFaultAccount] = "shared"
	checks := grantChecks.Load()
	_, err := te.e.WriteRole(ctx, "second", in)
	wantUserError(t, err, `account: account shared is already managed by role "first"; one login, one role`)
	if grantChecks.Load() != checks {
		t.Fatal("a write refused by the claims was still sent to the target's grant check")
	}

	te.importRole(t, "third", "pw-3", claim("other"))
	_, err = te.e.WriteRole(ctx, "third", RoleInput{Settings: map[string]interface{}{fFaultAccount: "shared"}})
	wantUserError(t, err, `already managed by role "first"`)
	// Rewriting a role with its own account is no clash.
	if _, err := te.e.WriteRole(ctx, "first", RoleInput{Settings: map[string]interface{}{fFaultAccount: "shared", fFaultTags: []string{"x"}}}); err != nil {
		t.Fatalf("rewriting the holder: %v", err)
	}
	// Deleting the holder frees the account.
	if err := te.e.DeleteRole(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := te.e.WriteRole(ctx, "second", in); err != nil {
		t.Fatalf("after the holder was deleted: %v", err)
	}

	// Racing creates of one account: exactly one is stored.
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		_, tg := newFault(t, secretOf("pw-r"))
		r := faultRole(tg)
		r.Secrets[fFaultValue] = "pw-r"
		r.Settings[fFaultAccount] = "raced"
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = te.e.WriteRole(ctx, "racer-"+string(rune('a'+i)), r)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !IsUserError(err) {
			t.Fatalf("a racing write failed with %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d racing writes of one account were stored, want 1", ok)
	}
}

// TestRelocationIsProven: a write that changes where values are sent proves the current value
// there first; refused, nothing is stored.
func TestRelocationIsProven(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "app", "pw-app", func(in *RoleInput) { in.Settings[fFaultLocation] = "here" })

	ft.ScriptVerify(verifyReject)
	_, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultLocation: "elsewhere"}})
	wantUserError(t, err, "the role's value does not work at the new location, so the write was not stored")
	if strings.Contains(err.Error(), "pw-app") {
		t.Fatalf("the error quotes the value: %v", err)
	}
	if v, _ := te.e.ReadRole(ctx, "app"); v.Role.Settings.String(fFaultLocation) != "here" {
		t.Fatalf("a refused move was stored: %+v", v.Role.Settings)
	}
	if _, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultLocation: "elsewhere"}}); err != nil {
		t.Fatalf("a move where the value works: %v", err)
	}
	if ft.Applies() != 0 {
		t.Fatal("proving a move changed the target")
	}
}

// TestParkedRelocationIsProven: with a parked record (recovery gave up) the operator may move
// the role, but only where one of the record's values works: recovery will send both there.
func TestParkedRelocationIsProven(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "app", "pw-app", func(in *RoleInput) { in.Settings[fFaultLocation] = "here" })
	te.putPending(t, "app", &Pending{Old: secretOf("pw-app"), New: secretOf("pw-new"), Phase: PhaseApplying, Attempts: te.e.Config().MaxFailures})

	ft.ScriptVerify(verifyReject, verifyReject)
	_, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultLocation: "elsewhere"}})
	wantUserError(t, err, "does not work at the new location")
	if v, _ := te.e.ReadRole(ctx, "app"); v.Role.Settings.String(fFaultLocation) != "here" {
		t.Fatal("a parked role moved where neither of its values works")
	}

	ft.ScriptVerify(verifyReject, verifyNormal) // the new value is not there, the old one is
	if _, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultLocation: "elsewhere"}}); err != nil {
		t.Fatalf("a parked role moved where its old value works: %v", err)
	}
}

// TestClaimsFollowTheAdmin: a dependent's claim follows its admin as the index holds it now; the
// cached claims of stored roles are computed again when their admin changes.
func TestClaimsFollowTheAdmin(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	at := func(loc string) func(*RoleInput) {
		return func(in *RoleInput) { in.Settings[fFaultLocation] = loc; in.Settings[fFaultGrants] = []string{"x"} }
	}
	te.importRole(t, "admin-a", "pw-a", at("one"))
	te.importRole(t, "admin-b", "pw-b", at("two"))
	dep := func(admin string) func(*RoleInput) {
		return func(in *RoleInput) { in.Settings[fFaultAdmin] = admin; in.Settings[fFaultAccount] = "x" }
	}
	te.importRole(t, "dep-a", "pw-da", dep("admin-a")) // account x at one
	te.importRole(t, "dep-b", "pw-db", dep("admin-b")) // account x at two: another place, no clash

	// admin-a moves to where admin-b is: dep-a's x is now at two, like dep-b's.
	if _, err := te.e.WriteRole(ctx, "admin-a", RoleInput{Settings: map[string]interface{}{fFaultLocation: "two"}}); err != nil {
		t.Fatal(err)
	}
	_, err := te.e.WriteRole(ctx, "dep-b", RoleInput{Settings: map[string]interface{}{fFaultMode: "strict"}})
	wantUserError(t, err, `account: account x at two is already managed by role "dep-a"`)
}

// TestReidentifyNeedsTheNewValue: a role that holds a value cannot be pointed at another account
// without importing that account's value in the same write (a self-managed postgres role
// repointed at another login would change it with its own password, and list its sessions).
func TestReidentifyNeedsTheNewValue(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "app", "pw-app", func(in *RoleInput) { in.Settings[fFaultAccount] = "mine" })
	_, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultAccount: "theirs"}})
	wantUserError(t, err, "account: the role holds a value of the account it names now")
	if v, _ := te.e.ReadRole(ctx, "app"); v.Role.Settings.String(fFaultAccount) != "mine" {
		t.Fatal("the role was repointed")
	}
	// With the new account's value, proven at the target, it may.
	ft.SetLive(secretOf("pw-theirs"))
	if _, err := te.e.WriteRole(ctx, "app", RoleInput{Settings: map[string]interface{}{fFaultAccount: "theirs"}, Secrets: map[string]string{fFaultValue: "pw-theirs"}}); err != nil {
		t.Fatalf("repointing with the new value: %v", err)
	}
}
