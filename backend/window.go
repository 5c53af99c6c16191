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

// wait returns once the role has no open window, ctx ends, or credsWaitMax passes.
func (w *applyWindows) wait(ctx context.Context, name string) {
	w.mu.Lock()
	ch := w.open[name]
	w.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(credsWaitMax)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
	}
}

// openStartupWindows makes creds reads of every role with a pending record wait until the first
// recovery of that record has run: after a crash the stored current value may be dead (the
// target took the new one) until recovery says which value is live.
func (e *Engine) openStartupWindows(names []string) {
	e.startupMu.Lock()
	defer e.startupMu.Unlock()
	if e.startup == nil {
		e.startup = map[string]func(){}
	}
	for _, n := range names {
		e.startup[n] = e.windows.enter(n)
	}
}

// takeStartupWindow hands the wait Initialize opened for a role to the caller (nil if none).
func (e *Engine) takeStartupWindow(name string) func() {
	e.startupMu.Lock()
	defer e.startupMu.Unlock()
	end := e.startup[name]
	delete(e.startup, name)
	return end
}

// endStartupWindow ends the wait Initialize opened for a role, if any.
func (e *Engine) endStartupWindow(name string) {
	if end := e.takeStartupWindow(name); end != nil {
		end()
	}
}
