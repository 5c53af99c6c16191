package backend

import (
	"context"
	"fmt"
	"time"

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
	Skipped   bool             `json:"-"`
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
}

// redact removes the run's secret values from every error of its outcome.
func (r *run) redact() {
	out := r.out
	out.Error = redacted(out.Error, r.secrets...)
	for i := range out.Steps {
		out.Steps[i].Error = redacted(out.Steps[i].Error, r.secrets...)
	}
	for i := range out.Consumers {
		out.Consumers[i].Error = redacted(out.Consumers[i].Error, r.secrets...)
	}
	for i := range out.Health {
		out.Health[i].Error = redacted(out.Health[i].Error, r.secrets...)
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

// rotate is the one rotation protocol (DESIGN.md §3) for every trigger. It returns an error
// only when it could not start (no such role, storage failure); a failed rotation is an
// Outcome, already recorded.
func (e *Engine) rotate(ctx context.Context, name string, rq rotateRequest) (*Outcome, error) {
	unlock := e.locks.lock(name)
	defer unlock()

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
	r := &run{role: role, state: st, out: &Outcome{Role: name, Trigger: rq.trigger}, by: requesterFrom(ctx)}
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
		// A missing consumer ("forgot a service", a typo) fails here, before the target is touched.
		if err := r.deploy.check(ctx); err != nil {
			return err
		}
		p, err = e.prepare(ctx, r, rq)
		return err
	}); err != nil {
		return e.fail(ctx, r, StepPrepare, nil), nil
	}
	if err := r.step(StepApply, func() error { return r.target.Apply(ctx, r.env, p.Old, p.New) }); err != nil {
		return e.fail(ctx, r, StepApply, p), nil
	}
	failpoint.Inject(failpoint.AfterApply)
	if err := r.step(StepVerify, func() error { return r.target.Verify(ctx, r.env, p.New) }); err != nil {
		return e.fail(ctx, r, StepVerify, p), nil
	}
	return e.finish(ctx, r, p), nil
}

// finish deploys a value that is live at the target to its consumers and promotes it. The
// rotation and the roll-forward of recovery both end here.
func (e *Engine) finish(ctx context.Context, r *run, p *Pending) *Outcome {
	if !r.deploy.empty() {
		// Stage the new value: consumers read creds when they start, and must get the new one.
		p.Step = StepDeploy
		if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
			r.out.Steps = append(r.out.Steps, StepResult{Name: StepDeploy, Error: err.Error()})
			return e.fail(ctx, r, StepDeploy, p)
		}
		if err := r.step(StepDeploy, func() error { return e.runDeploy(ctx, r, StepDeploy) }); err != nil {
			// A first value has nothing to roll back to: it works at the target, so it stays.
			if r.role.RollbackOnFailure() && p.Old != nil {
				return e.fail(ctx, r, StepDeploy, p)
			}
			return e.keepFailedDeploy(ctx, r, p)
		}
	}
	if err := e.promoteStep(ctx, r, p); err != nil {
		// The new value is live and still held by the pending record; recovery promotes it.
		r.out.Result = OutcomeUnresolved
		r.out.FailedStep = StepPromote
		r.out.Error = redacted(err.Error(), p.Old, p.New)
		return r.out
	}
	return r.out
}

// keepFailedDeploy is rollback_on_failure=false: the new value stays current although the
// consumers did not come back healthy, and the rotation is recorded as failed.
func (e *Engine) keepFailedDeploy(ctx context.Context, r *run, p *Pending) *Outcome {
	if err := r.step(StepPromote, func() error { return e.promote(ctx, r, p) }); err != nil {
		r.out.Success = false
		r.out.Result = OutcomeUnresolved
		r.out.FailedStep = StepPromote
		r.out.Error = redacted(err.Error(), p.Old, p.New)
		return r.out
	}
	r.out.Success = false
	r.out.Result = OutcomeFailed
	r.out.FailedStep = StepDeploy
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
	p := &Pending{Old: old, New: newValue, OldVersion: next - 1, NewVersion: next, Trigger: rq.trigger, Step: StepApply, Started: e.now()}
	r.secrets = []rotators.Secret{old, newValue}
	if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
		return nil, err
	}
	e.pending.add(r.role.Name)
	return p, nil
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
	if err := deleteKey(ctx, e.storage, pendingPrefix+r.role.Name); err != nil {
		return err
	}
	e.pending.remove(r.role.Name)
	r.out.Success = true
	r.out.Result = OutcomeSuccess
	r.out.NewVersion = p.NewVersion
	e.reschedule(r.role, st)
	e.logger.Info("rotated", "role", r.role.Name, "type", r.role.Type, "trigger", string(r.out.Trigger), "version", p.NewVersion)
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
	if p != nil && p.Old == nil && step == StepVerify {
		// The target took a first value that does not verify (a wrong connection_url, say):
		// it may be the only live value, so it stays in the pending record until it verifies.
		r.out.Steps = append(r.out.Steps, StepResult{Name: StepRestore,
			Error: "no earlier value to put back; the new one is kept pending until it verifies"})
		out.Result = OutcomeUnresolved
	} else if p != nil {
		deployed := p.Step == StepDeploy
		if deployed {
			// Stop handing out the new value while it is taken back.
			p.Step = StepRestore
			if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
				e.logger.Error("unstage the new value", "role", r.role.Name, "error", err)
			}
		}
		var putBack bool
		restoreErr := r.step(StepRestore, func() (err error) {
			putBack, err = e.restore(ctx, r, p)
			return err
		})
		if restoreErr == nil {
			// Rolled back: the target had to be given the old value again, or the consumers
			// had taken the new one. An apply that changed nothing leaves nothing to roll back.
			out.RolledBack = putBack || deployed
			if err := deleteKey(ctx, e.storage, pendingPrefix+r.role.Name); err != nil {
				out.Result = OutcomeUnresolved
			} else {
				e.pending.remove(r.role.Name)
			}
			if deployed {
				// The consumers were restarted with the new value: restart them again on
				// the old one and check that they are healthy.
				_ = r.step(StepRedeploy, func() error { return e.runDeploy(ctx, r, StepRedeploy) })
			}
		} else {
			// Neither value is known to be live: both stay in the pending record and
			// recovery asks the target again on every tick.
			out.Result = OutcomeUnresolved
		}
	}
	out.Error = stepErrors(out.Steps)
	r.redact()
	e.countFailure(ctx, r)
	return out
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

// restore makes the old value live again after a failed apply, verify or deploy; putBack says
// whether the target had to be changed for it.
func (e *Engine) restore(ctx context.Context, r *run, p *Pending) (putBack bool, err error) {
	if p.Old == nil {
		return false, nil // a first rotation: there was no value to lose
	}
	if err := r.target.Verify(ctx, r.env, p.Old); err == nil {
		return false, nil // the target never changed, or kept the old value
	}
	if err := r.target.Apply(ctx, r.env, p.New, p.Old); err != nil {
		return false, fmt.Errorf("put the old value back: %w", err)
	}
	if err := r.target.Verify(ctx, r.env, p.Old); err != nil {
		return true, fmt.Errorf("old value after restore: %w", err)
	}
	return true, nil
}
