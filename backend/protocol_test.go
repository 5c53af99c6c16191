package backend

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func TestRotateSuccess(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "s", "pw-success-1", func(in *RoleInput) { in.VersionsKept = ptr(3) })

	for i := 2; i <= 5; i++ {
		te.clock.Advance(time.Minute)
		out, err := te.e.Rotate(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if !out.Success || out.Result != OutcomeSuccess || out.Trigger != TriggerManual || out.OldVersion != i-1 ||
			out.NewVersion != i || out.FailedStep != "" || out.Error != "" || out.RolledBack {
			t.Fatalf("rotation %d outcome = %+v", i, out)
		}
		if got := strings.Join(stepNames(out.Steps), ","); got != "prepare,apply,verify,promote" {
			t.Fatalf("steps = %s", got)
		}
		st := te.state(t, "s")
		wantLen := i
		if wantLen > 3 {
			wantLen = 3
		}
		if len(st.Versions) != wantLen {
			t.Fatalf("after rotation %d: %d versions kept, want %d", i, len(st.Versions), wantLen)
		}
		for j, v := range st.Versions {
			if v.Number != i-j {
				t.Fatalf("versions not newest first: %+v", st.Versions)
			}
		}
		if st.Versions[0].Trigger != TriggerManual || !st.Versions[0].Created.Equal(te.clock.Now()) {
			t.Fatalf("current version = %+v", st.Versions[0])
		}
		if st.Versions[0].Secret.Equal(st.Versions[1].Secret) {
			t.Fatal("rotation kept the same value")
		}
		if !ft.Live().Equal(st.Versions[0].Secret) {
			t.Fatal("the target does not hold the current version")
		}
		if !st.LastRotated.Equal(te.clock.Now()) || st.LastOutcome != OutcomeSuccess || st.ConsecutiveFailures != 0 || !st.RetryAt.IsZero() {
			t.Fatalf("state = %+v", st)
		}
		if te.pendingRec(t, "s") != nil || te.e.pending.has("s") {
			t.Fatal("pending record kept after success")
		}
		if got := te.e.queue.queued("s"); !got.Equal(te.clock.Now().Add(time.Hour)) {
			t.Fatalf("next due %v, want an hour after the rotation", got)
		}
		h := te.history(t, "s")
		if len(h) != i-1 {
			t.Fatalf("%d history entries, want %d", len(h), i-1)
		}
		e := h[0]
		if e.Trigger != TriggerManual || e.Outcome != OutcomeSuccess || e.VersionBefore != i-1 || e.VersionAfter != i ||
			!e.Time.Equal(te.clock.Now()) || strings.Join(stepNames(e.Steps), ",") != "prepare,apply,verify,promote" {
			t.Fatalf("history entry = %+v", e)
		}
	}
}

func TestRotateMissingRole(t *testing.T) {
	te := newEnv(t)
	if _, err := te.e.Rotate(context.Background(), "nope"); err != ErrRoleNotFound {
		t.Fatalf("err = %v, want ErrRoleNotFound", err)
	}
}

// assertFailedRotation checks the common effects of a failed rotation whose old value is live.
func assertFailedRotation(t *testing.T, te *testEnv, name string, ft *faultTarget, out *Outcome, step string, old rotators.Secret) {
	t.Helper()
	if out.Success || out.Result != OutcomeFailed || out.FailedStep != step || out.Error == "" {
		t.Fatalf("outcome = %+v", out)
	}
	if !ft.Live().Equal(old) {
		t.Fatalf("target holds %v, want the old value back", ft.Live())
	}
	if te.pendingRec(t, name) != nil || te.e.pending.has(name) {
		t.Fatal("pending record kept although the old value is live")
	}
	st := te.state(t, name)
	if len(st.Versions) != 1 || !st.Versions[0].Secret.Equal(old) {
		t.Fatalf("versions changed: %+v", st.Versions)
	}
	if st.ConsecutiveFailures != 1 || st.LastOutcome != OutcomeFailed || st.LastError != out.Error || st.Failing {
		t.Fatalf("state = %+v", st)
	}
	base := te.e.Config().RetryBase
	now := te.clock.Now()
	if st.RetryAt.Before(now.Add(base/2)) || st.RetryAt.After(now.Add(base)) {
		t.Fatalf("RetryAt %v not within [now+%v, now+%v]", st.RetryAt, base/2, base)
	}
	if got := te.e.queue.queued(name); !got.Equal(st.RetryAt) {
		t.Fatalf("queued at %v, want RetryAt %v", got, st.RetryAt)
	}
	h := te.history(t, name)
	if len(h) != 1 || h[0].Outcome != OutcomeFailed || h[0].FailedStep != step || h[0].RolledBack != out.RolledBack || h[0].Error != out.Error {
		t.Fatalf("history = %+v", h)
	}
}

func TestRotateApplyFailsBeforeChange(t *testing.T) {
	te := newEnv(t)
	old := secretOf("pw-old-apply")
	ft := te.importRole(t, "a", old["password"])
	ft.ScriptApply(applyFailBefore)
	out, err := te.e.Rotate(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	assertFailedRotation(t, te, "a", ft, out, StepApply, old)
	if ft.Applies() > 1 && !out.RolledBack {
		t.Fatal("the target was put back, but rolled_back is false")
	}
	if out.RolledBack {
		t.Fatal("rolled_back although the target never changed")
	}
	if got := strings.Join(stepNames(out.Steps), ","); got != "prepare,apply" {
		t.Fatalf("steps = %s; a change the target refused needs no restore", got)
	}
	if n := ft.Applies(); n != 1 {
		t.Fatalf("%d Apply calls; the old value was live, no restore Apply was needed", n)
	}
}

// A change whose answer was lost may have landed: the outcome is unknown. Both values stay in
// the pending record, nothing touches the target until it has settled, and recovery then asks
// which value it holds.
func TestRotateApplyAnswerLostIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  applyFault
		landed bool
	}{
		{"change landed", applyFailAfter, true},
		{"change never landed", applyLostBefore, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			ctx := context.Background()
			old := secretOf("pw-old-lost")
			ft := te.importRole(t, "a", old["password"])
			ft.SetSettleTime(20 * time.Second)
			ft.ScriptApply(tc.fault)
			out, err := te.e.Rotate(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if out.Success || out.Result != OutcomeUnresolved || out.FailedStep != StepApply || out.RolledBack {
				t.Fatalf("outcome = %+v", out)
			}
			if n := ft.Applies(); n != 1 {
				t.Fatalf("%d Apply calls: nothing may be put back while the target may still be changing", n)
			}
			p := te.pendingRec(t, "a")
			if p == nil || p.Phase != PhaseApplying || !p.Old.Equal(old) || !p.SettleAt.Equal(te.clock.Now().Add(20*time.Second)) {
				t.Fatalf("pending = %+v", p)
			}
			wantUserError(t, te.e.DeleteRole(ctx, "a"), "pending")

			// Before the target settled, recovery asks nothing.
			verifies := ft.Verifies()
			te.clock.Advance(10 * time.Second)
			te.e.recoverRole(ctx, "a")
			asked := ft.Verifies() != verifies
			if asked || te.pendingRec(t, "a") == nil {
				t.Fatal("recovery asked the target before it settled")
			}
			// After it, recovery resolves to the value the target holds.
			te.clock.Advance(11 * time.Second)
			st := te.state(t, "a")
			if st.RetryAt.After(te.clock.Now()) {
				te.clock.Set(st.RetryAt)
			}
			te.e.recoverRole(ctx, "a")
			if te.pendingRec(t, "a") != nil {
				t.Fatal("pending record not resolved after the target settled")
			}
			st = te.state(t, "a")
			if !st.Current().Secret.Equal(ft.Live()) {
				t.Fatalf("current %v, live %v", st.Current().Secret, ft.Live())
			}
			if want := 1; tc.landed {
				want = 2
				if st.Current().Number != want {
					t.Fatalf("version %d, want %d", st.Current().Number, want)
				}
			} else if st.Current().Number != want {
				t.Fatalf("version %d, want %d", st.Current().Number, want)
			}
		})
	}
}

func TestRotateVerifyFailsRestoresOldValue(t *testing.T) {
	for _, fault := range []verifyFault{verifyReject, verifyUnreachable} {
		te := newEnv(t)
		old := secretOf("pw-old-verify")
		ft := te.importRole(t, "v", old["password"])
		ft.ScriptVerify(fault)
		out, err := te.e.Rotate(context.Background(), "v")
		if err != nil {
			t.Fatal(err)
		}
		assertFailedRotation(t, te, "v", ft, out, StepVerify, old)
		if !out.RolledBack {
			t.Fatal("the target was put back, but rolled_back is false")
		}
		if got := strings.Join(stepNames(out.Steps), ","); got != "prepare,apply,verify,restore" {
			t.Fatalf("steps = %s", got)
		}
		if n := ft.Applies(); n != 2 {
			t.Fatalf("%d Apply calls, want the change and the restore", n)
		}
	}
}

func TestRotateRestoreImpossibleIsUnresolved(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	old := secretOf("pw-old-unres")
	ft := te.importRole(t, "u", old["password"])
	ft.SetSettleTime(time.Minute)                    // no background recovery while the test looks at the record
	ft.ScriptApply(applyFailAfter, applyUnreachable) // the change lands, the restore cannot
	out, err := te.e.Rotate(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if out.Success || out.Result != OutcomeUnresolved || out.FailedStep != StepApply || out.RolledBack {
		t.Fatalf("outcome = %+v", out)
	}
	p := te.pendingRec(t, "u")
	if p == nil || !te.e.pending.has("u") {
		t.Fatal("pending record dropped although the new value may be live")
	}
	if !p.Old.Equal(old) || !p.New.Equal(ft.Live()) || p.OldVersion != 1 || p.NewVersion != 2 || p.Trigger != TriggerManual {
		t.Fatalf("pending = %+v (live %v)", p, ft.Live())
	}
	st := te.state(t, "u")
	if st.LastOutcome != OutcomeUnresolved || st.ConsecutiveFailures != 1 || len(st.Versions) != 1 {
		t.Fatalf("state = %+v", st)
	}
	if h := te.history(t, "u"); len(h) != 1 || h[0].Outcome != OutcomeUnresolved {
		t.Fatalf("history = %+v", h)
	}
	// Deleting the role is refused while the pending record may hold the live value.
	wantUserError(t, te.e.DeleteRole(ctx, "u"), "pending")

	// Also when the verify fails and the restore then fails.
	te2 := newEnv(t)
	ft2 := te2.importRole(t, "u", "pw-old-unres2")
	ft2.ScriptVerify(verifyReject)
	ft2.ScriptApply(applyOK, applyFailBefore)
	out, _ = te2.e.Rotate(ctx, "u")
	if out.Result != OutcomeUnresolved || out.FailedStep != StepVerify || te2.pendingRec(t, "u") == nil {
		t.Fatalf("outcome = %+v", out)
	}
}

func TestRotatePrepareFailureTouchesNothing(t *testing.T) {
	te := newEnv(t)
	ft := te.importRole(t, "g", "pw-prep")
	ft.SetGenerateError(errTest)
	out, err := te.e.Rotate(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if out.Success || out.FailedStep != StepPrepare || out.Result != OutcomeFailed || out.RolledBack {
		t.Fatalf("outcome = %+v", out)
	}
	if ft.Applies() != 0 || te.pendingRec(t, "g") != nil {
		t.Fatal("a failed prepare touched the target or left a pending record")
	}
	if st := te.state(t, "g"); st.ConsecutiveFailures != 1 {
		t.Fatalf("state = %+v", st)
	}
}

func TestFailureCountingAndFailing(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	cfg := te.e.Config()
	cfg.MaxFailures = 3
	cfg.RetryBase = 10 * time.Second
	cfg.RetryMax = 40 * time.Second
	if err := te.e.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ft := te.importRole(t, "f", "pw-failing")
	role, _ := te.e.loadRole(ctx, "f")

	scheduled := func() *Outcome {
		t.Helper()
		out, err := te.e.rotate(ctx, "f", rotateRequest{trigger: TriggerSchedule})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := 1; i <= 3; i++ {
		ft.ScriptApply(applyFailBefore)
		te.clock.Advance(time.Minute)
		if out := scheduled(); out.Success {
			t.Fatal("rotation succeeded")
		}
		st := te.state(t, "f")
		if st.ConsecutiveFailures != i {
			t.Fatalf("failures = %d, want %d", st.ConsecutiveFailures, i)
		}
		if i < 3 {
			if st.Failing || !role.NextRotation(st, te.clock.Now()).Equal(st.RetryAt) || st.RetryAt.IsZero() {
				t.Fatalf("after %d failures: %+v", i, st)
			}
			d := cfg.RetryBase << (i - 1)
			if lo, hi := te.clock.Now().Add(d/2), te.clock.Now().Add(d); st.RetryAt.Before(lo) || st.RetryAt.After(hi) {
				t.Fatalf("RetryAt %v outside [%v, %v]", st.RetryAt, lo, hi)
			}
		} else {
			if !st.Failing || !role.NextRotation(st, te.clock.Now()).IsZero() || role.IsDue(st, te.clock.Now().Add(1000*time.Hour)) {
				t.Fatalf("after %d failures the role is not parked: %+v", i, st)
			}
			if !te.e.queue.queued("f").IsZero() {
				t.Fatal("a failing role is still scheduled")
			}
			v, _ := te.e.ReadRole(ctx, "f")
			if !v.Failing || v.ConsecutiveFailures != 3 || !v.NextRotation.IsZero() {
				t.Fatalf("role view = %+v", v)
			}
		}
	}

	// A manual rotation that succeeds clears Failing.
	out, err := te.e.Rotate(ctx, "f")
	if err != nil || !out.Success {
		t.Fatalf("manual rotate: %v %+v", err, out)
	}
	st := te.state(t, "f")
	if st.Failing || st.ConsecutiveFailures != 0 || !st.RetryAt.IsZero() {
		t.Fatalf("after a manual rotation: %+v", st)
	}
	if got := te.e.queue.queued("f"); !got.Equal(te.clock.Now().Add(time.Hour)) {
		t.Fatalf("not rescheduled: %v", got)
	}

	// Park it again, then a role write clears Failing.
	for i := 0; i < 3; i++ {
		ft.ScriptApply(applyFailBefore)
		scheduled()
	}
	if st := te.state(t, "f"); !st.Failing {
		t.Fatal("not failing again")
	}
	if _, err := te.e.WriteRole(ctx, "f", RoleInput{AutoRotate: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	st = te.state(t, "f")
	if st.Failing || st.ConsecutiveFailures != 0 || !st.RetryAt.IsZero() {
		t.Fatalf("after a role write: %+v", st)
	}
	if te.e.queue.queued("f").IsZero() {
		t.Fatal("a role write did not put the role back on the schedule")
	}
}

func TestScheduledRotationSkipsWhenNotDue(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "n", "pw-notdue")
	out, err := te.e.rotate(ctx, "n", rotateRequest{trigger: TriggerSchedule, ifDue: true})
	if err != nil || !out.Skipped {
		t.Fatalf("outcome = %+v, %v; want skipped", out, err)
	}
	if ft.Applies() != 0 || len(te.history(t, "n")) != 0 {
		t.Fatal("a not-due role was rotated")
	}
	te.clock.Advance(time.Hour)
	out, err = te.e.rotate(ctx, "n", rotateRequest{trigger: TriggerSchedule, ifDue: true})
	if err != nil || !out.Success || out.Trigger != TriggerSchedule {
		t.Fatalf("due rotation = %+v, %v", out, err)
	}
}

func TestRollback(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "r", "pw-rollback-1")
	for i := 0; i < 2; i++ {
		if out, err := te.e.Rotate(ctx, "r"); err != nil || !out.Success {
			t.Fatalf("rotate: %v %+v", err, out)
		}
	}
	st := te.state(t, "r")
	v1, v2 := st.Version(1).Secret, st.Version(2).Secret

	// Default: the previous version becomes a new current version.
	out, err := te.e.Rollback(ctx, "r", 0)
	if err != nil || !out.Success || out.Trigger != TriggerRollback || out.NewVersion != 4 || out.OldVersion != 3 {
		t.Fatalf("rollback = %+v, %v", out, err)
	}
	st = te.state(t, "r")
	if cur := st.Current(); cur.Number != 4 || !cur.Secret.Equal(v2) || cur.Trigger != TriggerRollback {
		t.Fatalf("current = %+v, want version 4 holding version 2's value", cur)
	}
	if !ft.Live().Equal(v2) {
		t.Fatal("the target does not hold the rolled-back value")
	}
	if h := te.history(t, "r"); h[0].Trigger != TriggerRollback || h[0].Outcome != OutcomeSuccess {
		t.Fatalf("history = %+v", h[0])
	}

	// An explicit version.
	out, err = te.e.Rollback(ctx, "r", 1)
	if err != nil || !out.Success || out.NewVersion != 5 {
		t.Fatalf("rollback to 1 = %+v, %v", out, err)
	}
	if cur := te.state(t, "r").Current(); !cur.Secret.Equal(v1) || !ft.Live().Equal(v1) {
		t.Fatalf("current = %+v", cur)
	}

	_, err = te.e.Rollback(ctx, "r", 5)
	wantUserError(t, err, "version: 5 is already the current version")
	_, err = te.e.Rollback(ctx, "r", 42)
	wantUserError(t, err, "version: 42 is not a kept version")
	if _, err := te.e.Rollback(ctx, "missing", 0); err != ErrRoleNotFound {
		t.Fatalf("Rollback(missing) err = %v", err)
	}

	te.importRole(t, "one", "pw-only-one")
	_, err = te.e.Rollback(ctx, "one", 0)
	wantUserError(t, err, "no previous version")
}

func TestRollbackFailureKeepsCurrent(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "r", "pw-rbf-1")
	te.e.Rotate(ctx, "r")
	cur := te.state(t, "r").Current().Secret
	ft.ScriptApply(applyFailBefore)
	out, err := te.e.Rollback(ctx, "r", 1)
	if err != nil || out.Success || out.Result != OutcomeFailed || out.RolledBack {
		t.Fatalf("rollback = %+v, %v", out, err)
	}
	if st := te.state(t, "r"); st.Current().Number != 2 || !ft.Live().Equal(cur) {
		t.Fatalf("a failed rollback changed the current value: %+v", st.Current())
	}
}

func TestPerRoleLock(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "l", "pw-lock")
	g := &gauge{}
	gate := make(chan struct{})
	ft.SetApplyGate(gate, g)

	done := make(chan *Outcome, 2)
	go func() { out, _ := te.e.Rotate(ctx, "l"); done <- out }()
	eventually(t, "the first rotation to reach apply", func() bool { return g.Cur.Load() == 1 })

	// Recovery does not touch a pending record that a running rotation owns.
	te.e.recoverRole(ctx, "l")
	if te.pendingRec(t, "l") == nil {
		t.Fatal("recovery resolved the pending record of a running rotation")
	}

	go func() { out, _ := te.e.Rotate(ctx, "l"); done <- out }()
	// Give the second rotation a chance to (wrongly) reach apply.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
		if g.Cur.Load() > 1 {
			t.Fatal("two rotations of one role in apply at once")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	for i := 0; i < 2; i++ {
		if out := <-done; out == nil || !out.Success {
			t.Fatalf("rotation %d = %+v", i, out)
		}
	}
	if g.Max.Load() != 1 {
		t.Fatalf("max concurrent applies = %d", g.Max.Load())
	}
	if st := te.state(t, "l"); st.Current().Number != 3 {
		t.Fatalf("current version %d, want 3", st.Current().Number)
	}
}

func TestBackoff(t *testing.T) {
	cfg := Config{RetryBase: 10 * time.Second, RetryMax: 5 * time.Minute}
	for n := 1; n <= 70; n++ {
		d := cfg.RetryBase
		for i := 1; i < n && d < cfg.RetryMax; i++ {
			d *= 2
		}
		if d > cfg.RetryMax {
			d = cfg.RetryMax
		}
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			b := backoff(cfg, n)
			if b < d/2 || b > d {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, b, d/2, d)
			}
			if b > cfg.RetryMax {
				t.Fatalf("backoff(%d) = %v above retry_max", n, b)
			}
			seen[b] = true
		}
		if len(seen) < 2 {
			t.Fatalf("backoff(%d) has no jitter: always %v", n, seen)
		}
	}
	// Spot values: doubling from the base.
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 5 * time.Minute} {
		for i := 0; i < 50; i++ {
			if b := backoff(cfg, n); b < want/2 || b > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, b, want/2, want)
			}
		}
	}
	// A tiny base does not panic.
	if b := backoff(Config{RetryBase: 1, RetryMax: 1}, 3); b > 1 {
		t.Fatalf("backoff = %v", b)
	}
}

func TestRedacted(t *testing.T) {
	s := rotators.Secret{"username": "app_user", "password": "hunter2-secret", "pin": "123"}
	msg := `login "app_user" with password hunter2-secret failed (again: hunter2-secret)`
	got := redacted(msg, s)
	if strings.Contains(got, "hunter2-secret") {
		t.Fatalf("password kept: %s", got)
	}
	if !strings.Contains(got, "app_user") || !strings.Contains(got, "[redacted]") {
		t.Fatalf("redacted too much or marked nothing: %s", got)
	}
	// Several secrets; nil ones are ignored.
	other := rotators.Secret{"username": "app_user", "password": "second-value"}
	got = redacted("a hunter2-secret b second-value", s, nil, other)
	if got != "a [redacted] b [redacted]" {
		t.Fatalf("got %q", got)
	}
	if got := redacted("nothing here", s); got != "nothing here" {
		t.Fatalf("got %q", got)
	}
}

// TestNoSecretInRecords drives every failure path whose target errors carry the secret values
// and checks that no value reaches an outcome, the history, the stored state or the log.
func TestNoSecretInRecords(t *testing.T) {
	const generated = "GENERATED-secret-value-0001"
	cases := []struct {
		name string
		run  func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome
	}{
		{"apply fails", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.ScriptApply(applyFailBefore)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
		{"apply fails after change", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.ScriptApply(applyFailAfter)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
		{"verify rejects", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.ScriptVerify(verifyReject)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
		{"restore impossible", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.ScriptApply(applyFailAfter, applyUnreachable)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
		{"target down", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.SetDown(true)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
		{"recovery: new rejected, old live", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			te.putPending(t, "x", &Pending{Old: secretOf("pw-old-secret"), New: secretOf(generated), OldVersion: 1, NewVersion: 2, Trigger: TriggerSchedule})
			te.e.recoverRole(context.Background(), "x")
			return nil
		}},
		{"recovery: both rejected", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			ft.SetLive(secretOf("someone-else-changed-it"))
			te.putPending(t, "x", &Pending{Old: secretOf("pw-old-secret"), New: secretOf(generated), OldVersion: 1, NewVersion: 2, Trigger: TriggerSchedule})
			recoverUntilParked(t, te, "x")
			return nil
		}},
		{"recovery: unreachable, then a rotation", func(t *testing.T, te *testEnv, ft *faultTarget) []*Outcome {
			te.putPending(t, "x", &Pending{Old: secretOf("pw-old-secret"), New: secretOf(generated), OldVersion: 1, NewVersion: 2, Trigger: TriggerSchedule})
			ft.ScriptVerify(verifyUnreachable)
			out, _ := te.e.Rotate(context.Background(), "x")
			return []*Outcome{out}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t, func(s *logical.StaticSystemView) {
				s.SetPasswordPolicy("gen", func() (string, error) { return generated, nil })
			})
			ft := te.importRole(t, "x", "pw-old-secret", func(in *RoleInput) { in.PasswordPolicy = ptr("gen") })
			outs := tc.run(t, te, ft)

			var texts []string
			for _, out := range outs {
				if out == nil || out.Success {
					t.Fatalf("outcome = %+v, want a failure", out)
				}
				b, _ := json.Marshal(out)
				texts = append(texts, "outcome: "+string(b))
			}
			h := te.history(t, "x")
			if len(h) == 0 {
				t.Fatal("nothing recorded")
			}
			b, _ := json.Marshal(h)
			texts = append(texts, "history: "+string(b))
			st := te.state(t, "x")
			texts = append(texts, "state error: "+st.LastError)
			texts = append(texts, "log: "+te.logs.String())
			for _, text := range texts {
				for _, secret := range []string{generated, "pw-old-secret"} {
					if strings.Contains(text, secret) {
						t.Errorf("a secret value leaked into the %s", text)
					}
				}
			}
			for _, out := range outs {
				if out.Error == "" || out.FailedStep == "" {
					t.Errorf("outcome lost its error: %+v", out)
				}
			}
		})
	}
}

func TestHistoryLimit(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	cfg := te.e.Config()
	cfg.HistoryLimit = 3
	if err := te.e.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	te.importRole(t, "h", "pw-hist")
	for i := 0; i < 5; i++ {
		te.e.Rotate(ctx, "h")
	}
	h := te.history(t, "h")
	if len(h) != 3 || h[0].VersionAfter != 6 || h[2].VersionAfter != 4 {
		t.Fatalf("history = %+v", h)
	}
}

func TestConfig(t *testing.T) {
	good := DefaultConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod     func(*Config)
		mention string
	}{
		{func(c *Config) { c.MaxParallel = 0 }, "max_parallel:"},
		{func(c *Config) { c.MaxParallel = 257 }, "max_parallel:"},
		{func(c *Config) { c.HistoryLimit = 0 }, "history_limit:"},
		{func(c *Config) { c.HistoryLimit = 10001 }, "history_limit:"},
		{func(c *Config) { c.RetryBase = 0 }, "retry_base:"},
		{func(c *Config) { c.RetryMax = c.RetryBase - 1 }, "retry_max:"},
		{func(c *Config) { c.MaxFailures = 0 }, "max_failures:"},
	} {
		c := good
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.mention) {
			t.Errorf("Validate(%+v) = %v, want %q", c, err, tc.mention)
		}
	}

	te := newEnv(t)
	ctx := context.Background()
	bad := good
	bad.MaxParallel = 0
	wantUserError(t, te.e.SetConfig(ctx, bad), "max_parallel")
	if !reflect.DeepEqual(te.e.Config(), good) {
		t.Fatal("an invalid config was applied")
	}
	c := good
	c.MaxParallel, c.HistoryLimit, c.RetryBase, c.RetryMax, c.MaxFailures = 7, 9, time.Second, time.Minute, 2
	if err := te.e.SetConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(te.e.Config(), c) {
		t.Fatalf("config = %+v", te.e.Config())
	}
	// A restarted engine loads it.
	te2 := newEnvOn(t, te.storage, te.clock)
	if !reflect.DeepEqual(te2.e.Config(), c) {
		t.Fatalf("reloaded config = %+v, want %+v", te2.e.Config(), c)
	}
}

// Error texts are bounded wherever they are kept: a target that answers with a huge message
// cannot grow the role's state or history.
func TestErrorTextIsCapped(t *testing.T) {
	te := newEnv(t)
	ft := te.importRole(t, "e", "pw-cap-old")
	ft.SetGenerateError(errors.New(strings.Repeat("é", 10000)))
	out, err := te.e.Rotate(context.Background(), "e")
	if err != nil {
		t.Fatal(err)
	}
	st := te.state(t, "e")
	h := te.history(t, "e")
	for what, text := range map[string]string{"outcome": out.Error, "state": st.LastError, "history": h[0].Error, "step": h[0].Steps[0].Error} {
		if len(text) > maxErrorText+len(" [cut]") || !strings.HasSuffix(text, "[cut]") || !utf8.ValidString(text) {
			t.Errorf("%s error: %d bytes, valid UTF-8 %v", what, len(text), utf8.ValidString(text))
		}
	}
}
