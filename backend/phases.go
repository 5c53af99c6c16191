// The rotation protocol as a state machine (README "How a rotation runs"). A rotation in flight
// is a pending record; its Phase says what may be true at the target, and so what recovery must
// do after a crash. The phases and their transitions live here, in one place:
//
//	applying ──► applied ──► deploying ──► (promoted: record deleted)
//	   (applying ──► deploying when the applied phase could not be stored)
//	   │            │            │
//	   │            └──► restoring ◄─┘ ──► redeploying ──► (rolled back: record deleted)
//	   └──► (not applied: record deleted)
//
// A rotation without consumers goes from applied straight to promoted; a restore of a target
// whose consumers never took the new value goes from restoring straight to rolled back.

package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Phase is where a rotation in flight stands. Phase names are stored in pending records; they
// are not the step names of an outcome's timings (StepApply, ...).
type Phase string

const (
	// PhaseApplying: the record is stored and the change may have been sent. Until the target
	// answered, which value it holds is unknown.
	PhaseApplying Phase = "applying"
	// PhaseApplied: the target acknowledged the change; the new value is not verified yet.
	PhaseApplied Phase = "applied"
	// PhaseDeploying: the new value verified; consumers restart on it, and creds hands it out
	// (it is staged).
	PhaseDeploying Phase = "deploying"
	// PhaseRestoring: the rotation failed after the target may have changed; the old value (and
	// a displaced one) is being put back.
	PhaseRestoring Phase = "restoring"
	// PhaseRedeploying: the target holds the old value again; consumers that took the new one
	// restart on the old one.
	PhaseRedeploying Phase = "redeploying"
)

// transitions are the only moves between phases that the protocol makes.
var transitions = map[Phase][]Phase{
	PhaseApplying:    {PhaseApplied, PhaseRestoring, PhaseDeploying}, // deploying: verified although "applied" could not be stored
	PhaseApplied:     {PhaseDeploying, PhaseRestoring},
	PhaseDeploying:   {PhaseRestoring},
	PhaseRestoring:   {PhaseRedeploying},
	PhaseRedeploying: {},
}

// canMove reports whether the protocol may move a record from one phase to another.
func canMove(from, to Phase) bool {
	for _, p := range transitions[from] {
		if p == to {
			return true
		}
	}
	return false
}

// staging reports whether creds hands out the record's new value: only while consumers restart
// on it, after it verified.
func (p *Pending) staging() bool { return p.Phase == PhaseDeploying }

// enter moves the record to phase and stores it. A move the state machine does not allow is a
// bug, reported as an error rather than written.
func (e *Engine) enter(ctx context.Context, name string, p *Pending, phase Phase) error {
	if !canMove(p.Phase, phase) {
		return fmt.Errorf("protocol: no move from %s to %s", p.Phase, phase)
	}
	prev := p.Phase
	p.Phase = phase
	if err := putJSON(ctx, e.storage, pendingPrefix+name, p); err != nil {
		p.Phase = prev // what is stored is what counts
		return err
	}
	return nil
}

// Default bounds of the calls the engine makes to a target; a rotators.Bounded target sets its own.
const (
	// applyTimeout bounds one Apply (and Finish); after it no change is sent any more.
	applyTimeout = 2 * time.Minute
	// verifyTimeout bounds one Verify.
	verifyTimeout = time.Minute
)

// applyBound is how long Apply and Finish of t may take.
func applyBound(t rotators.Target) time.Duration {
	if b, ok := t.(rotators.Bounded); ok && b.ApplyTimeout() > 0 {
		return b.ApplyTimeout()
	}
	return applyTimeout
}

// verifyBound is how long Verify of t may take.
func verifyBound(t rotators.Target) time.Duration {
	if b, ok := t.(rotators.Bounded); ok && b.VerifyTimeout() > 0 {
		return b.VerifyTimeout()
	}
	return verifyTimeout
}

// settleTime is how long the target may still change after its client gave up on a change.
func settleTime(t rotators.Target) time.Duration {
	if s, ok := t.(rotators.Settler); ok {
		return s.SettleTime()
	}
	return 0
}

// settledAt is when the target can no longer be changing on behalf of this record: the bound
// the live rotation stored when it lost the answer, or, for a record left by a process that
// died, the settle time counted from this engine's start (the dead process sent nothing after
// that).
func (e *Engine) settledAt(p *Pending, t rotators.Target) time.Time {
	if p.Phase != PhaseApplying && p.Phase != PhaseRestoring {
		return time.Time{} // the target answered the last change
	}
	if !p.SettleAt.IsZero() {
		return p.SettleAt
	}
	return e.started.Add(settleTime(t))
}

// migratePhase gives a record stored before phases existed its phase.
func (p *Pending) migratePhase() {
	if p.Phase != "" {
		return
	}
	switch p.LegacyStep {
	case StepDeploy:
		p.Phase = PhaseDeploying
	case StepRestore:
		p.Phase = PhaseRestoring
	default:
		p.Phase = PhaseApplying
	}
	p.LegacyStep = ""
}
