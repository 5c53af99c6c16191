package rotators

import (
	"errors"
	"io"
	"sync"
	"time"
)

// Resources holds the long-lived clients that kinds open (a pool of database sessions per admin
// credential), keyed by the kind. It belongs to one mount's engine: every role of the mount
// shares it, nothing outlives the mount, and Close (from the backend's Clean) closes it all.
type Resources struct {
	mu      sync.Mutex
	entries map[string]*resource
	closed  bool
}

type resource struct {
	c        io.Closer
	users    int
	lastUsed time.Time
}

// ErrClosed is returned by Use after Close.
var ErrClosed = errors.New("the mount is shutting down")

// NewResources returns an empty set.
func NewResources() *Resources { return &Resources{entries: map[string]*resource{}} }

// Use returns the resource under key, opening it with open when there is none, and a release
// that the caller calls when done. A resource in use is never closed by CloseIdle.
func (r *Resources) Use(key string, open func() (io.Closer, error)) (io.Closer, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, ErrClosed
	}
	e, ok := r.entries[key]
	if !ok {
		c, err := open()
		if err != nil {
			return nil, nil, err
		}
		e = &resource{c: c}
		r.entries[key] = e
	}
	e.users++
	e.lastUsed = time.Now()
	var once sync.Once
	release := func() {
		once.Do(func() {
			r.mu.Lock()
			e.users--
			e.lastUsed = time.Now()
			r.mu.Unlock()
		})
	}
	return e.c, release, nil
}

// CloseIdle closes the resources nobody has used for idle (a pool for an admin password that
// has since been rotated away).
func (r *Resources) CloseIdle(idle time.Duration) {
	var stale []io.Closer
	r.mu.Lock()
	now := time.Now()
	for k, e := range r.entries {
		if e.users == 0 && now.Sub(e.lastUsed) > idle {
			stale = append(stale, e.c)
			delete(r.entries, k)
		}
	}
	r.mu.Unlock()
	for _, c := range stale {
		_ = c.Close()
	}
}

// Each calls fn for every open resource, under the set's lock: fn must be quick and must not
// call back into the set (a kind reads what its own clients hold, e.g. their session ids).
func (r *Resources) Each(fn func(key string, c io.Closer)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.entries {
		fn(k, e.c)
	}
}

// Len is the number of open resources (tests).
func (r *Resources) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// Close closes every resource; later calls to Use fail with ErrClosed.
func (r *Resources) Close() {
	r.mu.Lock()
	r.closed = true
	all := r.entries
	r.entries = map[string]*resource{}
	r.mu.Unlock()
	for _, e := range all {
		_ = e.c.Close()
	}
}
