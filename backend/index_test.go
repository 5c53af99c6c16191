package backend

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
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

// TestHistoryPages: pages of limit entries, newest first, linked by next_before, cover every
// entry once; bad paging is a 400 naming the field.
func TestHistoryPages(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.importRole(t, "h", "pw-h")
	for i := 0; i < 7; i++ {
		if _, err := te.e.Rotate(ctx, "h"); err != nil {
			t.Fatal(err)
		}
	}
	var seen []int
	var before int64
	for pages := 0; ; pages++ {
		p, err := te.e.HistoryPage(ctx, "h", HistoryQuery{Limit: 3, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) > 3 || pages > 3 {
			t.Fatalf("page %d has %d entries", pages, len(p.Entries))
		}
		for _, h := range p.Entries {
			seen = append(seen, h.VersionAfter)
		}
		if p.Next == 0 {
			break
		}
		before = int64(p.Next)
	}
	if want := []int{8, 7, 6, 5, 4, 3, 2}; !reflect.DeepEqual(seen, want) {
		t.Fatalf("pages gave versions %v, want %v", seen, want)
	}
	for _, q := range []HistoryQuery{{Limit: -1}, {Limit: MaxHistoryPage + 1}, {Limit: 1, Before: -1}} {
		_, err := te.e.HistoryPage(ctx, "h", q)
		wantUserError(t, err, ":")
	}
}

// TestDueTimerRotatesWithoutTick: on the system clock a role rotates when it falls due, with no
// call of the periodic function (which Vault makes about once a minute).
func TestDueTimerRotatesWithoutTick(t *testing.T) {
	e := New(&logical.BackendConfig{StorageView: &logical.InmemStorage{}, System: &logical.StaticSystemView{}})
	ctx := context.Background()
	if err := e.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	_, target := newFault(t, secretOf("pw-timer"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-timer"
	in.RotationPeriod = ptr(MinRotationPeriod)
	if _, err := e.WriteRole(ctx, "timer", in); err != nil {
		t.Fatal(err)
	}
	imported := time.Now()
	deadline := imported.Add(30 * time.Second)
	for {
		st, err := e.loadState(ctx, "timer")
		if err != nil {
			t.Fatal(err)
		}
		if st.Current().Number == 2 {
			if st.LastRotated.Before(imported.Add(MinRotationPeriod - time.Second)) {
				t.Fatalf("rotated at %s, before it was due", st.LastRotated)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a due role was not rotated without the periodic function")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// churnStorage runs hook on every read of key: a write elsewhere in the same stripe of the role
// index at the moment the index reads that role again.
type churnStorage struct {
	logical.Storage
	key  string
	hook atomic.Pointer[func()]
}

func (c *churnStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	if k == c.key {
		if h := c.hook.Load(); h != nil {
			(*h)()
		}
	}
	return c.Storage.Get(ctx, k)
}

func churnEngine(t *testing.T, watch string) (*Engine, *churnStorage) {
	t.Helper()
	cs := &churnStorage{Storage: &logical.InmemStorage{}, key: watch}
	e := New(&logical.BackendConfig{StorageView: cs, System: &logical.StaticSystemView{}})
	e.SetClock(newClock(t0))
	if err := e.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, cs
}

func churnRole(t *testing.T, e *Engine, name string, mod func(*RoleInput)) error {
	t.Helper()
	_, target := newFault(t, secretOf("pw-"+name))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-" + name
	if mod != nil {
		mod(&in)
	}
	_, err := e.WriteRole(context.Background(), name, in)
	return err
}

// sameStripe is a role name in the index stripe of name (other than name).
func sameStripe(t *testing.T, name string) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		if n := fmt.Sprintf("busy%d", i); stripe(n) == stripe(name) {
			return n
		}
	}
	t.Fatal("no name in the stripe")
	return ""
}

// TestIndexUnderChurn: writes in the same stripe keep marking an entry stale while the index
// reads it again; the rules that look across roles still see the role as storage holds it.
func TestIndexUnderChurn(t *testing.T) {
	t.Run("one login one role", func(t *testing.T) {
		e, cs := churnEngine(t, rolePrefix+"first")
		acct := func(in *RoleInput) { in.Settings[fFaultAccount] = "x" }
		if err := churnRole(t, e, "first", acct); err != nil {
			t.Fatal(err)
		}
		busy := sameStripe(t, "first")
		h := func() {
			_ = e.storage.Put(context.Background(), &logical.StorageEntry{Key: statePrefix + busy, Value: []byte("{}")})
		}
		cs.hook.Store(&h)
		err := churnRole(t, e, "second", acct)
		cs.hook.Store(nil)
		wantUserError(t, err, `already managed by role "first"`)
	})
	t.Run("dependents", func(t *testing.T) {
		e, cs := churnEngine(t, rolePrefix+"dep")
		if err := churnRole(t, e, "adm", nil); err != nil {
			t.Fatal(err)
		}
		if err := churnRole(t, e, "dep", func(in *RoleInput) { in.Settings[fFaultAdmin] = "adm" }); err != nil {
			t.Fatal(err)
		}
		busy := sameStripe(t, "dep")
		h := func() {
			_ = e.storage.Put(context.Background(), &logical.StorageEntry{Key: statePrefix + busy, Value: []byte("{}")})
		}
		cs.hook.Store(&h)
		err := e.DeleteRole(context.Background(), "adm")
		cs.hook.Store(nil)
		wantUserError(t, err, "dep")
	})
}
