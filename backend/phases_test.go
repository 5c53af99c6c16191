package backend

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/logical"
	"net"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func TestPhaseTransitions(t *testing.T) {
	allowed := map[[2]Phase]bool{
		{PhaseApplying, PhaseApplied}:      true,
		{PhaseApplying, PhaseRestoring}:    true,
		{PhaseApplying, PhaseDeploying}:    true,
		{PhaseApplied, PhaseDeploying}:     true,
		{PhaseApplied, PhaseRestoring}:     true,
		{PhaseDeploying, PhaseRestoring}:   true,
		{PhaseRestoring, PhaseRedeploying}: true,
	}
	all := []Phase{PhaseApplying, PhaseApplied, PhaseDeploying, PhaseRestoring, PhaseRedeploying}
	for _, from := range all {
		for _, to := range all {
			if got := canMove(from, to); got != allowed[[2]Phase{from, to}] {
				t.Errorf("canMove(%s, %s) = %v", from, to, got)
			}
		}
	}
	// A move the machine does not allow is refused and nothing is written.
	te := newEnv(t)
	te.importRole(t, "m", "pw-moves")
	p := &Pending{Old: secretOf("pw-moves"), New: secretOf("pw-next"), OldVersion: 1, NewVersion: 2, Phase: PhaseDeploying}
	te.putPending(t, "m", p)
	if err := te.e.enter(context.Background(), "m", p, PhaseApplied); err == nil {
		t.Fatal("deploying → applied was allowed")
	}
	if got := te.pendingRec(t, "m"); got.Phase != PhaseDeploying {
		t.Fatalf("stored phase %s after a refused move", got.Phase)
	}
}

// Records written before phases existed carry a step name; they read back with a phase.
func TestPendingLegacyStepMigrates(t *testing.T) {
	for step, want := range map[string]Phase{StepApply: PhaseApplying, StepDeploy: PhaseDeploying, StepRestore: PhaseRestoring, "": PhaseApplying} {
		te := newEnv(t)
		te.importRole(t, "l", "pw-legacy")
		te.putPending(t, "l", &Pending{Old: secretOf("pw-legacy"), New: secretOf("pw-new"), OldVersion: 1, NewVersion: 2, LegacyStep: step})
		if got := te.pendingRec(t, "l"); got.Phase != want || got.LegacyStep != "" {
			t.Errorf("step %q read back as phase %q", step, got.Phase)
		}
	}
}

// Roll-forward runs the kind's remaining work (rotators.Finisher) before promoting.
func TestRecoveryRollForwardFinishesTheKindsWork(t *testing.T) {
	te := newEnv(t)
	ft, p := crashed(t, te, "c", "pw-crash-new")
	te.e.recoverRole(context.Background(), "c")
	finishes := ft.Finishes()
	if len(finishes) != 1 || !finishes[0][0].Equal(p.Old) || !finishes[0][1].Equal(p.New) {
		t.Fatalf("Finish calls = %v, want one with (old, new)", finishes)
	}
	if cur := te.state(t, "c").Current(); cur.Number != 2 {
		t.Fatalf("current = %+v", cur)
	}
}

// A crash inside a rollback: recovery finishes it, whatever the target holds.
func TestRecoveryRestoringFinishesTheRollback(t *testing.T) {
	for _, live := range []string{"pw-crash-new", "pw-crash-old"} {
		t.Run(live, func(t *testing.T) {
			te := newEnv(t)
			ft, p := crashed(t, te, "c", live)
			p.Phase = PhaseRestoring
			te.putPending(t, "c", p)
			te.e.recoverRole(context.Background(), "c")
			if te.pendingRec(t, "c") != nil {
				t.Fatal("record kept after the rollback finished")
			}
			if !ft.Live().Equal(p.Old) {
				t.Fatalf("live = %v, want the old value", ft.Live())
			}
			st := te.state(t, "c")
			if st.Current().Number != 1 || !st.Current().Secret.Equal(p.Old) {
				t.Fatalf("state = %+v", st)
			}
			h := te.history(t, "c")
			if len(h) != 1 || h[0].Trigger != TriggerRecovery || h[0].Outcome != OutcomeFailed || h[0].RolledBack != (live == "pw-crash-new") {
				t.Fatalf("history = %+v", h)
			}
		})
	}
}

// A crash after the target was restored but before the consumers were: recovery redeploys them
// on the old value (here a health check stands in for the consumers) and then drops the record.
func TestRecoveryRedeployingRestartsConsumers(t *testing.T) {
	addr := acceptingListener(t)
	te := newEnv(t)
	ft := te.importRole(t, "c", "pw-crash-old", func(in *RoleInput) {
		in.HealthChecks = ptr([]string{"tcp://" + addr})
	})
	p := &Pending{Old: secretOf("pw-crash-old"), New: secretOf("pw-crash-new"), OldVersion: 1, NewVersion: 2,
		Trigger: TriggerSchedule, Phase: PhaseRedeploying, Deployed: true, Started: te.clock.Now()}
	te.putPending(t, "c", p)
	te.e.recoverRole(context.Background(), "c")
	if te.pendingRec(t, "c") != nil {
		t.Fatal("record kept after the redeploy")
	}
	if ft.Applies() != 0 {
		t.Fatal("the target was changed although it already held the old value")
	}
	h := te.history(t, "c")
	if len(h) != 1 || !h[0].RolledBack || len(h[0].Health) != 1 || h[0].Health[0].Phase != StepRedeploy {
		t.Fatalf("history = %+v", h)
	}
}

// Between apply and promote, creds waits for the outcome instead of handing out the old value,
// which may already be dead at the target.
func TestCredsWaitsForTheApplyWindow(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "w", "pw-window-old")
	gate := make(chan struct{})
	g := &gauge{}
	ft.SetApplyGate(gate, g)

	rotated := make(chan *Outcome, 1)
	go func() {
		out, _ := te.e.Rotate(ctx, "w")
		rotated <- out
	}()
	eventually(t, "the rotation is inside Apply", func() bool { return g.Cur.Load() == 1 })

	got := credsAsync(te.e, "w")
	assertWaiting(t, got, "creds answered while the rotation was between apply and promote")
	close(gate)
	out := <-rotated
	if out == nil || !out.Success {
		t.Fatalf("rotation = %+v", out)
	}
	if s := <-got; s == nil || !s.Equal(ft.Live()) {
		t.Fatal("creds did not answer the value live after the rotation")
	}
	// An explicit version does not wait.
	if _, _, _, err := te.e.Creds(ctx, "w", 1); err != nil {
		t.Fatal(err)
	}
}

// Recovery that drops a record whose new value never went live lets the kind remove it (ssh: a
// key added on some hosts only), and records the interrupted rotation as a failure.
func TestRecoveryDropCleansUpAndCountsTheFailure(t *testing.T) {
	te := newEnv(t)
	ft, p := crashed(t, te, "c", "pw-crash-old")
	te.e.recoverRole(context.Background(), "c")
	finishes := ft.Finishes()
	if len(finishes) != 1 || !finishes[0][0].Equal(p.New) || !finishes[0][1].Equal(p.Old) {
		t.Fatalf("Finish calls = %v, want one removing the new value in favour of the old", finishes)
	}
	st := te.state(t, "c")
	if st.LastOutcome != OutcomeFailed || st.ConsecutiveFailures != 1 || st.RetryAt.IsZero() {
		t.Fatalf("state = %+v, want the interrupted rotation counted as failed", st)
	}
}

// After a restart, a creds read waits for the first recovery of a record the crash left: the
// stored current value may be dead at the target until recovery says which one is live.
func TestCredsWaitsForRecoveryAfterARestart(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	te := newEnvOn(t, storage, clock)
	ft, p := crashed(t, te, "c", "pw-crash-new")
	te.e.Close()

	gate := make(chan struct{})
	ft.SetVerifyGate(gate)
	te2 := newEnvOn(t, storage, clock)
	got := credsAsync(te2.e, "c")
	assertWaiting(t, got, "creds answered before recovery ran")
	close(gate)
	if s := <-got; !s.Equal(p.New) {
		t.Fatal("creds did not answer the value recovery found live")
	}
}

// ctxStorage fails every call whose context is done, as Vault's storage over gRPC does.
type ctxStorage struct{ logical.Storage }

func (c ctxStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Storage.Put(ctx, e)
}

func (c ctxStorage) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Storage.Delete(ctx, key)
}

// A caller that gives up while the change is in flight (Ctrl-C, max_request_duration): the
// cancelled change is an unknown outcome, and its record (with the settle time) reaches storage
// although the request's context is done, so recovery resolves it after the target settled.
func TestCancelledRequestRecordsTheUnknownOutcome(t *testing.T) {
	clock := newClock(t0)
	e, ft := engineOver(t, ctxStorage{&logical.InmemStorage{}}, clock, "c", "pw-cancel-old")
	ft.SetSettleTime(20 * time.Second)
	gate, g := make(chan struct{}), &gauge{}
	ft.SetApplyGate(gate, g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Outcome, 1)
	go func() {
		out, _ := e.Rotate(ctx, "c")
		done <- out
	}()
	eventually(t, "the rotation is inside Apply", func() bool { return g.Cur.Load() == 1 })
	cancel()
	out := <-done
	if out == nil || out.Result != OutcomeUnresolved {
		t.Fatalf("outcome = %+v", out)
	}
	p, _ := e.loadPending(context.Background(), "c")
	if p == nil || !p.SettleAt.Equal(clock.Now().Add(20*time.Second)) {
		t.Fatalf("pending after a cancelled request = %+v, want it with its settle time", p)
	}
	// Before the target settled recovery does nothing; after it, it resolves to what the target holds.
	e.recoverRole(context.Background(), "c")
	if p, _ := e.loadPending(context.Background(), "c"); p == nil {
		t.Fatal("resolved before the target settled")
	}
	clock.Advance(21 * time.Second)
	e.recoverRole(context.Background(), "c")
	st, _ := e.loadState(context.Background(), "c")
	if p, _ := e.loadPending(context.Background(), "c"); p != nil || !st.Current().Secret.Equal(ft.Live()) {
		t.Fatalf("pending %+v, current %v, live %v", p, st.Current(), ft.Live())
	}
}

// While an unknown outcome waits for its target to settle, creds waits too (the stored value may
// be dead), and answers the value recovery finds live.
func TestCredsWaitsForAnUnknownOutcome(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "u", "pw-unknown-old")
	ft.SetSettleTime(20 * time.Second)
	ft.ScriptApply(applyFailAfter)
	if out, _ := te.e.Rotate(ctx, "u"); out.Result != OutcomeUnresolved {
		t.Fatalf("outcome = %+v", out)
	}
	got := credsAsync(te.e, "u")
	assertWaiting(t, got, "creds answered while the outcome was unknown")
	te.clock.Advance(21 * time.Second)
	te.e.recoverRole(ctx, "u")
	if s := <-got; !s.Equal(ft.Live()) {
		t.Fatal("creds did not answer the value live after recovery")
	}
}

// A first value the target acknowledged is kept even when a new rotation would supersede it.
func TestAcknowledgedFirstValueIsNeverSuperseded(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "f", "pw-first-ack")
	st := te.state(t, "f")
	st.Versions = nil // as if the first rotation were in flight
	if err := putJSON(ctx, te.storage, statePrefix+"f", st); err != nil {
		t.Fatal(err)
	}
	te.putPending(t, "f", &Pending{New: secretOf("pw-first-ack"), NewVersion: 1, Trigger: TriggerCreate, Phase: PhaseApplied, Started: te.clock.Now()})
	ft.ScriptVerify(verifyReject) // it does not log in through the role's settings
	out, err := te.e.Rotate(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	h := te.history(t, "f")
	kept := false
	for _, e := range h {
		if e.Trigger == TriggerRecovery && e.VersionAfter == 1 {
			kept = true
		}
	}
	if !kept {
		t.Fatalf("the acknowledged first value was not kept: outcome %+v, history %+v", out, h)
	}
	if st := te.state(t, "f"); st.Version(1) == nil || !st.Version(1).Secret.Equal(secretOf("pw-first-ack")) {
		t.Fatalf("state = %+v", st)
	}
}

// Close cancels a rotation in progress and waits for it to record what it did (its change
// becomes an unknown outcome, kept for the next engine), and refuses new rotations.
func TestCloseCancelsAndWaitsForRotationsInFlight(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	te := newEnvOn(t, storage, clock)
	ft := te.importRole(t, "w", "pw-close-old")
	gate, g := make(chan struct{}), &gauge{}
	ft.SetApplyGate(gate, g)
	rotated := make(chan *Outcome, 1)
	go func() {
		out, _ := te.e.Rotate(context.Background(), "w")
		rotated <- out
	}()
	eventually(t, "the rotation is inside Apply", func() bool { return g.Cur.Load() == 1 })
	te.e.Close()
	select {
	case out := <-rotated:
		if out == nil || out.Result != OutcomeUnresolved {
			t.Fatalf("outcome = %+v", out)
		}
	default:
		t.Fatal("Close returned before the rotation it cancelled had recorded its outcome")
	}
	if p := te.pendingRec(t, "w"); p == nil || p.SettleAt.IsZero() {
		t.Fatalf("pending = %+v", p)
	}
	// Cut short by the shutdown, not by the target: not counted against the role.
	if st := te.state(t, "w"); st.ConsecutiveFailures != 0 || st.Failing || st.LastOutcome != OutcomeUnresolved {
		t.Fatalf("state = %+v", st)
	}
	if _, err := te.e.Rotate(context.Background(), "w"); err == nil {
		t.Fatal("a rotation started after Close")
	}
}

// credsAsync reads the current creds of a role in the background; nil on error.
func credsAsync(e *Engine, name string) <-chan rotators.Secret {
	got := make(chan rotators.Secret, 1)
	go func() {
		v, _, _, err := e.Creds(context.Background(), name, 0)
		if err != nil {
			got <- nil
			return
		}
		got <- v.Secret
	}()
	return got
}

// assertWaiting fails when got answers within a moment: the read should be waiting.
func assertWaiting(t *testing.T, got <-chan rotators.Secret, what string) {
	t.Helper()
	select {
	case <-got:
		t.Fatal(what)
	case <-time.After(200 * time.Millisecond):
	}
}

// acceptingListener is a loopback TCP service that accepts and closes connections: a health
// check target that passes. It stops with the test.
func acceptingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// A creds read whose wait ends while the outcome is still unknown gets no value (the stored one
// may be dead): ErrOutcomePending, which the API answers with 503.
func TestCredsRefusesWhileTheOutcomeIsStillUnknown(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	te.e.credsWait = 50 * time.Millisecond
	ft := te.importRole(t, "u", "pw-pending-old")
	ft.SetSettleTime(20 * time.Second)
	ft.ScriptApply(applyFailAfter)
	if out, _ := te.e.Rotate(ctx, "u"); out.Result != OutcomeUnresolved {
		t.Fatalf("outcome = %+v", out)
	}
	if _, _, _, err := te.e.Creds(ctx, "u", 0); !errors.Is(err, ErrOutcomePending) {
		t.Fatalf("creds during an unknown outcome: %v, want ErrOutcomePending", err)
	}
	// An explicit version is answered: the caller asked for that value.
	if _, _, _, err := te.e.Creds(ctx, "u", 1); err != nil {
		t.Fatal(err)
	}
	te.clock.Advance(21 * time.Second)
	te.e.recoverRole(ctx, "u")
	v, _, _, err := te.e.Creds(ctx, "u", 0)
	if err != nil || !v.Secret.Equal(ft.Live()) {
		t.Fatalf("after recovery: %v %v", v, err)
	}
}
