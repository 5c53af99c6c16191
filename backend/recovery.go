package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// lockRetry is how soon recovery looks again at a role whose lock was busy.
const lockRetry = time.Second

// recoveryResult says how a pending record was resolved.
type recoveryResult struct {
	resolved bool
	detail   string
}

// recoverRole resolves the role's pending record if no rotation holds the role (background
// job). A record that recovery gave up on (max_failures attempts) is left alone until an operator
// writes or rotates the role, and a record whose last recovery failed waits for its backoff:
// recovery never keeps logging in to a target that cannot answer.
func (e *Engine) recoverRole(ctx context.Context, name string) {
	unlock, ok := e.locks.tryLock(name)
	if !ok {
		// A rotation holds the role (perhaps the one that just lost its answer and is still
		// recording it): look again shortly rather than at the next tick.
		e.recoverAt(name, e.now().Add(lockRetry))
		return
	}
	defer unlock()
	// Unless resolvePending takes it over, a creds wait held for this role ends with this attempt.
	defer e.endHeldWindow(name)
	p, err := e.loadPending(ctx, name)
	if err != nil {
		e.logger.Error("recovery: read pending", "role", name, "error", err)
		return
	}
	if p == nil {
		e.pending.remove(name)
		e.jobRoleResolved(ctx, name)
		return
	}
	role, err := e.loadRole(ctx, name)
	if err != nil || role == nil {
		e.logger.Error("recovery: pending record without a readable role", "role", name, "error", err)
		return
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		e.logger.Error("recovery: read state", "role", name, "error", err)
		return
	}
	if p.Attempts >= e.Config().MaxFailures || e.now().Before(p.RetryAt) {
		return // parked by recovery, or waiting for its backoff
	}
	e.resolvePending(ctx, role, st, p, false)
}

// resolvePending finishes or takes back the rotation of a pending record, by its phase
// (phases.go). Before it asks the target anything it waits until the target can no longer be
// changing on the record's behalf. The caller holds the lock.
//
//	applying, applied, deploying → ask which value is live (resolveForward)
//	restoring, redeploying       → finish the rollback: old value back, consumers on it
//
// supersede is set when a new rotation is about to replace the record.
func (e *Engine) resolvePending(ctx context.Context, role *Role, st *State, p *Pending, supersede bool) recoveryResult {
	r := &run{role: role, state: st, out: &Outcome{Role: role.Name, Trigger: TriggerRecovery, OldVersion: p.OldVersion},
		secrets: []rotators.Secret{p.Old, p.New, p.Displaced}, windows: &e.windows}
	// The creds wait held for this record (opened at Initialize, or by the rotation that lost
	// its answer) becomes this run's: it ends where a live rotation's would (before consumers
	// restart and read creds, or once the outcome is known).
	r.leaveWindow = e.takeHeldWindow(role.Name)
	defer r.closeWindow()
	if err := e.bind(ctx, r); err != nil {
		return e.stuck(ctx, r, p, "cannot bind the role to its target: "+err.Error())
	}
	if at := e.settledAt(p, r.target); e.now().Before(at) {
		e.recoverAt(role.Name, at)
		e.holdWindow(r) // still unknown: creds keeps waiting until the target settled
		return recoveryResult{detail: fmt.Sprintf("the outcome of the last change is unknown until %s, when the target can no longer be applying it", at.Format(time.RFC3339))}
	}
	switch p.Phase {
	case PhaseRestoring, PhaseRedeploying:
		return e.resolveBack(ctx, r, p)
	default:
		return e.resolveForward(ctx, r, p, supersede)
	}
}

// resolveForward asks the target which value of the record is live:
//
//	new verifies                 → roll forward: the kind's remaining work, deploy, promote
//	new rejected, old verifies   → the change never landed: drop the record
//	both rejected, or no answer  → keep both; retry with backoff, park after max_failures
func (e *Engine) resolveForward(ctx context.Context, r *run, p *Pending, supersede bool) recoveryResult {
	log := e.logger.With("role", r.role.Name)
	if cur := r.state.Current(); cur != nil && cur.Number == p.NewVersion && cur.Secret.Equal(p.New) {
		// Cut short after the new version was stored: only the record is left.
		if err := e.dropRecord(ctx, r.role.Name); err != nil {
			return recoveryResult{detail: err.Error()}
		}
		r.out.Success, r.out.Result, r.out.NewVersion = true, OutcomeSuccess, p.NewVersion
		e.record(ctx, r)
		return recoveryResult{resolved: true}
	}

	newErr := r.step(StepVerify, func() error { return e.verify(ctx, r, p.New) })
	if newErr == nil {
		// Storing the record first is also the fence before the kind's remaining work at the
		// target (ssh: the old key removed): only an engine that can still write does it.
		if p.Phase == PhaseApplying {
			if err := e.enter(ctx, r.role.Name, p, PhaseApplied); err != nil {
				return e.stuck(ctx, r, p, err.Error())
			}
		} else if _, ok := r.target.(rotators.Finisher); ok {
			if err := e.fence(ctx, r.role.Name, p); err != nil {
				return e.stuck(ctx, r, p, err.Error())
			}
		}
		if err := e.finishStep(ctx, r, p.Old, p.New); err != nil {
			return e.stuck(ctx, r, p, "the new value is live, but the rest of the change failed: "+err.Error())
		}
		out := e.finish(ctx, r, p)
		if out.Result == OutcomeUnresolved {
			// The record is still there (finish deletes it only when it is done): count the
			// attempt, so that a promotion that can never be written does not redeploy forever.
			return e.stuck(ctx, r, p, "roll forward did not finish: "+out.Error)
		}
		log.Info("recovery: the new value is live; rolled forward", "version", p.NewVersion, "outcome", out.Result)
		return recoveryResult{resolved: true}
	}
	if !errors.Is(newErr, rotators.ErrRejected) {
		return e.stuck(ctx, r, p, "target unreachable: "+newErr.Error())
	}

	if p.Old == nil && p.Phase != PhaseApplying {
		// The target acknowledged this first value: it is live there and there is no other, so
		// it is kept as the current value (as a live rotation does), never superseded.
		out := e.keepUnverifiedFirst(ctx, r, p)
		if out.Result == OutcomeUnresolved {
			return e.stuck(ctx, r, p, out.Error)
		}
		return recoveryResult{resolved: true}
	}
	if p.Old == nil && supersede {
		return e.dropPending(ctx, r, p, "recovery: the first value does not verify; a new rotation replaces it")
	}
	if p.Old == nil {
		return e.stuck(ctx, r, p, "the first value does not verify at the target and there is no earlier one; it is kept in the pending record: fix the target or the role and rotate")
	}
	oldErr := r.step(StepVerify, func() error { return e.verify(ctx, r, p.Old) })
	switch {
	case oldErr == nil && p.Deployed:
		// Consumers may hold the new value, which is not live: restart them on the old one.
		return e.resolveBack(ctx, r, p)
	case oldErr == nil:
		return e.dropPending(ctx, r, p, "recovery: the new value was never live; kept the old one")
	case errors.Is(oldErr, rotators.ErrRejected):
		return e.stuck(ctx, r, p, "the target rejects both the old and the new value; both are kept in the pending record")
	default:
		return e.stuck(ctx, r, p, "target unreachable: "+oldErr.Error())
	}
}

// resolveBack finishes a rollback that was cut short: the old value (and a displaced one) back
// at the target, the consumers restarted on it when they had taken the new one, the record gone.
func (e *Engine) resolveBack(ctx context.Context, r *run, p *Pending) recoveryResult {
	res := e.rollBack(ctx, r, p)
	if !res.done {
		return e.stuck(ctx, r, p, "the old value could not be put back yet: "+stepErrors(r.out.Steps))
	}
	r.out.Result = OutcomeFailed
	r.out.RolledBack = res.rolledBack
	r.out.Error = "recovery: finished putting the old value back after a failed rotation"
	e.logger.Info(r.out.Error, "role", r.role.Name)
	r.redact()
	e.countFailure(ctx, r) // the interrupted rotation failed: the schedule retries it
	return recoveryResult{resolved: true}
}

// stuck records a recovery that could not resolve the record: it is tried again after a
// backoff, and after max_failures attempts the role is parked, so that recovery stops logging in
// to the target until an operator writes or rotates the role.
func (e *Engine) stuck(ctx context.Context, r *run, p *Pending, detail string) recoveryResult {
	detail = capped(redacted(detail, p.Old, p.New, p.Displaced))
	if e.ctx.Err() != nil {
		// Cut short by the engine closing, not by the target: no attempt to count.
		return recoveryResult{detail: detail}
	}
	cfg := e.Config()
	st := r.state
	p.Attempts++
	p.RetryAt = e.now().Add(backoff(cfg, p.Attempts))
	if err := putJSON(ctx, e.storage, pendingPrefix+r.role.Name, p); err != nil {
		e.logger.Error("recovery: record the attempt", "role", r.role.Name, "error", err)
	}
	if p.Attempts >= cfg.MaxFailures && !st.Failing {
		st.Failing = true
		st.LastOutcome = OutcomeUnresolved
		st.LastError = detail
		if err := putJSON(ctx, e.storage, statePrefix+r.role.Name, st); err != nil {
			e.logger.Error("recovery: record failing", "role", r.role.Name, "error", err)
		}
		r.out.Result = OutcomeUnresolved
		r.out.Error = detail
		e.record(ctx, r)
		e.reschedule(r.role, st)
		e.logger.Error("recovery: role parked; write or rotate it once the target is fixed", "role", r.role.Name,
			"attempts", p.Attempts, "detail", detail)
	} else {
		e.logger.Warn("recovery: not resolved yet", "role", r.role.Name, "attempts", p.Attempts,
			"retry_at", p.RetryAt, "detail", detail)
	}
	return recoveryResult{detail: detail}
}

// dropPending deletes a pending record whose new value is not live, and records the interrupted
// rotation as failed. A kind with work left for the value that stays live (ssh: a new key added
// on some hosts only) finishes it first, so that only the live value remains authorized.
func (e *Engine) dropPending(ctx context.Context, r *run, p *Pending, why string) recoveryResult {
	if _, ok := r.target.(rotators.Finisher); ok {
		if err := e.fence(ctx, r.role.Name, p); err != nil {
			return e.stuck(ctx, r, p, err.Error())
		}
	}
	if err := e.finishStep(ctx, r, p.New, p.Old); err != nil {
		return e.stuck(ctx, r, p, "the new value is not live, but removing it failed: "+err.Error())
	}
	if err := e.dropRecord(ctx, r.role.Name); err != nil {
		return recoveryResult{detail: err.Error()}
	}
	r.out.Result = OutcomeFailed
	r.out.Error = why
	e.logger.Info(why, "role", r.role.Name)
	r.redact()
	e.countFailure(ctx, r)
	return recoveryResult{resolved: true}
}

// finishFor runs the kind's remaining work so that live is the value in force and retired is
// gone (rotators.Finisher); a kind without such work has nothing to do. live may be nil (a
// first rotation), then there is nothing to finish with.
func (e *Engine) finishFor(ctx context.Context, r *run, retired, live rotators.Secret) error {
	f, ok := r.target.(rotators.Finisher)
	if !ok || live == nil || retired == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, applyBound(r.target))
	defer cancel()
	return f.Finish(fctx, r.env, retired, live)
}

// finishStep is finishFor as a timed step of the outcome, for kinds that have such work.
func (e *Engine) finishStep(ctx context.Context, r *run, retired, live rotators.Secret) error {
	if _, ok := r.target.(rotators.Finisher); !ok {
		return nil
	}
	return r.step(StepFinish, func() error { return e.finishFor(ctx, r, retired, live) })
}
