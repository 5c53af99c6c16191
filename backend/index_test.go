package backend

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestStatusFromIndexMatchesStorage: every row status answers from the index equals the view
// built from storage, through creates, rotations, failures, updates and deletes; a second call
// reads no storage.
func TestStatusFromIndexMatchesStorage(t *testing.T) {
	storage := &readCountingStorage{InmemStorage: &logical.InmemStorage{}}
	te := newEnv(t)
	te.e.storage = engineStorage{Storage: storage, written: te.e.storageWritten}
	te.storage = storage.InmemStorage
	ctx := context.Background()

	check := func(what string) {
		t.Helper()
		rows, err := te.e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names, err := te.e.ListRoles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(names) {
			t.Fatalf("%s: status has %d rows, storage %d roles", what, len(rows), len(names))
		}
		for _, row := range rows {
			v, err := te.e.ReadRole(ctx, row.Name)
			if err != nil || v == nil {
				t.Fatalf("%s: %s: %v", what, row.Name, err)
			}
			want := StatusRow{Name: row.Name, Type: v.Role.Type, CurrentVersion: v.CurrentVersion, LastRotated: v.LastRotated,
				NextRotation: v.NextRotation, DueAt: v.DueAt, Overdue: v.Overdue, AutoRotate: v.Role.AutoRotate,
				LastOutcome: v.LastOutcome, ConsecutiveFailures: v.ConsecutiveFailures, Failing: v.Failing,
				Age: row.Age, OverdueBy: row.OverdueBy}
			if !reflect.DeepEqual(row, want) {
				t.Fatalf("%s: status row %+v, storage says %+v", what, row, want)
			}
		}
		before := storage.gets.Load()
		if _, err := te.e.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if n := storage.gets.Load() - before; n != 0 {
			t.Fatalf("%s: a second status read storage %d times", what, n)
		}
	}

	check("empty")
	ft := te.importRole(t, "a", "pw-a")
	te.importRole(t, "b", "pw-b")
	check("two imported")
	if _, err := te.e.Rotate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check("after a rotation")
	ft.ScriptApply(applyFailBefore)
	_, _ = te.e.Rotate(ctx, "a")
	check("after a failed rotation")
	if _, err := te.e.WriteRole(ctx, "b", RoleInput{AutoRotate: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	check("after an update")
	if err := te.e.DeleteRole(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	check("after a delete")
}

// TestIndexFollowsAnotherNode: roles another node creates, changes and deletes show in this
// node's status once Invalidate tells it.
func TestIndexFollowsAnotherNode(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	active := newEnvOn(t, storage, clock)
	standby := newEnvOn(t, storage, clock)
	ctx := context.Background()

	rows := func() map[string]StatusRow {
		t.Helper()
		rs, err := standby.e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]StatusRow{}
		for _, r := range rs {
			m[r.Name] = r
		}
		return m
	}
	if len(rows()) != 0 {
		t.Fatal("rows before any role")
	}
	active.importRole(t, "x", "pw-x")
	standby.e.Invalidate(ctx, rolePrefix+"x")
	standby.e.Invalidate(ctx, statePrefix+"x")
	if r, ok := rows()["x"]; !ok || r.CurrentVersion != 1 {
		t.Fatalf("the standby does not list a role the active node created: %+v", r)
	}
	clock.Advance(time.Minute)
	if _, err := active.e.Rotate(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, statePrefix+"x")
	if r := rows()["x"]; r.CurrentVersion != 2 {
		t.Fatalf("the standby shows version %d after the active node rotated", r.CurrentVersion)
	}
	if err := active.e.DeleteRole(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, rolePrefix+"x")
	if _, ok := rows()["x"]; ok {
		t.Fatal("the standby lists a role the active node deleted")
	}
}
