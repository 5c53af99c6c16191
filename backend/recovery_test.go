package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// crashed sets up role name as a rotation interrupted after prepare: version 1 holds old, the
// pending record holds old and new, and the fake target holds live.
func crashed(t *testing.T, te *testEnv, name string, live string) (*faultTarget, *Pending) {
	t.Helper()
	ft := te.importRole(t, name, "pw-crash-old")
	p := &Pending{Old: secretOf("pw-crash-old"), New: secretOf("pw-crash-new"), OldVersion: 1, NewVersion: 2,
		Trigger: TriggerSchedule, Phase: PhaseApplying, Started: te.clock.Now()}
	te.putPending(t, name, p)
	ft.SetLive(secretOf(live))
	te.clock.Advance(time.Minute)
	return ft, p
}

func TestRecoveryNewLiveRollsForward(t *testing.T) {
	te := newEnv(t)
	ft, p := crashed(t, te, "c", "pw-crash-new")
	te.e.recoverRole(context.Background(), "c")

	st := te.state(t, "c")
	if cur := st.Current(); cur == nil || cur.Number != 2 || !cur.Secret.Equal(p.New) || cur.Trigger != TriggerSchedule {
		t.Fatalf("current = %+v, want version 2 with the new value", cur)
	}
	if len(st.Versions) != 2 || !st.Versions[1].Secret.Equal(p.Old) {
		t.Fatalf("versions = %+v", st.Versions)
	}
	if !st.LastRotated.Equal(te.clock.Now()) || st.LastOutcome != OutcomeSuccess {
		t.Fatalf("state = %+v", st)
	}
	if te.pendingRec(t, "c") != nil || te.e.pending.has("c") {
		t.Fatal("pending record kept after roll forward")
	}
	h := te.history(t, "c")
	if len(h) != 1 || h[0].Trigger != TriggerRecovery || h[0].Outcome != OutcomeSuccess || h[0].VersionBefore != 1 || h[0].VersionAfter != 2 {
		t.Fatalf("history = %+v", h)
	}
	if ft.Applies() != 0 {
		t.Fatal("recovery changed the target")
	}
	if got := te.e.queue.queued("c"); !got.Equal(te.clock.Now().Add(time.Hour)) {
		t.Fatalf("not rescheduled: %v", got)
	}
}

func TestRecoveryOldLiveDropsPending(t *testing.T) {
	te := newEnv(t)
	ft, _ := crashed(t, te, "c", "pw-crash-old")
	te.e.recoverRole(context.Background(), "c")

	if te.pendingRec(t, "c") != nil || te.e.pending.has("c") {
		t.Fatal("pending record kept although the old value is live")
	}
	st := te.state(t, "c")
	if len(st.Versions) != 1 || st.Current().Number != 1 || st.Failing {
		t.Fatalf("state = %+v", st)
	}
	h := te.history(t, "c")
	if len(h) != 1 || h[0].Trigger != TriggerRecovery || h[0].Outcome != OutcomeFailed || h[0].RolledBack {
		t.Fatalf("history = %+v", h)
	}
	if ft.Applies() != 0 {
		t.Fatal("recovery changed the target")
	}
}

func TestRecoveryFirstRotationNewRejected(t *testing.T) {
	// A pending record of a first rotation has no old value: its new value may be the live one
	// even if it does not verify (a wrong connection_url), so recovery keeps it and parks the
	// role; a new rotation supersedes it.
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "c", "pw-first")
	te.putPending(t, "c", &Pending{New: secretOf("never-applied"), NewVersion: 2, OldVersion: 1, Trigger: TriggerCreate})
	recoverUntilParked(t, te, "c")
	if te.pendingRec(t, "c") == nil {
		t.Fatal("the only candidate for the live value was dropped")
	}
	if st := te.state(t, "c"); !st.Failing {
		t.Fatalf("state = %+v, want failing", st)
	}
	out, err := te.e.Rotate(ctx, "c")
	if err != nil || !out.Success {
		t.Fatalf("a manual rotation does not supersede the record: %+v %v", out, err)
	}
	if te.pendingRec(t, "c") != nil || !ft.Live().Equal(te.state(t, "c").Current().Secret) {
		t.Fatal("after the superseding rotation the target and Vault disagree")
	}
}

// recoverUntilParked runs background recovery max_failures times, each after its backoff.
func recoverUntilParked(t *testing.T, te *testEnv, name string) {
	t.Helper()
	for i := 0; i < te.e.Config().MaxFailures; i++ {
		if p := te.pendingRec(t, name); p != nil && p.RetryAt.After(te.clock.Now()) {
			te.clock.Set(p.RetryAt)
		}
		te.e.recoverRole(context.Background(), name)
	}
}

func TestRecoveryBothRejectedKeepsBothAndFails(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft, p := crashed(t, te, "c", "changed-by-someone-else")

	// One attempt: kept, retried after a backoff, not parked yet.
	te.e.recoverRole(ctx, "c")
	kept := te.pendingRec(t, "c")
	if kept == nil || !kept.Old.Equal(p.Old) || !kept.New.Equal(p.New) || !te.e.pending.has("c") {
		t.Fatalf("pending record = %+v, want both values kept", kept)
	}
	if kept.Attempts != 1 || !kept.RetryAt.After(te.clock.Now()) || te.state(t, "c").Failing {
		t.Fatalf("after one attempt: pending %+v, state %+v", kept, te.state(t, "c"))
	}
	// Before the backoff passes, recovery does not log in again.
	verifies := ft.Verifies()
	te.e.recoverRole(ctx, "c")
	if ft.Verifies() != verifies {
		t.Fatal("recovery logged in again before its backoff")
	}

	recoverUntilParked(t, te, "c")
	st := te.state(t, "c")
	if !st.Failing || st.LastOutcome != OutcomeUnresolved || st.Current().Number != 1 {
		t.Fatalf("state = %+v", st)
	}
	if !te.e.queue.queued("c").IsZero() {
		t.Fatal("a failing role is still scheduled")
	}
	h := te.history(t, "c")
	if len(h) != 1 || h[0].Trigger != TriggerRecovery || h[0].Outcome != OutcomeUnresolved {
		t.Fatalf("history = %+v", h)
	}
	// Parked: later ticks do not log in to the target at all (an account-lockout risk).
	verifies = ft.Verifies()
	for i := 0; i < 3; i++ {
		te.clock.Advance(time.Hour)
		te.e.recoverRole(ctx, "c")
	}
	if n := ft.Verifies(); n != verifies {
		t.Fatalf("a parked role was tried %d more times", n-verifies)
	}
	if te.pendingRec(t, "c") == nil || len(te.history(t, "c")) != 1 {
		t.Fatal("a parked recovery changed the record")
	}
	// The pending record blocks deletion and import.
	wantUserError(t, te.e.DeleteRole(ctx, "c"), "pending")

	// The target comes back with the new value; the operator's write un-parks the role, and the
	// next recovery rolls forward.
	ft.SetLive(p.New)
	if _, err := te.e.WriteRole(ctx, "c", RoleInput{RotationPeriod: ptr(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if kept := te.pendingRec(t, "c"); kept.Attempts != 0 || !kept.RetryAt.IsZero() {
		t.Fatalf("the write did not reset the recovery attempts: %+v", kept)
	}
	te.e.recoverRole(ctx, "c")
	st = te.state(t, "c")
	if st.Failing || st.Current().Number != 2 || te.pendingRec(t, "c") != nil {
		t.Fatalf("state = %+v", st)
	}
}

func TestRecoveryUnreachableKeepsPendingNotFailing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(ft *faultTarget)
	}{
		{"target down", func(ft *faultTarget) { ft.SetDown(true) }},
		{"new rejected, old unreachable", func(ft *faultTarget) { ft.ScriptVerify(verifyReject, verifyUnreachable) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			ft, _ := crashed(t, te, "c", "pw-crash-new")
			tc.setup(ft)
			before := te.state(t, "c")
			te.e.recoverRole(context.Background(), "c")
			if te.pendingRec(t, "c") == nil || !te.e.pending.has("c") {
				t.Fatal("pending record dropped while the target cannot be asked")
			}
			st := te.state(t, "c")
			if st.Failing || st.ConsecutiveFailures != before.ConsecutiveFailures || st.Current().Number != 1 {
				t.Fatalf("state = %+v", st)
			}
			if h := te.history(t, "c"); len(h) != 0 {
				t.Fatalf("history = %+v", h)
			}
			if p := te.pendingRec(t, "c"); p.Attempts != 1 || !p.RetryAt.After(te.clock.Now()) {
				t.Fatalf("the failed attempt is not counted with a backoff: %+v", p)
			}
		})
	}
}

func TestRecoveryPromoteIsIdempotent(t *testing.T) {
	// Crash after the promoted state was written but before the pending record was deleted.
	te := newEnv(t)
	ctx := context.Background()
	_, p := crashed(t, te, "c", "pw-crash-new")
	st := te.state(t, "c")
	st.push(Version{Number: 2, Created: te.clock.Now(), Trigger: TriggerSchedule, Secret: p.New}, 5)
	if err := putJSON(ctx, te.storage, statePrefix+"c", st); err != nil {
		t.Fatal(err)
	}
	te.e.recoverRole(ctx, "c")
	st = te.state(t, "c")
	if len(st.Versions) != 2 || st.Versions[0].Number != 2 || st.Versions[1].Number != 1 {
		t.Fatalf("versions = %+v, want 2,1 without a duplicate", st.Versions)
	}
	if te.pendingRec(t, "c") != nil {
		t.Fatal("pending record kept")
	}
}

func TestRecoveryWithoutPendingClearsSet(t *testing.T) {
	te := newEnv(t)
	te.importRole(t, "c", "pw-nothing")
	te.e.pending.add("c")
	te.e.recoverRole(context.Background(), "c")
	if te.e.pending.has("c") {
		t.Fatal("pending set still lists a role without a record")
	}
}

func TestRecoveryOnInitialize(t *testing.T) {
	te := newEnv(t)
	_, p := crashed(t, te, "c", "pw-crash-new")
	te.e.Close()

	// Restart: a new engine over the same storage resolves the record in the background.
	te2 := newEnvOn(t, te.storage, te.clock)
	eventually(t, "recovery after restart", func() bool {
		st, _ := te2.e.loadState(context.Background(), "c")
		return st.Current() != nil && st.Current().Number == 2
	})
	eventually(t, "pending dropped", func() bool { return !te2.e.pending.has("c") })
	if te2.pendingRec(t, "c") != nil {
		t.Fatal("pending record kept")
	}
	if cur := te2.state(t, "c").Current(); !cur.Secret.Equal(p.New) {
		t.Fatalf("current = %+v", cur)
	}
}

func TestRecoveryNotOnInitializeWhenNotWriteSafe(t *testing.T) {
	te := newEnv(t)
	crashed(t, te, "c", "pw-crash-new")
	te.e.Close()
	te2 := newEnvOn(t, te.storage, te.clock, func(s *logical.StaticSystemView) {
		s.ReplicationStateVal = consts.ReplicationPerformanceStandby
	})
	if st := te2.e.Stats(); st.Pending != 1 || st.Waiting != 0 {
		t.Fatalf("stats = %+v, want the pending record known but no job queued", st)
	}
	if te2.pendingRec(t, "c") == nil {
		t.Fatal("a standby resolved a pending record")
	}
}

func TestRecoveryOnTick(t *testing.T) {
	te := newEnv(t)
	crashed(t, te, "c", "pw-crash-old")
	if err := te.e.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery on tick", func() bool { return !te.e.pending.has("c") })
	if te.pendingRec(t, "c") != nil {
		t.Fatal("pending record kept")
	}
}

func TestRotateResolvesPendingFirst(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft, p := crashed(t, te, "c", "pw-crash-new")
	out, err := te.e.Rotate(ctx, "c")
	if err != nil || !out.Success {
		t.Fatalf("rotate = %+v, %v", out, err)
	}
	if got := strings.Join(stepNames(out.Steps), ","); got != "recover,prepare,apply,verify,promote" {
		t.Fatalf("steps = %s", got)
	}
	if out.OldVersion != 2 || out.NewVersion != 3 {
		t.Fatalf("versions %d -> %d, want 2 -> 3", out.OldVersion, out.NewVersion)
	}
	st := te.state(t, "c")
	if len(st.Versions) != 3 || !st.Version(2).Secret.Equal(p.New) || !ft.Live().Equal(st.Current().Secret) {
		t.Fatalf("versions = %+v", st.Versions)
	}
	h := te.history(t, "c")
	if len(h) != 2 || h[0].Trigger != TriggerManual || h[1].Trigger != TriggerRecovery {
		t.Fatalf("history = %+v", h)
	}
	if applies := ft.ApplyCalls(); !applies[0][0].Equal(p.New) {
		t.Fatalf("the new rotation did not authenticate with the recovered value: %v", applies[0][0])
	}
}

func TestRotateRefusedWhilePendingUnresolved(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft, _ := crashed(t, te, "c", "pw-crash-new")
	ft.SetDown(true)
	out, err := te.e.Rotate(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if out.Success || out.FailedStep != StepRecover || out.Result != OutcomeUnresolved {
		t.Fatalf("outcome = %+v, want unresolved at recover", out)
	}
	if ft.Applies() != 0 || te.pendingRec(t, "c") == nil {
		t.Fatal("a rotation started over an unresolved pending record")
	}
	if st := te.state(t, "c"); st.LastOutcome != OutcomeUnresolved {
		t.Fatalf("state says %q although which value is live is unknown", st.LastOutcome)
	}
}

// flakyStorage fails writes of keys with a given prefix while armed.
type flakyStorage struct {
	logical.Storage
	mu     sync.Mutex
	prefix string
}

func (f *flakyStorage) arm(prefix string) {
	f.mu.Lock()
	f.prefix = prefix
	f.mu.Unlock()
}

func (f *flakyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	prefix := f.prefix
	f.mu.Unlock()
	if prefix != "" && strings.HasPrefix(e.Key, prefix) {
		return errors.New("storage unavailable")
	}
	return f.Storage.Put(ctx, e)
}

// TestPromoteFailureKeepsPendingForRecovery: the new value is live but the promotion cannot be
// written; the pending record keeps it, and recovery promotes it later.
func TestPromoteFailureKeepsPendingForRecovery(t *testing.T) {
	storage := &flakyStorage{Storage: &logical.InmemStorage{}}
	e, ft := engineOver(t, storage, newClock(t0), "p", "pw-promote-old")
	ctx := context.Background()

	storage.arm(statePrefix)
	out, err := e.Rotate(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if out.Success || out.Result != OutcomeUnresolved || out.FailedStep != StepPromote {
		t.Fatalf("outcome = %+v", out)
	}
	p, _ := e.loadPending(ctx, "p")
	if p == nil || !p.New.Equal(ft.Live()) {
		t.Fatalf("pending = %+v, want the live new value kept", p)
	}
	if strings.Contains(out.Error, p.New["password"]) {
		t.Fatal("outcome error leaks the new value")
	}

	storage.arm("")
	e.recoverRole(ctx, "p")
	st, _ := e.loadState(ctx, "p")
	if cur := st.Current(); cur.Number != 2 || !cur.Secret.Equal(ft.Live()) {
		t.Fatalf("current = %+v after recovery", cur)
	}
	if p, _ := e.loadPending(ctx, "p"); p != nil {
		t.Fatal("pending kept after recovery")
	}
}

// A role the schedule parked (max_failures reached by failed rotations) still has its unknown
// outcome resolved: parking stops new rotations, not the resolution of a value that may be live.
func TestRecoveryResolvesUnknownOfAParkedRole(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	if err := te.e.SetConfig(ctx, Config{MaxParallel: 1, HistoryLimit: 10, RetryBase: time.Second, RetryMax: time.Second,
		MaxFailures: 1, DockerHost: DefaultDockerHost}); err != nil {
		t.Fatal(err)
	}
	ft := te.importRole(t, "k", "pw-parked-old")
	ft.SetSettleTime(time.Minute) // no background recovery before the test asks for one
	ft.ScriptApply(applyFailAfter)
	out, _ := te.e.Rotate(ctx, "k")
	if out.Result != OutcomeUnresolved || !te.state(t, "k").Failing {
		t.Fatalf("outcome %+v, state %+v: want unresolved and parked", out, te.state(t, "k"))
	}
	te.clock.Advance(2 * time.Minute)
	te.e.recoverRole(ctx, "k")
	st := te.state(t, "k")
	if te.pendingRec(t, "k") != nil || st.Current().Number != 2 || !st.Current().Secret.Equal(ft.Live()) {
		t.Fatalf("unknown outcome of a parked role not resolved: %+v", st)
	}
}

// A record in deploying whose new value turns out not to be live: the consumers, which may
// have restarted on it, are restarted on the old one before the record goes.
func TestRecoveryDeployingNewNotLiveRedeploys(t *testing.T) {
	addr := acceptingListener(t)
	te := newEnv(t)
	te.importRole(t, "c", "pw-crash-old", func(in *RoleInput) {
		in.HealthChecks = ptr([]string{"tcp://" + addr})
	})
	te.putPending(t, "c", &Pending{Old: secretOf("pw-crash-old"), New: secretOf("pw-crash-new"), OldVersion: 1, NewVersion: 2,
		Trigger: TriggerSchedule, Phase: PhaseDeploying, Deployed: true, Started: te.clock.Now()})
	te.e.recoverRole(context.Background(), "c")
	if te.pendingRec(t, "c") != nil {
		t.Fatal("record kept")
	}
	h := te.history(t, "c")
	if len(h) != 1 || !h[0].RolledBack || len(h[0].Health) != 1 || h[0].Health[0].Phase != StepRedeploy {
		t.Fatalf("history = %+v", h)
	}
}

// A roll forward whose promotion can never be written is an attempt like any other: after
// max_failures of them recovery stops, instead of verifying and redeploying on every tick.
func TestRecoveryPromoteThatNeverSucceedsParks(t *testing.T) {
	storage := &flakyStorage{Storage: &logical.InmemStorage{}}
	clock := newClock(t0)
	e, ft := engineOver(t, storage, clock, "p", "pw-never-old")
	ctx := context.Background()
	storage.arm(statePrefix)
	if out, _ := e.Rotate(ctx, "p"); out.Result != OutcomeUnresolved {
		t.Fatalf("outcome = %+v", out)
	}
	for i := 0; i < e.Config().MaxFailures; i++ {
		if p, _ := e.loadPending(ctx, "p"); p.RetryAt.After(clock.Now()) {
			clock.Set(p.RetryAt)
		}
		e.recoverRole(ctx, "p")
	}
	p, _ := e.loadPending(ctx, "p")
	if p == nil || p.Attempts != e.Config().MaxFailures || !p.New.Equal(ft.Live()) {
		t.Fatalf("pending = %+v", p)
	}
	verifies := ft.Verifies()
	for i := 0; i < 3; i++ {
		clock.Advance(time.Hour)
		e.recoverRole(ctx, "p")
	}
	if ft.Verifies() != verifies {
		t.Fatalf("recovery kept trying after %d attempts", p.Attempts)
	}
}
