package backend

import (
	"context"
	"sort"
	"sync"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// relations answers the two cross-role questions a role write asks, without looking at every
// role each time (docs/benchmarks.md §5): which roles link to a role (its dependents), and which
// role of a kind manages an account (one login, one role). It is built from the role index once,
// then each role is looked at again only when it, or a role it links to, was written or
// invalidated (stale marks it; refresh brings it up to date before an answer).
type relations struct {
	refreshMu sync.Mutex // one refresh at a time

	mu       sync.Mutex
	built    bool
	marks    uint64 // stale marks so far: a relate that saw one arrive reads again
	dirty    map[string]bool
	held     map[string]heldRelations              // role name → what it links to and claims
	linkedBy map[string]map[string]bool            // role name → the roles linking to it
	holders  map[string]map[string]map[string]bool // type → account → roles claiming it
}

type heldRelations struct {
	typ      string
	links    []string
	accounts []string
}

// stale marks name, and the roles whose claims follow it, to be looked at again.
func (x *relations) stale(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built {
		return
	}
	x.marks++
	x.dirty[name] = true
	for dep := range x.linkedBy[name] {
		x.dirty[dep] = true
	}
}

// refreshRelations brings the relations up to date with the role index. A role whose read
// overlapped a write (a mark arrived meanwhile) is read again, up to three passes; what is still
// marked then waits for the next call.
func (e *Engine) refreshRelations(ctx context.Context) error {
	x := &e.relations
	x.refreshMu.Lock()
	defer x.refreshMu.Unlock()

	x.mu.Lock()
	built := x.built
	x.mu.Unlock()
	if !built {
		// Marks that arrive while the first build reads the index are kept from here on.
		x.mu.Lock()
		x.built, x.dirty = true, map[string]bool{}
		x.held, x.linkedBy, x.holders = map[string]heldRelations{}, map[string]map[string]bool{}, map[string]map[string]map[string]bool{}
		x.mu.Unlock()
		all, err := e.indexedRoles(ctx)
		if err != nil {
			x.mu.Lock()
			x.built = false
			x.mu.Unlock()
			return err
		}
		x.mu.Lock()
		for _, r := range all {
			x.dirty[r.Role.Name] = true
		}
		x.mu.Unlock()
	}
	for pass := 0; pass < 3; pass++ {
		x.mu.Lock()
		names := make([]string, 0, len(x.dirty))
		for n := range x.dirty {
			names = append(names, n)
		}
		x.dirty = map[string]bool{}
		x.mu.Unlock()
		if len(names) == 0 {
			return nil
		}
		for i, name := range names {
			if err := e.relate(ctx, name); err != nil {
				x.mu.Lock()
				for _, n := range names[i:] {
					x.dirty[n] = true // looked at again next time
				}
				x.mu.Unlock()
				return err
			}
		}
	}
	return nil
}

// relateRead, when set (tests), runs after relate has read a role and before it records it.
var relateRead func(name string)

// relate records what role name links to and claims now (nothing, once it is gone).
func (e *Engine) relate(ctx context.Context, name string) error {
	x := &e.relations
	x.mu.Lock()
	marks := x.marks
	x.mu.Unlock()
	role, err := e.indexedRole(ctx, name)
	if err != nil {
		return err
	}
	var now heldRelations
	if role != nil {
		now.typ, now.links = role.Type, linkedNames(role)
		if kind, ok := rotators.Lookup(role.Type); ok {
			if c, ok := kind.(rotators.Claimer); ok {
				links, err := e.linkedSettings(role, func(ref string) (*Role, error) { return e.indexedRole(ctx, ref) })
				if err != nil {
					return err
				}
				for _, cl := range c.Claims(role.Settings, links) {
					now.accounts = append(now.accounts, cl.Account)
				}
			}
		}
	}
	if relateRead != nil {
		relateRead(name)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.marks != marks {
		// A role was written while this one was read (its admin, perhaps): read it again.
		x.dirty[name] = true
	}
	old := x.held[name]
	for _, ref := range old.links {
		delete(x.linkedBy[ref], name)
	}
	for _, a := range old.accounts {
		delete(x.holders[old.typ][a], name)
	}
	if role == nil {
		delete(x.held, name)
		return nil
	}
	x.held[name] = now
	for _, ref := range now.links {
		if x.linkedBy[ref] == nil {
			x.linkedBy[ref] = map[string]bool{}
		}
		x.linkedBy[ref][name] = true
	}
	for _, a := range now.accounts {
		if x.holders[now.typ] == nil {
			x.holders[now.typ] = map[string]map[string]bool{}
		}
		if x.holders[now.typ][a] == nil {
			x.holders[now.typ][a] = map[string]bool{}
		}
		x.holders[now.typ][a][name] = true
	}
	return nil
}

// claimHolder returns a stored role other than self that claims account among roles of typ.
func (x *relations) claimHolder(typ, account, self string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var others []string
	for n := range x.holders[typ][account] {
		if n != self {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return ""
	}
	sort.Strings(others)
	return others[0]
}

// linking returns the stored roles that link to name, sorted.
func (x *relations) linking(name string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.linkedBy[name]))
	for n := range x.linkedBy[name] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
