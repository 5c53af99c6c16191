package backend

import (
	"sync"
	"time"
)

// dueTimer wakes the scheduler at the earliest due time, so that a role starts rotating moments
// after it falls due instead of at Vault's next periodic call (about once a minute). The periodic
// function stays the heartbeat that rebuilds nothing but catches whatever a timer missed (docs/
// decisions.md, "On time"). Only the system clock arms it: tests on a fake clock drive the
// schedule with Tick.
type dueTimer struct {
	mu sync.Mutex
	t  *time.Timer
	at time.Time
}

// armDue sets the timer to the queue's earliest due time; called whenever the queue changes.
func (e *Engine) armDue() {
	if _, real := e.clock.(systemClock); !real {
		return
	}
	at, ok := e.queue.earliest()
	d := &e.due
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.ctx.Err() != nil {
		return // closed (checked under the lock stopDue takes after the cancel)
	}
	if !ok {
		if d.t != nil {
			d.t.Stop()
			d.t, d.at = nil, time.Time{}
		}
		return
	}
	if d.t != nil && !at.Before(d.at) {
		return // armed for this time or earlier: the firing re-arms for what follows
	}
	if d.t != nil {
		d.t.Stop()
	}
	d.at = at
	d.t = time.AfterFunc(max(0, time.Until(at)), e.dueFired)
}

// dueFired hands every due role to the worker pool, as Tick does, and arms the next time.
func (e *Engine) dueFired() {
	e.due.mu.Lock()
	e.due.t, e.due.at = nil, time.Time{}
	e.due.mu.Unlock()
	if e.ctx.Err() != nil || !e.writeSafe() || e.writes.isFailing() {
		// A standby or a node whose writes fail: the node that may write rotates (its own
		// timer, or the tick of whichever node becomes active); a closed engine: nothing.
		return
	}
	for _, name := range e.queue.popDue(e.now()) {
		e.workers.submit(job{name: name})
	}
	e.armDue()
}

// stopDue stops the timer (Close).
func (e *Engine) stopDue() {
	e.due.mu.Lock()
	defer e.due.mu.Unlock()
	if e.due.t != nil {
		e.due.t.Stop()
		e.due.t, e.due.at = nil, time.Time{}
	}
}
