package backend

import (
	"context"
	"sync"
	"time"
)

// credsWaitMax bounds how long a creds read waits for a rotation between apply and promote.
// Apply and verify are bounded themselves; past this the read answers with what is stored.
const credsWaitMax = 30 * time.Second

// applyWindows marks the roles whose rotation is between apply and promote: the old value may
// already be dead at the target (single strategy) while the new one is not yet current, so a
// creds read waits for the outcome instead of handing out a value that may not work.
type applyWindows struct {
	mu   sync.Mutex
	open map[string]chan struct{}
}

// enter opens the role's window and returns its idempotent close.
func (w *applyWindows) enter(name string) func() {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.open == nil {
		w.open = map[string]chan struct{}{}
	}
	w.open[name] = ch
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			if w.open[name] == ch {
				delete(w.open, name)
			}
			w.mu.Unlock()
			close(ch)
		})
	}
}

// wait returns once the role has no open window (true), or ctx ends or max passes
// while it is still open (false): the outcome is still unknown then.
func (w *applyWindows) wait(ctx context.Context, name string, max time.Duration) bool {
	w.mu.Lock()
	ch := w.open[name]
	w.mu.Unlock()
	if ch == nil {
		return true
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// openStartupWindows makes creds reads of every role with a pending record wait until the first
// recovery of that record has run: after a crash the stored current value may be dead (the
// target took the new one) until recovery says which value is live.
func (e *Engine) openStartupWindows(names []string) {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	if e.held == nil {
		e.held = map[string]func(){}
	}
	for _, n := range names {
		if old := e.held[n]; old != nil {
			old()
		}
		e.held[n] = e.windows.enter(n)
	}
}

// holdWindow keeps a run's creds wait open past the run, until recovery resolves the record
// (an outcome that stays unknown until the target settled); a run without one opens one.
func (e *Engine) holdWindow(r *run) {
	r.openWindow()
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	if e.held == nil {
		e.held = map[string]func(){}
	}
	if old := e.held[r.role.Name]; old != nil {
		old()
	}
	e.held[r.role.Name] = r.leaveWindow
	r.leaveWindow = nil
}

// takeHeldWindow hands the held creds wait of a role to the caller (nil if none).
func (e *Engine) takeHeldWindow(name string) func() {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	end := e.held[name]
	delete(e.held, name)
	return end
}

// endHeldWindow ends the held creds wait of a role, if any.
func (e *Engine) endHeldWindow(name string) {
	if end := e.takeHeldWindow(name); end != nil {
		end()
	}
}

// flights counts the rotations in progress, so that Close waits for them: a rotation past its
// apply runs to its end (its calls are bounded), and the next engine of the mount must not start
// resolving records this one may still be changing.
type flights struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    *sync.Cond
}

// start counts a rotation in; false once the engine is closing.
func (f *flights) start() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.n++
	return true
}

func (f *flights) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.idle != nil {
		f.idle.Broadcast()
	}
}

// closeAndWait refuses new rotations and waits for the running ones (cancelled by the caller),
// at most max; it reports whether they all ended.
func (f *flights) closeAndWait(max time.Duration) bool {
	f.mu.Lock()
	f.closing = true
	if f.idle == nil {
		f.idle = sync.NewCond(&f.mu)
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.mu.Lock()
		for f.n > 0 {
			f.idle.Wait()
		}
		f.mu.Unlock()
		close(done)
	}()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
