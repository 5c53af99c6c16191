package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Two engines over one storage stand for the active node and a standby: what the active one
// writes reaches the standby's in-memory views through Invalidate, as Vault calls it.
func TestInvalidateKeepsViewsTrue(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	active := newEnvOn(t, storage, clock)
	standby := newEnvOn(t, storage, clock)
	ctx := context.Background()

	// The config.
	cfg := active.e.Config()
	cfg.MaxFailures = 9
	cfg.AllowedConsumers = []string{"docker:api-*"}
	cfg.AllowedHealthTargets = []string{}
	if err := active.e.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, configPath)
	if got := standby.e.Config().MaxFailures; got != 9 {
		t.Fatalf("standby config max_failures = %d after invalidation", got)
	}
	// The allow-lists a role write on the standby's view is checked against (an emptied list
	// stays empty rather than falling back to its default).
	if got := standby.e.Config(); len(got.AllowedConsumers) != 1 || got.AllowedHealthTargets == nil || len(got.AllowedHealthTargets) != 0 {
		t.Fatalf("standby allow-lists %q, %q after invalidation", got.AllowedConsumers, got.AllowedHealthTargets)
	}

	// A role written on the active node is scheduled on the standby.
	active.importRole(t, "r", "pw-standby-old")
	standby.e.Invalidate(ctx, rolePrefix+"r")
	if standby.e.queue.queued("r").IsZero() {
		t.Fatal("the standby does not schedule a role the active node wrote")
	}

	// A value staged during deploy on the active node is what creds hands out on the standby.
	p := &Pending{Old: secretOf("pw-standby-old"), New: secretOf("pw-standby-new"), OldVersion: 1, NewVersion: 2,
		Phase: PhaseDeploying, Deployed: true, Started: clock.Now()}
	active.putPending(t, "r", p)
	standby.e.Invalidate(ctx, pendingPrefix+"r")
	v, _, _, err := standby.e.Creds(ctx, "r", 0)
	if err != nil || !v.Secret.Equal(p.New) {
		t.Fatalf("standby creds during deploy = %v, %v; want the staged value", v, err)
	}
	// The record goes on the active node: the standby stops staging.
	if err := active.e.dropRecord(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, pendingPrefix+"r")
	if standby.e.pending.has("r") {
		t.Fatal("the standby still lists a pending record the active node deleted")
	}

	// A deleted role leaves the standby's schedule.
	if err := active.e.DeleteRole(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, rolePrefix+"r")
	if !standby.e.queue.queued("r").IsZero() {
		t.Fatal("the standby still schedules a deleted role")
	}

	// History written elsewhere: the next entry's number is read again, not reused.
	active.importRole(t, "h", "pw-h1")
	if _, err := standby.e.Rotate(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := active.e.Rotate(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	for _, k := range mustList(t, storage, historyPrefix+"h/") {
		standby.e.Invalidate(ctx, historyPrefix+"h/"+k)
	}
	if _, err := standby.e.Rotate(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if h := standby.history(t, "h"); len(h) != 3 {
		t.Fatalf("history has %d entries, want 3 (three rotations, none overwritten)", len(h))
	}
}

func mustList(t *testing.T, s logical.Storage, prefix string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
