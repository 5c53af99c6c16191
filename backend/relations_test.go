package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestRelationsFollowOtherNodes: the relations one engine keeps (claimed accounts, dependents)
// follow writes made by another engine over the same storage once Invalidate tells it, and a
// role write consults them without reading every role.
func TestRelationsFollowOtherNodes(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	a := newEnvOn(t, storage, clock)
	b := newEnvOn(t, storage, clock)
	ctx := context.Background()
	claim := func(acct string) func(*RoleInput) {
		return func(in *RoleInput) { in.Settings[fFaultAccount] = acct }
	}
	a.importRole(t, "first", "pw-1", claim("acct-1")) // builds a's relations

	// b creates a role claiming acct-2; a hears of it and refuses the same account.
	b.importRole(t, "other", "pw-2", claim("acct-2"))
	a.e.Invalidate(ctx, rolePrefix+"other")
	_, target3 := newFault(t, secretOf("pw-3"))
	in := faultRole(target3)
	in.Secrets[fFaultValue] = "pw-3"
	in.Settings[fFaultAccount] = "acct-2"
	_, err := a.e.WriteRole(ctx, "third", in)
	wantUserError(t, err, `acct-2 is already managed by role "other"`)

	// b deletes it; a hears of it and takes the account.
	if err := b.e.DeleteRole(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	a.e.Invalidate(ctx, rolePrefix+"other")
	if _, err := a.e.WriteRole(ctx, "third", in); err != nil {
		t.Fatalf("the account is free again: %v", err)
	}

	// b links a new role to a's "first": a refuses to delete "first" (a dependent).
	_, target4 := newFault(t, secretOf("pw-4"))
	dep := faultRole(target4)
	dep.Secrets[fFaultValue] = "pw-4"
	dep.Settings[fFaultAdmin] = "first"
	if _, err := b.e.WriteRole(ctx, "dep", dep); err != nil {
		t.Fatal(err)
	}
	a.e.Invalidate(ctx, rolePrefix+"dep")
	wantUserError(t, a.e.DeleteRole(ctx, "first"), "dep")
	if deps, err := a.e.dependents(ctx, "first"); err != nil || len(deps) != 1 || deps[0] != "dep" {
		t.Fatalf("dependents of first: %v %v", deps, err)
	}
}

// An admin moved while a dependent's claim was being read: the dependent is read again, so its
// claim follows the admin to the new place at once (found by review: it stayed at the old one
// until one of the two was written again, letting another role claim the same login there).
func TestRelationsRereadWhenALinkMoves(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	at := func(loc string) func(*RoleInput) {
		return func(in *RoleInput) { in.Settings[fFaultLocation] = loc; in.Settings[fFaultGrants] = []string{"x"} }
	}
	te.importRole(t, "admin-a", "pw-a", at("one"))
	if err := te.e.refreshRelations(ctx); err != nil { // built before dep exists
		t.Fatal(err)
	}
	te.importRole(t, "dep", "pw-d", func(in *RoleInput) { in.Settings[fFaultAdmin] = "admin-a"; in.Settings[fFaultAccount] = "x" })
	// dep is stored and marked; its first read comes at the next refresh, when no role is
	// known to link to admin-a yet.
	moved := false
	relateRead = func(name string) {
		if name != "dep" || moved {
			return
		}
		moved = true
		// admin-a moves to two while dep's read (which saw it at one) is not yet recorded.
		admin, err := te.e.loadRole(ctx, "admin-a")
		if err != nil {
			t.Error(err)
			return
		}
		admin.Settings.Strings[fFaultLocation] = "two"
		if err := putJSON(ctx, te.e.storage, rolePrefix+"admin-a", admin); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { relateRead = nil })
	if err := te.e.refreshRelations(ctx); err != nil {
		t.Fatal(err)
	}
	if !moved {
		t.Fatal("the hook did not run")
	}
	if holder := te.e.relations.claimHolder(faultType, "account x at two", ""); holder != "dep" {
		t.Fatalf("after the move, x at two is held by %q, want dep", holder)
	}
	if holder := te.e.relations.claimHolder(faultType, "account x at one", ""); holder != "" {
		t.Fatalf("x at one is still held by %q", holder)
	}
}
