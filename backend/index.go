package backend

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"
)

// roleIndex holds every role's settings and a summary of its state (never a value), so that
// inventory (LIST, status) and the rules that look across roles (dependents, one login one
// role) read memory instead of every role in storage (docs/benchmarks.md, "Inventory at
// scale"). Storage stays the truth: an entry is marked stale whenever its role or state key is
// written, by this engine (engineStorage's hook) or by another node (Invalidate), and is read
// again from storage before it is used. The names are listed from storage once.
type roleIndex struct {
	mu      sync.Mutex
	listed  bool
	entries map[string]*indexEntry
	// gens count the stale marks per stripe of names: an entry read from storage before a mark
	// is not stored as fresh after it.
	gens [keySetStripes]uint64
}

type indexEntry struct {
	fresh bool
	role  *Role
	sum   stateSummary
}

// stateSummary is what inventory and the schedule need of a role's state: no value.
type stateSummary struct {
	CurrentVersion      int
	LastRotated         time.Time
	LastOutcome         string
	LastError           string
	ConsecutiveFailures int
	Failing             bool
	RetryAt             time.Time
	RemindedAt          time.Time
}

func summarize(st *State) stateSummary {
	s := stateSummary{LastRotated: st.LastRotated, LastOutcome: st.LastOutcome, LastError: st.LastError,
		ConsecutiveFailures: st.ConsecutiveFailures, Failing: st.Failing, RetryAt: st.RetryAt, RemindedAt: st.RemindedAt}
	if cur := st.Current(); cur != nil {
		s.CurrentVersion = cur.Number
	}
	return s
}

// state rebuilds a State without values from the summary, for the read view.
func (s stateSummary) state() *State {
	st := &State{LastRotated: s.LastRotated, LastOutcome: s.LastOutcome, LastError: s.LastError,
		ConsecutiveFailures: s.ConsecutiveFailures, Failing: s.Failing, RetryAt: s.RetryAt, RemindedAt: s.RemindedAt}
	if s.CurrentVersion > 0 {
		st.Versions = []Version{{Number: s.CurrentVersion}}
	}
	return st
}

func newRoleIndex() *roleIndex { return &roleIndex{entries: map[string]*indexEntry{}} }

// indexRole is the role a storage key feeds into the index (its role or state), or "".
func indexRole(key string) string {
	for _, prefix := range []string{rolePrefix, statePrefix} {
		if name, ok := strings.CutPrefix(key, prefix); ok {
			return name
		}
	}
	return ""
}

// stale marks name to be read again; a role created elsewhere joins the index this way.
func (x *roleIndex) stale(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gens[stripe(name)]++
	if ent, ok := x.entries[name]; ok {
		ent.fresh = false
	} else if x.listed {
		x.entries[name] = &indexEntry{}
	}
}

// indexedRole is one role as the index holds it.
type indexedRole struct {
	Role *Role
	Sum  stateSummary
}

// indexedRoles returns every role, sorted by name, reading from storage only what is stale.
func (e *Engine) indexedRoles(ctx context.Context) ([]indexedRole, error) {
	x := e.index
	x.mu.Lock()
	listed := x.listed
	x.mu.Unlock()
	if !listed {
		if err := e.listIndex(ctx); err != nil {
			return nil, err
		}
	}
	x.mu.Lock()
	var stale []string
	for name, ent := range x.entries {
		if !ent.fresh {
			stale = append(stale, name)
		}
	}
	x.mu.Unlock()
	// A write racing the read marks the entry stale again; a few tries settle it. If writes keep
	// racing, what was read last is used for this answer (storage's truth a moment ago) but not
	// kept: an entry is never used as it was before its latest write.
	read := map[string]indexedRole{}
	for _, name := range stale {
		for try := 0; ; try++ {
			fresh, got, err := e.refreshIndex(ctx, name)
			if err != nil {
				return nil, err
			}
			if fresh {
				break
			}
			if try == 2 {
				read[name] = got
				break
			}
		}
	}
	x.mu.Lock()
	out := make([]indexedRole, 0, len(x.entries))
	for name, ent := range x.entries {
		if got, ok := read[name]; ok {
			if got.Role != nil {
				out = append(out, got)
			}
			continue
		}
		if ent.role != nil {
			out = append(out, indexedRole{Role: ent.role, Sum: ent.sum})
		}
	}
	x.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Role.Name < out[j].Role.Name })
	return out, nil
}

// listIndex lists the role names from storage, keeping entries already known.
func (e *Engine) listIndex(ctx context.Context) error {
	names, err := e.storage.List(ctx, rolePrefix)
	if err != nil {
		return err
	}
	x := e.index
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, n := range names {
		if _, ok := x.entries[n]; !ok {
			x.entries[n] = &indexEntry{}
		}
	}
	x.listed = true
	return nil
}

// refreshIndex reads name's role and state and stores them, unless a write marked the entry
// stale meanwhile (fresh false: read it again); got is what it read (a nil Role: no such role).
func (e *Engine) refreshIndex(ctx context.Context, name string) (fresh bool, got indexedRole, err error) {
	x := e.index
	x.mu.Lock()
	token := x.gens[stripe(name)]
	x.mu.Unlock()
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return false, got, err
	}
	var sum stateSummary
	if role != nil {
		st, err := e.loadState(ctx, name)
		if err != nil {
			return false, got, err
		}
		sum = summarize(st)
	}
	got = indexedRole{Role: role, Sum: sum}
	x.mu.Lock()
	defer x.mu.Unlock()
	if token != x.gens[stripe(name)] {
		return false, got, nil
	}
	if role == nil {
		delete(x.entries, name)
		return true, got, nil
	}
	x.entries[name] = &indexEntry{fresh: true, role: role, sum: sum}
	return true, got, nil
}

// indexedRole returns one role as the index holds it (nil: no such role), reading storage only
// when its entry is stale. As in indexedRoles, a role that writes keep marking stale is answered
// as last read but not kept.
func (e *Engine) indexedRole(ctx context.Context, name string) (*Role, error) {
	x := e.index
	x.mu.Lock()
	if ent, ok := x.entries[name]; ok && ent.fresh {
		r := ent.role
		x.mu.Unlock()
		return r, nil
	}
	x.mu.Unlock()
	var got indexedRole
	for try := 0; try < 3; try++ {
		fresh, g, err := e.refreshIndex(ctx, name)
		if err != nil {
			return nil, err
		}
		got = g
		if fresh {
			break
		}
	}
	return got.Role, nil
}
