package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// recoveryResult says how a pending record was resolved.
type recoveryResult struct {
	resolved bool
	detail   string
}

// recoverRole resolves the role's pending record if no rotation holds the role (background job).
func (e *Engine) recoverRole(ctx context.Context, name string) {
	unlock, ok := e.locks.tryLock(name)
	if !ok {
		return // a rotation in progress owns the pending record
	}
	defer unlock()
	p, err := e.loadPending(ctx, name)
	if err != nil {
		e.logger.Error("recovery: read pending", "role", name, "error", err)
		return
	}
	if p == nil {
		e.pending.remove(name)
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
	e.resolvePending(ctx, role, st, p, false)
}

// resolvePending asks the target which value of a pending record is live (DESIGN.md §8):
//
//	Verify(new) ok                   → roll forward: promote the new value
//	Verify(new) rejected, old ok     → the target never changed or was restored: drop the record
//	both rejected                    → keep both, park the role as failing
//	target not reachable             → keep both, ask again on the next tick
//
// It records what it did in the history with the recovery trigger. The caller holds the lock.
//
// A record without an old value (a first rotation) whose new value is rejected is kept too,
// since it may be the live value, unless supersede is set: a new rotation replaces it.
func (e *Engine) resolvePending(ctx context.Context, role *Role, st *State, p *Pending, supersede bool) recoveryResult {
	log := e.logger.With("role", role.Name)
	r := &run{role: role, state: st, out: &Outcome{Role: role.Name, Trigger: TriggerRecovery, OldVersion: p.OldVersion},
		secrets: []rotators.Secret{p.Old, p.New}}
	if err := e.bind(ctx, r); err != nil {
		log.Error("recovery: cannot bind the role to its target", "error", err)
		return recoveryResult{detail: err.Error()}
	}

	newErr := r.step(StepVerify, func() error { return r.target.Verify(ctx, r.env, p.New) })
	if newErr == nil {
		// Roll forward: deploy to the consumers and promote, as the interrupted rotation would have.
		out := e.finish(ctx, r, p)
		if out.Result == OutcomeUnresolved {
			log.Error("recovery: roll forward did not finish", "error", out.Error)
			return recoveryResult{detail: out.Error}
		}
		log.Info("recovery: the new value is live; rolled forward", "version", p.NewVersion, "outcome", out.Result)
		return recoveryResult{resolved: true}
	}
	if !errors.Is(newErr, rotators.ErrRejected) {
		detail := redacted("target unreachable: "+newErr.Error(), p.Old, p.New)
		log.Warn("recovery: cannot ask the target yet", "error", detail)
		return recoveryResult{detail: detail}
	}

	if p.Old == nil && supersede {
		return e.dropPending(ctx, r, "recovery: the first value does not verify; a new rotation replaces it")
	}
	oldErr := fmt.Errorf("%w: there is no earlier value", rotators.ErrRejected)
	if p.Old != nil {
		oldErr = r.step(StepVerify, func() error { return r.target.Verify(ctx, r.env, p.Old) })
	}
	switch {
	case oldErr == nil:
		return e.dropPending(ctx, r, "recovery: the new value was never live; kept the old one")
	case errors.Is(oldErr, rotators.ErrRejected):
		detail := "the target rejects both the old and the new value; both are kept in the pending record"
		if p.Old == nil {
			detail = "the first value does not verify at the target and there is no earlier one; it is kept in the pending record: fix the role (e.g. connection_url) and rotate"
		}
		if !st.Failing {
			st.Failing = true
			st.LastOutcome = OutcomeUnresolved
			st.LastError = detail
			if err := putJSON(ctx, e.storage, statePrefix+role.Name, st); err != nil {
				log.Error("recovery: record failing", "error", err)
			}
			r.out.Result = OutcomeUnresolved
			r.out.Error = detail
			e.record(ctx, r)
			e.reschedule(role, st)
		}
		log.Error("recovery: " + detail)
		return recoveryResult{detail: detail}
	default:
		detail := redacted(fmt.Sprintf("target unreachable: %v", oldErr), p.Old, p.New)
		log.Warn("recovery: cannot ask the target yet", "error", detail)
		return recoveryResult{detail: detail}
	}
}

// dropPending deletes a pending record whose new value is not live, and records why.
func (e *Engine) dropPending(ctx context.Context, r *run, why string) recoveryResult {
	if err := deleteKey(ctx, e.storage, pendingPrefix+r.role.Name); err != nil {
		return recoveryResult{detail: err.Error()}
	}
	e.pending.remove(r.role.Name)
	r.out.Result = OutcomeFailed
	r.out.Error = why
	e.record(ctx, r)
	e.logger.Info(why, "role", r.role.Name)
	return recoveryResult{resolved: true}
}
