package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Trigger says what started a rotation.
type Trigger string

const (
	TriggerManual   Trigger = "manual"
	TriggerSchedule Trigger = "schedule"
	TriggerRollback Trigger = "rollback"
	TriggerRecovery Trigger = "recovery"
	TriggerCreate   Trigger = "create"
	TriggerImport   Trigger = "import"
)

// Outcome names, as history and the role read show them.
const (
	OutcomeSuccess = "success"
	// OutcomeFailed: the rotation failed and the old value is live at the target.
	OutcomeFailed = "failed"
	// OutcomeUnresolved: the rotation failed and it is not known which value is live; both are
	// kept in the pending record until recovery can tell.
	OutcomeUnresolved = "unresolved"
)

// Step names.
const (
	StepRecover = "recover"
	StepPrepare = "prepare"
	StepApply   = "apply"
	StepVerify  = "verify"
	StepDeploy  = "deploy"
	StepPromote = "promote"
	StepRestore = "restore"
	// StepRedeploy restarts the consumers again after the old value was restored.
	StepRedeploy = "redeploy"
	// StepFinish is a kind's remaining work when recovery rolls a rotation forward.
	StepFinish = "finish"
)

// StepResult is one protocol step's timing and error.
type StepResult struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
}

// Outcome is what one rotation did. The caller decides what to tell the user; the protocol
// has already recorded it.
type Outcome struct {
	Role       string       `json:"role"`
	Trigger    Trigger      `json:"trigger"`
	Success    bool         `json:"success"`
	Result     string       `json:"outcome"`
	OldVersion int          `json:"version_before"`
	NewVersion int          `json:"version"`
	Steps      []StepResult `json:"steps"`
	FailedStep string       `json:"failed_step,omitempty"`
	Error      string       `json:"error,omitempty"`
	RolledBack bool         `json:"rolled_back"`
	// Consumers and Health are the deploy results, in order; Phase tells the deploy of the new
	// value from the redeploy after a rollback.
	Consumers []ConsumerResult `json:"consumers,omitempty"`
	Health    []HealthResult   `json:"health_checks,omitempty"`
	// Forgotten are the sessions the look after the deploy found (README "Finding forgotten
	// services"); Warnings say what that look could not do. Neither fails a rotation unless
	// the role sets strict_consumers.
	Forgotten []ForgottenConsumer `json:"possible_forgotten_consumers,omitempty"`
	Warnings  []string            `json:"warnings,omitempty"`
	Skipped   bool                `json:"-"`
}

// ConsumerResult is one container restart of a deploy phase.
type ConsumerResult struct {
	Phase string `json:"phase"`
	consumers.Restart
}

// HealthResult is one health check of a deploy phase.
type HealthResult struct {
	Phase string `json:"phase"`
	consumers.HealthResult
}

type rotateRequest struct {
	trigger  Trigger
	value    rotators.Secret // apply this value instead of a generated one (rollback)
	supplied *string         // a new value supplied by the operator (rotate/NAME value=...)
	ifDue    bool            // scheduled: do nothing unless the role is still due
}

// run is the state of one rotation while the role's lock is held.
type run struct {
	role   *Role
	state  *State
	target rotators.Target
	env    rotators.Env
	deploy *deployment
	out    *Outcome
	// secrets are the old and new value once prepared: every error text is redacted of them.
	secrets []rotators.Secret
	// by is who asked for a manual rotation (empty for scheduled work).
	by Requester
	// leaveWindow ends the stretch during which creds waits for the outcome instead of handing
	// out a value that may just have died (between apply and promote, and during a restore);
	// nil when no window is open.
	leaveWindow func()
	windows     *applyWindows
}

// openWindow makes creds reads of the role wait until closeWindow (no-op when one is open).
func (r *run) openWindow() {
	if r.leaveWindow == nil {
		r.leaveWindow = r.windows.enter(r.role.Name)
	}
}

// closeWindow ends the run's window, if it has one open.
func (r *run) closeWindow() {
	if r.leaveWindow != nil {
		r.leaveWindow()
		r.leaveWindow = nil
	}
}

// redact removes the run's secret values from every error of its outcome.
func (r *run) redact() {
	out := r.out
	out.Error = capped(redacted(out.Error, r.secrets...))
	for i := range out.Steps {
		out.Steps[i].Error = capped(redacted(out.Steps[i].Error, r.secrets...))
	}
	for i := range out.Consumers {
		out.Consumers[i].Error = capped(redacted(out.Consumers[i].Error, r.secrets...))
	}
	for i := range out.Health {
		out.Health[i].Error = capped(redacted(out.Health[i].Error, r.secrets...))
	}
	for i := range out.Warnings {
		out.Warnings[i] = capped(redacted(out.Warnings[i], r.secrets...))
	}
}

// step runs fn and records its duration and error.
func (r *run) step(name string, fn func() error) error {
	start := time.Now()
	err := fn()
	res := StepResult{Name: name, Duration: time.Since(start)}
	if err != nil {
		res.Error = err.Error()
	}
	r.out.Steps = append(r.out.Steps, res)
	return err
}

// rotate is the one rotation protocol (README "How a rotation runs") for every trigger. It
// returns an error only when it could not start (no such role, storage failure); a failed
// rotation is an Outcome, already recorded.
func (e *Engine) rotate(ctx context.Context, name string, rq rotateRequest) (*Outcome, error) {
	if !e.writeSafe() {
		// A read-only node (performance standby, secondary): Vault forwards on this error.
		return nil, logical.ErrReadOnly
	}
	unlock := e.locks.lock(name)
	defer unlock()
	return e.rotateLocked(ctx, name, rq)
}

// rotateLocked is rotate for a caller that holds the role's lock.
func (e *Engine) rotateLocked(ctx context.Context, name string, rq rotateRequest) (*Outcome, error) {
	if !e.flights.start() {
		return nil, errShuttingDown
	}
	defer e.flights.done()
	// Closing the engine cancels the rotation's calls to the target too; what it records still
	// reaches storage (engineStorage ignores cancellation), so an interrupted change is an unknown
	// outcome with its settle time, never a lost one.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		e.queue.set(name, time.Time{})
		return nil, ErrRoleNotFound
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, err
	}
	if rq.ifDue && !role.AutoRotate {
		e.remindIfDue(ctx, role, st)
		return &Outcome{Role: name, Skipped: true}, nil
	}
	if rq.ifDue && !role.IsDue(st, e.now()) {
		e.reschedule(role, st)
		return &Outcome{Role: name, Skipped: true}, nil
	}
	if rq.supplied != nil {
		// A bad supplied value is the caller's mistake, not a failed rotation: refuse it
		// before anything is recorded.
		if rq.value, err = supplied(role, st, *rq.supplied); err != nil {
			return nil, err
		}
	}
	if rq.trigger == TriggerManual || rq.trigger == TriggerRollback {
		st.Failing = false // rotated by hand: the schedule may try again
	}
	r := &run{role: role, state: st, out: &Outcome{Role: name, Trigger: rq.trigger}, by: requesterFrom(ctx), windows: &e.windows}
	if cur := st.Current(); cur != nil {
		r.out.OldVersion = cur.Number
	}

	// A pending record left by an interrupted rotation is resolved before a new one starts. The
	// in-memory set (loaded at start, kept with every write) spares a storage read when there is none.
	if e.pending.has(name) {
		p, err := e.loadPending(ctx, name)
		if err != nil {
			return nil, err
		}
		if p != nil {
			if out := e.recoverFirst(ctx, r, p); out != nil {
				return out, nil
			}
		}
	}

	if err := e.bind(ctx, r); err != nil {
		r.out.Steps = append(r.out.Steps, StepResult{Name: StepPrepare, Error: err.Error()})
		return e.fail(ctx, r, StepPrepare, nil), nil
	}

	var p *Pending
	if err := r.step(StepPrepare, func() error {
		// The operator may have narrowed the allow-lists since the role was written: a new
		// rotation is refused before anything is touched. (A pending record's deploy, resolved
		// above, was decided under the lists of its own start.)
		if err := e.Config().checkDeploy(r.role); err != nil {
			return fmt.Errorf("refused before the target was touched: %w", err)
		}
		// A missing consumer ("forgot a service", a typo) fails here, before the target is touched.
		if err := r.deploy.check(ctx); err != nil {
			return err
		}
		// A consumer with the value written into its definition ("secret hardcoded") cannot
		// take a new one by restarting: refused here too.
		if err := e.refuseHardcoded(ctx, r); err != nil {
			return err
		}
		p, err = e.prepare(ctx, r, rq)
		return err
	}); err != nil {
		return e.fail(ctx, r, StepPrepare, nil), nil
	}
	failpoint.Inject(failpoint.AfterPrepare)
	return e.applyAndFinish(ctx, r, p), nil
}

// applyAndFinish changes the target and carries the rotation to its end. From the moment the
// change may have been sent, every failure keeps both values until the target says which one
// it holds.
func (e *Engine) applyAndFinish(ctx context.Context, r *run, p *Pending) *Outcome {
	r.openWindow()
	defer r.closeWindow()

	err := r.step(StepApply, func() error {
		actx, cancel := context.WithTimeout(ctx, applyBound(r.target))
		defer cancel()
		return r.target.Apply(actx, r.env, p.Old, p.New)
	})
	switch {
	case errors.Is(err, rotators.ErrNotApplied):
		// The target answered that it did not change: nothing to put back.
		return e.notApplied(ctx, r, p)
	case err != nil:
		return e.unknown(ctx, r, p, StepApply)
	}
	// The applied phase is stored while the new value is verified: verifying changes nothing at
	// the target, so the record need not precede it, and the write costs the rotation no time
	// (docs/benchmarks.md §1). Nothing reads or changes p until the write has answered.
	applied := make(chan error, 1)
	go func() { applied <- e.enter(ctx, r.role.Name, p, PhaseApplied) }()
	verified := r.step(StepVerify, func() error {
		// A stop here finds the record either applying or applied: recovery resolves both.
		failpoint.Inject(failpoint.AfterApply)
		return e.verify(ctx, r, p.New)
	})
	if err := <-applied; err != nil {
		// The record still says applying, which recovery resolves by asking the target.
		e.logger.Warn("record the applied phase", "role", r.role.Name, "error", err)
	}

	if err := verified; err != nil {
		if p.Old == nil {
			// A first value the target acknowledged is live there, even if it does not log in
			// through this role's settings: it is the only value, so it is kept.
			return e.keepUnverifiedFirst(ctx, r, p)
		}
		return e.fail(ctx, r, StepVerify, p)
	}
	failpoint.Inject(failpoint.AfterVerify)
	return e.finish(ctx, r, p)
}

// verify runs the target's Verify under its bound.
func (e *Engine) verify(ctx context.Context, r *run, s rotators.Secret) error {
	vctx, cancel := context.WithTimeout(ctx, verifyBound(r.target))
	defer cancel()
	return r.target.Verify(vctx, r.env, s)
}

// finish deploys a value that is live at the target to its consumers and promotes it. The
// rotation and the roll-forward of recovery both end here.
func (e *Engine) finish(ctx context.Context, r *run, p *Pending) *Outcome {
	if !r.deploy.empty() {
		// Stage the new value: consumers read creds when they start, and must get the new one.
		if p.Phase != PhaseDeploying {
			p.Deployed = true
			if err := e.enter(ctx, r.role.Name, p, PhaseDeploying); err != nil {
				p.Deployed = false // no consumer was restarted
				r.out.Steps = append(r.out.Steps, StepResult{Name: StepDeploy, Error: err.Error()})
				return e.fail(ctx, r, StepDeploy, p)
			}
		}
		r.closeWindow() // creds now hands out the staged value
		if err := r.step(StepDeploy, func() error {
			if err := e.runDeploy(ctx, r, StepDeploy); err != nil {
				return err
			}
			// Every consumer restarted and is healthy: is anyone else still on the old value?
			return e.lookAgain(ctx, r, p)
		}); err != nil {
			// A first value has nothing to roll back to: it works at the target, so it stays.
			if r.role.RollbackOnFailure() && p.Old != nil {
				return e.fail(ctx, r, StepDeploy, p)
			}
			return e.keepFailedDeploy(ctx, r, p)
		}
	}
	if err := e.promoteStep(ctx, r, p); err != nil {
		// The new value is live and still held by the pending record; recovery promotes it.
		return e.promoteFailedUnresolved(ctx, r, err)
	}
	return r.out
}

// promoteFailedUnresolved records a promotion that could not be written: the new value is live
// and kept in the pending record, which recovery promotes.
func (e *Engine) promoteFailedUnresolved(ctx context.Context, r *run, err error) *Outcome {
	r.out.Success = false
	r.out.Result = OutcomeUnresolved
	r.out.FailedStep = StepPromote
	r.out.Error = err.Error()
	r.redact()
	e.record(ctx, r) // best effort: storage may be what failed
	return r.out
}

// keepFailedDeploy is rollback_on_failure=false: the new value stays current although the
// consumers did not come back healthy, and the rotation is recorded as failed.
func (e *Engine) keepFailedDeploy(ctx context.Context, r *run, p *Pending) *Outcome {
	return e.promoteFailed(ctx, r, p, StepDeploy)
}

// keepUnverifiedFirst promotes a first value the target acknowledged but that does not verify
// (a typo in connection_url, say): it is live at the target and there is no other, so Vault
// must hold it. The rotation is recorded as failed at verify, so the operator fixes the role.
func (e *Engine) keepUnverifiedFirst(ctx context.Context, r *run, p *Pending) *Outcome {
	r.out.Steps = append(r.out.Steps, StepResult{Name: StepRestore,
		Error: "no earlier value to put back: the target acknowledged the new one, so it is kept as the current value"})
	return e.promoteFailed(ctx, r, p, StepVerify)
}

// promoteFailed promotes a value that is live at the target although a later step failed.
func (e *Engine) promoteFailed(ctx context.Context, r *run, p *Pending, failed string) *Outcome {
	r.closeWindow()
	if err := r.step(StepPromote, func() error { return e.promote(ctx, r, p) }); err != nil {
		return e.promoteFailedUnresolved(ctx, r, err)
	}
	r.out.Success = false
	r.out.Result = OutcomeFailed
	r.out.FailedStep = failed
	r.out.Error = stepErrors(r.out.Steps)
	r.redact()
	e.countFailure(ctx, r)
	return r.out
}

// recoverFirst resolves an earlier pending record inside a new rotation; it returns the failed
// outcome when the record stays unresolved, nil when the rotation may go on.
func (e *Engine) recoverFirst(ctx context.Context, r *run, p *Pending) *Outcome {
	var res recoveryResult
	_ = r.step(StepRecover, func() error {
		res = e.resolvePending(ctx, r.role, r.state, p, true)
		if !res.resolved {
			return fmt.Errorf("an earlier rotation is unresolved: %s", res.detail)
		}
		return nil
	})
	if !res.resolved {
		return e.fail(ctx, r, StepRecover, nil)
	}
	if cur := r.state.Current(); cur != nil {
		r.out.OldVersion = cur.Number
	}
	return nil
}

// bind validates the stored role against its kind and lends the rotator what it needs.
func (e *Engine) bind(ctx context.Context, r *run) error {
	kind, err := r.role.Kind()
	if err != nil {
		return err
	}
	if r.target, err = kind.Bind(r.role.Settings); err != nil {
		return err
	}
	if r.deploy, err = e.newDeployment(r.role); err != nil {
		return err
	}
	r.env, err = e.env(ctx, r.role, kind)
	return err
}

// env builds the rotator's environment: the password generator and the linked roles.
func (e *Engine) env(ctx context.Context, role *Role, kind rotators.Kind) (rotators.Env, error) {
	env := rotators.Env{Password: e.passwordGenerator(role.PasswordPolicy), HasPolicy: role.PasswordPolicy != "", Resources: e.resources}
	for _, f := range kind.Fields() {
		ref := role.Settings.String(f.Name)
		if f.Kind != rotators.FieldRoleRef || ref == "" {
			continue
		}
		linked, err := e.loadRole(ctx, ref)
		if err != nil {
			return env, err
		}
		if linked == nil {
			return env, fmt.Errorf("%s: role %q no longer exists", f.Name, ref)
		}
		lst, err := e.loadState(ctx, ref)
		if err != nil {
			return env, err
		}
		l := rotators.Linked{Name: ref, Settings: linked.Settings}
		if cur := lst.Current(); cur != nil {
			l.Current = cur.Secret
		}
		if env.Linked == nil {
			env.Linked = map[string]rotators.Linked{}
		}
		env.Linked[f.Name] = l
	}
	return env, nil
}

// prepare picks the new value and stores the pending record before the target is touched.
func (e *Engine) prepare(ctx context.Context, r *run, rq rotateRequest) (*Pending, error) {
	var old rotators.Secret
	next := 1
	if cur := r.state.Current(); cur != nil {
		old = cur.Secret
		next = cur.Number + 1
	}
	newValue := rq.value.Clone()
	if newValue == nil {
		var err error
		if newValue, err = r.target.Generate(ctx, r.env, old); err != nil {
			return nil, err
		}
	}
	p := &Pending{Old: old, New: newValue, OldVersion: next - 1, NewVersion: next, Trigger: rq.trigger,
		Phase: PhaseApplying, Started: e.now(), Displaced: displaced(r.target, r.state, old, newValue)}
	r.secrets = []rotators.Secret{old, newValue, p.Displaced}
	if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
		return nil, err
	}
	e.pending.add(r.role.Name)
	return p, nil
}

// displaced is the kept value that applying next overwrites when it is not old: with several
// accounts (alternating logins), the newest kept value of next's account.
func displaced(t rotators.Target, st *State, old, next rotators.Secret) rotators.Secret {
	acc, ok := t.(rotators.Accounts)
	if !ok || old == nil || acc.Account(old) == acc.Account(next) {
		return nil
	}
	for _, v := range st.Versions {
		if acc.Account(v.Secret) == acc.Account(next) {
			return v.Secret.Clone()
		}
	}
	return nil
}

// promote makes the pending value the current version and records the success. It is
// idempotent, so that recovery can finish a promotion that was cut short.
func (e *Engine) promote(ctx context.Context, r *run, p *Pending) error {
	now := e.now()
	st := r.state
	if cur := st.Current(); cur == nil || cur.Number < p.NewVersion {
		st.push(Version{Number: p.NewVersion, Created: now, Trigger: p.Trigger, Secret: p.New}, r.role.VersionsKept)
	}
	st.LastRotated = now
	st.LastOutcome = OutcomeSuccess
	st.LastError = ""
	st.ConsecutiveFailures = 0
	st.Failing = false
	st.RetryAt = time.Time{}
	if err := putJSON(ctx, e.storage, statePrefix+r.role.Name, st); err != nil {
		return err
	}
	r.closeWindow() // creds reads the new current version from here on
	failpoint.Inject(failpoint.AfterStateWrite)
	if err := e.dropRecord(ctx, r.role.Name); err != nil {
		return err
	}
	r.out.Success = true
	r.out.Result = OutcomeSuccess
	r.out.NewVersion = p.NewVersion
	e.reschedule(r.role, st)
	e.logger.Info("rotated", "role", r.role.Name, "type", r.role.Type, "trigger", string(r.out.Trigger), "version", p.NewVersion)
	return nil
}

// dropRecord deletes the role's pending record: the rotation it held is over.
func (e *Engine) dropRecord(ctx context.Context, name string) error {
	if err := deleteKey(ctx, e.storage, pendingPrefix+name); err != nil {
		return err
	}
	e.pending.remove(name)
	e.jobRoleResolved(ctx, name) // an interrupted rotate-many job reports where the role ended
	return nil
}

// promoteStep runs promote as a timed step and records the run once the step is complete.
func (e *Engine) promoteStep(ctx context.Context, r *run, p *Pending) error {
	err := r.step(StepPromote, func() error { return e.promote(ctx, r, p) })
	if err == nil {
		e.record(ctx, r)
	}
	return err
}

// notApplied ends a rotation whose change the target refused: the old value is live, nothing
// was changed, so the record goes.
func (e *Engine) notApplied(ctx context.Context, r *run, p *Pending) *Outcome {
	out := r.out
	out.FailedStep = StepApply
	out.Result = OutcomeFailed
	if err := e.dropRecord(ctx, r.role.Name); err != nil {
		e.logger.Error("drop the pending record of a change the target refused", "role", r.role.Name, "error", err)
		out.Result = OutcomeUnresolved
	}
	return e.endFailed(ctx, r)
}

// endFailed closes a failed run: creds stops waiting for it, its error is the steps' errors
// (redacted, capped), and the failure is counted and recorded.
func (e *Engine) endFailed(ctx context.Context, r *run) *Outcome {
	r.closeWindow()
	r.out.Error = stepErrors(r.out.Steps)
	r.redact()
	e.countFailure(ctx, r)
	return r.out
}

// unknown ends a rotation whose change may or may not have reached the target (a timeout, a
// lost connection): both values stay in the pending record, and recovery asks the target which
// one it holds once the target can no longer be changing.
func (e *Engine) unknown(ctx context.Context, r *run, p *Pending, step string) *Outcome {
	out := r.out
	out.FailedStep = step
	out.Result = OutcomeUnresolved
	p.SettleAt = e.now().Add(settleTime(r.target))
	if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
		e.logger.Error("record the settle time of an unknown outcome", "role", r.role.Name, "error", err)
	}
	e.recoverAt(r.role.Name, p.SettleAt)
	e.holdWindow(r) // creds waits for the answer recovery gets once the target settled
	out.Steps = append(out.Steps, StepResult{Name: StepRecover, Error: fmt.Sprintf(
		"the outcome is unknown: both values are kept, and the target is asked which one it holds after %s", p.SettleAt.Format(time.RFC3339))})
	return e.endFailed(ctx, r) // the held window is no longer the run's: closing is a no-op
}

// recoverAt queues the recovery of the role's record for when its target has settled; a later
// call for the same role replaces the earlier timer.
func (e *Engine) recoverAt(name string, at time.Time) {
	d := at.Sub(e.now())
	if d < 0 {
		d = 0
	}
	e.timersMu.Lock()
	defer e.timersMu.Unlock()
	if e.timers == nil {
		e.timers = map[string]*time.Timer{}
	}
	if t := e.timers[name]; t != nil {
		t.Stop()
	}
	e.timers[name] = time.AfterFunc(d, func() {
		e.timersMu.Lock()
		delete(e.timers, name)
		e.timersMu.Unlock()
		if e.ctx.Err() == nil {
			e.workers.submit(job{name: name, recover: true})
		}
	})
}

// fail handles a failure at step: put the old value back at the target when one was touched,
// then count the failure, back off, and record it. p is nil when the target was not touched.
func (e *Engine) fail(ctx context.Context, r *run, step string, p *Pending) *Outcome {
	out := r.out
	out.FailedStep = step
	out.Result = OutcomeFailed
	if step == StepRecover {
		// An earlier pending record is still unresolved: which value is live is not known.
		out.Result = OutcomeUnresolved
	}
	if p != nil && p.Old == nil {
		// A first value that may be live has nothing to roll back to: it stays in the record.
		out.Result = OutcomeUnresolved
	} else if p != nil {
		res := e.rollBack(ctx, r, p)
		out.RolledBack = res.rolledBack
		if !res.done {
			out.Result = OutcomeUnresolved
		}
	}
	return e.endFailed(ctx, r)
}

// rollBackResult says how far a rollback got.
type rollBackResult struct {
	done       bool // the old value is live and the record is gone
	rolledBack bool // something had to be put back (the target, or consumers)
}

// rollBack takes a rotation back from wherever it stands (a live failure or recovery in the
// restoring or redeploying phase): the old value at the target, then consumers on it, then the
// record deleted. When the target cannot be put back, the record stays in restoring.
func (e *Engine) rollBack(ctx context.Context, r *run, p *Pending) rollBackResult {
	name := r.role.Name
	var putBack bool
	if p.Phase != PhaseRedeploying {
		// While the old value is put back the target may hold either: creds waits for it.
		r.openWindow()
		// Nothing is put back unless the record says so in storage first (fence): an engine
		// that cannot write (its node lost the raft leadership, or is cut off) may act on a
		// record the new active node has already resolved and rotated past, and a restore
		// from that stale record would make a dead value live again. The record keeps both
		// values; whichever engine can write resolves it.
		if err := e.fenceRestore(ctx, name, p); err != nil {
			e.logger.Error("record the restoring phase; the target is left as it is, for recovery", "role", name, "error", err)
			r.out.Steps = append(r.out.Steps, StepResult{Name: StepRestore,
				Error: "not put back: the restoring phase could not be stored (" + err.Error() + "); both values are kept for recovery"})
			r.closeWindow()
			return rollBackResult{}
		}
		err := r.step(StepRestore, func() (err error) {
			if putBack, err = e.restore(ctx, r, p); err != nil {
				return err
			}
			// The kind's cleanup for the value that was not kept (ssh: the new key's lines).
			return e.finishFor(ctx, r, p.New, p.Old)
		})
		if err != nil {
			if !errors.Is(err, rotators.ErrNotApplied) && !errors.Is(err, rotators.ErrRejected) {
				// The restore's own change may still land: ask only once the target settled.
				p.SettleAt = e.now().Add(settleTime(r.target))
				if err := putJSON(ctx, e.storage, pendingPrefix+name, p); err != nil {
					e.logger.Error("record the settle time of a restore", "role", name, "error", err)
				}
				e.recoverAt(name, p.SettleAt)
				e.holdWindow(r)
			}
			r.closeWindow()
			return rollBackResult{}
		}
		failpoint.Inject(failpoint.InsideRestore)
		if p.Deployed {
			if err := e.enter(ctx, name, p, PhaseRedeploying); err != nil {
				e.logger.Error("record the redeploying phase", "role", name, "error", err)
			}
			failpoint.Inject(failpoint.BeforeRedeploy)
		}
		r.closeWindow() // the old value is live: consumers restarting now must get it at once
	}
	if p.Deployed {
		// The consumers were restarted with the new value: restart them again on the old one
		// and check that they are healthy. Their health does not change which value is live.
		_ = r.step(StepRedeploy, func() error { return e.runDeploy(ctx, r, StepRedeploy) })
	}
	if err := e.dropRecord(ctx, name); err != nil {
		r.out.Steps = append(r.out.Steps, StepResult{Name: StepRestore, Error: err.Error()})
		return rollBackResult{rolledBack: putBack || p.Deployed}
	}
	return rollBackResult{done: true, rolledBack: putBack || p.Deployed}
}

// fence stores the pending record again right before a change at the target that follows from
// it. A write that reaches storage proves that this engine still serves the mount: on a raft
// cluster, that its node is still the leader (a deposed leader cannot commit), so a node that
// lost the leadership while a rotation ran never changes the target from state that the new
// active node may already have resolved.
func (e *Engine) fence(ctx context.Context, name string, p *Pending) error {
	return putJSON(ctx, e.storage, pendingPrefix+name, p)
}

// fenceRestore moves the record to restoring, or stores it again when it is there already.
func (e *Engine) fenceRestore(ctx context.Context, name string, p *Pending) error {
	if p.Phase == PhaseRestoring {
		return e.fence(ctx, name, p)
	}
	return e.enter(ctx, name, p, PhaseRestoring)
}

// stepErrors joins the errors of the steps that failed, each named by its step.
func stepErrors(steps []StepResult) string {
	var msgs []string
	for _, s := range steps {
		if s.Error != "" {
			msgs = append(msgs, s.Name+": "+s.Error)
		}
	}
	return joinErrors(msgs...)
}

// countFailure counts a failed rotation, backs the schedule off, parks the role after
// max_failures, and records the run.
func (e *Engine) countFailure(ctx context.Context, r *run) {
	out := r.out
	st := r.state
	cfg := e.Config()
	if e.ctx.Err() != nil {
		// Cut short by the engine closing (a seal, a step-down, a reload), not by the target:
		// recorded, but not counted against the role.
		st.LastOutcome, st.LastError = out.Result, out.Error
		if err := putJSON(ctx, e.storage, statePrefix+r.role.Name, st); err != nil {
			e.logger.Error("record failure", "role", r.role.Name, "error", err)
		}
		e.record(ctx, r)
		return
	}
	st.ConsecutiveFailures++
	st.LastOutcome = out.Result
	st.LastError = out.Error
	st.RetryAt = e.now().Add(backoff(cfg, st.ConsecutiveFailures))
	if st.ConsecutiveFailures >= cfg.MaxFailures {
		st.Failing = true
		e.logger.Error("role parked as failing after repeated failures", "role", r.role.Name, "failures", st.ConsecutiveFailures)
	}
	if err := putJSON(ctx, e.storage, statePrefix+r.role.Name, st); err != nil {
		e.logger.Error("record failure", "role", r.role.Name, "error", err)
	}
	e.record(ctx, r)
	e.reschedule(r.role, st)
}

// restore makes the old value live again after a failed apply, verify or deploy, and the value
// the change displaced (alternating: the other login's previous password); putBack says whether
// the target had to be changed for it. It is idempotent: recovery runs it again after a crash.
func (e *Engine) restore(ctx context.Context, r *run, p *Pending) (putBack bool, err error) {
	for _, want := range []rotators.Secret{p.Old, p.Displaced} {
		if want == nil {
			continue
		}
		changed, err := e.putBack(ctx, r, p.New, want)
		if err != nil {
			return putBack, err
		}
		putBack = putBack || changed
	}
	return putBack, nil
}

// putBack makes want live at the target unless it already is.
func (e *Engine) putBack(ctx context.Context, r *run, from, want rotators.Secret) (bool, error) {
	if err := e.verify(ctx, r, want); err == nil {
		return false, nil // the target never changed, or kept this value
	}
	err := func() error {
		actx, cancel := context.WithTimeout(ctx, applyBound(r.target))
		defer cancel()
		env := r.env
		env.Restoring = true
		return r.target.Apply(actx, env, from, want)
	}()
	if err != nil {
		return false, fmt.Errorf("put the old value back: %w", err)
	}
	if err := e.verify(ctx, r, want); err != nil {
		return true, fmt.Errorf("old value after restore: %w", err)
	}
	return true, nil
}
