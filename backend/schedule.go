// Scheduled work: the periodic tick, the jobs it hands to the worker pool, backoff and
// reminders. The tick only pops due roles from the in-memory queue (queue.go) and never waits.

package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// remindIfDue sends the due reminder of a role that is never rotated by the schedule (a token
// only its provider can issue), once per period.
func (e *Engine) remindIfDue(ctx context.Context, role *Role, st *State) {
	now := e.now()
	if next := role.NextReminder(st, now); next.IsZero() || now.Before(next) {
		e.reschedule(role, st)
		return
	}
	st.RemindedAt = now
	if err := putJSON(ctx, e.storage, statePrefix+role.Name, st); err != nil {
		e.logger.Error("record reminder", "role", role.Name, "error", err)
	}
	version := 0
	if cur := st.Current(); cur != nil {
		version = cur.Number
	}
	e.notify.send(e.Config().NotifyURL, Notification{Event: NotifyDue, Role: role.Name, Type: role.Type,
		Version: version, VersionBefore: version, Time: now})
	e.logger.Warn("rotation due: this role is rotated only on request", "role", role.Name, "due_at", role.ScheduledAfter(st.LastRotated, now))
	e.reschedule(role, st)
}

// backoff is the wait before retry n (1-based): retry_base doubling up to retry_max, with
// jitter so that many roles failing together do not retry together. It holds for any config and
// any n, even ones Validate refuses (a config stored by an older version): a base that is not
// positive is the default base, a max below the base is the base, and doubling stops before it
// could overflow.
func backoff(cfg Config, n int) time.Duration {
	base, max := cfg.RetryBase, cfg.RetryMax
	if base <= 0 {
		base = DefaultConfig().RetryBase
	}
	if max < base {
		max = base
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		if d > max/2 {
			d = max
			break
		}
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(half+1)
}

// reschedule puts the role's next due time in the queue.
func (e *Engine) reschedule(role *Role, st *State) {
	e.queue.set(role.Name, role.NextWake(st, e.now()))
}

// idleResource is how long a kind's client (a session pool for one admin credential) stays open
// unused; a rotated admin password leaves its old pool idle for good.
const idleResource = 2 * time.Minute

// Tick is the periodic function: it resolves pending records and hands due roles to the
// worker pool. It never waits for a rotation.
func (e *Engine) Tick(ctx context.Context) error {
	e.resources.CloseIdle(idleResource)
	if !e.writeSafe() {
		return nil
	}
	for _, name := range e.pending.list() {
		e.workers.submit(job{name: name, recover: true})
	}
	for _, name := range e.queue.popDue(e.now()) {
		e.workers.submit(job{name: name})
	}
	return nil
}

func (e *Engine) runJob(ctx context.Context, j job) {
	if j.recover {
		e.recoverRole(ctx, j.name)
		return
	}
	out, err := e.rotate(ctx, j.name, rotateRequest{trigger: TriggerSchedule, ifDue: true})
	switch {
	case errors.Is(err, ErrRoleNotFound):
	case err != nil:
		// The rotation could not start (e.g. a storage error): the role left the queue when it
		// was handed out, so put it back for a retry after the base backoff.
		e.logger.Error("scheduled rotation", "role", j.name, "error", err)
		e.queue.set(j.name, e.now().Add(e.Config().RetryBase))
	case out.Skipped:
	case !out.Success:
		e.logger.Warn("scheduled rotation failed", "role", j.name, "step", out.FailedStep, "error", out.Error)
	}
}
