package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// grantCheckTimeout bounds a kind's grant check at the target (one read-only query per login).
const grantCheckTimeout = 45 * time.Second

// A role writer gets only what an operator granted (README "Security model"): before a role is
// stored, the kind's linked roles must grant it (rotators.Grantor), no other role may manage the
// same account (rotators.Claimer), and a changed location is proven with the value the role
// holds (rotators.Locator).

// admit applies the kind's grant rules to a role about to be stored, after filling in what it
// inherits from its linked roles. It returns the release of the role's claimed accounts, to be
// called once the role is stored or the write failed. The local rules run first: a write the
// engine can refuse by itself sends nothing to the target.
func (e *Engine) admit(ctx context.Context, role, existing *Role, kind rotators.Kind) (release func(), err error) {
	release = func() {}
	env, err := e.env(ctx, role, kind)
	if err != nil {
		return release, userError(err)
	}
	if inh, ok := kind.(rotators.Inheritor); ok {
		inh.Inherit(&role.Settings, env.Linked)
		if _, err := kind.Bind(role.Settings); err != nil {
			return release, userError(err)
		}
		if err := checkRoleSize(role); err != nil {
			return release, userError(err)
		}
	}
	if existing != nil && sameSettings(existing.Settings, role.Settings) {
		return release, nil
	}
	if c, ok := kind.(rotators.Claimer); ok {
		if release, err = e.claim(ctx, role, c, env.Linked); err != nil {
			return release, err
		}
	}
	if g, ok := kind.(rotators.Grantor); ok {
		gctx, cancel := context.WithTimeout(ctx, grantCheckTimeout)
		err := g.CheckGrant(gctx, env, role.Settings)
		cancel()
		if err != nil {
			// A driver's error may quote what it was given: the linked roles' values never
			// reach the response.
			linked := make([]rotators.Secret, 0, len(env.Linked))
			for _, l := range env.Linked {
				linked = append(linked, l.Current)
			}
			msg := capped(redacted(err.Error(), linked...))
			if errors.Is(err, rotators.ErrUnreachable) {
				return release, fmt.Errorf("%w: %s", ErrTargetUnavailable, msg)
			}
			return release, userError(errors.New(msg))
		}
	}
	return release, nil
}

// claim reserves the role's accounts: refused when another role manages one of them, stored or
// being written. Each role's claims follow the roles it links to as they are now.
func (e *Engine) claim(ctx context.Context, role *Role, c rotators.Claimer, linked map[string]rotators.Linked) (func(), error) {
	claims := c.Claims(role.Settings, linked)
	release, holder, clash := e.claims.reserve(role.Name, claims)
	if holder != "" {
		return release, userError(fmt.Errorf("%s: %s is being claimed by role %q, written at this moment", clash.Field, clash.Account, holder))
	}
	fail := func(err error) (func(), error) {
		release()
		return func() {}, err
	}
	if err := e.refreshRelations(ctx); err != nil {
		return fail(err)
	}
	for _, mine := range claims {
		if other := e.relations.claimHolder(role.Type, mine.Account, role.Name); other != "" {
			return fail(userError(fmt.Errorf("%s: %s is already managed by role %q; one login, one role", mine.Field, mine.Account, other)))
		}
	}
	return release, nil
}

// linkedSettings are the settings of the roles r links to (no values), for its claims.
func (e *Engine) linkedSettings(r *Role, load func(string) (*Role, error)) (map[string]rotators.Linked, error) {
	kind, err := r.Kind()
	if err != nil {
		return nil, nil
	}
	var out map[string]rotators.Linked
	for _, f := range kind.Fields() {
		ref := r.Settings.String(f.Name)
		if f.Kind != rotators.FieldRoleRef || ref == "" {
			continue
		}
		linked, err := load(ref)
		if err != nil {
			return nil, err
		}
		if linked == nil {
			continue
		}
		if out == nil {
			out = map[string]rotators.Linked{}
		}
		out[f.Name] = rotators.Linked{Name: ref, Settings: linked.Settings}
	}
	return out, nil
}

// reidentified names the identity field a write changes (rotators.Identifier), or "".
func reidentified(kind rotators.Kind, before, after *Role) string {
	id, ok := kind.(rotators.Identifier)
	if !ok || before == nil {
		return ""
	}
	for _, f := range id.IdentityFields() {
		if before.Settings.String(f) != after.Settings.String(f) || !slices.Equal(before.Settings.List(f), after.Settings.List(f)) {
			return f
		}
	}
	return ""
}

// relocated reports whether a write moves where the role's values are sent.
func relocated(kind rotators.Kind, before, after *Role) bool {
	l, ok := kind.(rotators.Locator)
	if !ok || before == nil {
		return false
	}
	for _, f := range l.LocationFields() {
		if before.Settings.String(f) != after.Settings.String(f) || !slices.Equal(before.Settings.List(f), after.Settings.List(f)) {
			return true
		}
	}
	return false
}

// proveAtNewLocation verifies, before the write is stored, that the role's value works where the
// write moves it: a value is only ever sent where it was proven to work. With an unresolved
// record (parked: recovery gave up) either of its values will do, since recovery asks the new
// place about both.
func (e *Engine) proveAtNewLocation(ctx context.Context, role *Role, kind rotators.Kind, st *State, pend *Pending) error {
	var candidates []rotators.Secret
	if pend != nil {
		candidates = append(candidates, pend.New, pend.Old)
	} else if cur := st.Current(); cur != nil {
		candidates = append(candidates, cur.Secret)
	}
	var last error
	for _, v := range candidates {
		if v == nil {
			continue
		}
		if last = e.verifyImport(ctx, role, kind, v); last == nil {
			return nil
		}
	}
	if last == nil {
		return nil // no value yet: nothing is sent anywhere before the first rotation proves one
	}
	var ue *UserError
	if errors.As(last, &ue) {
		return userError(fmt.Errorf("the role's value does not work at the new location, so the write was not stored: %s", ue.Error()))
	}
	return last
}

func sameSettings(a, b rotators.Settings) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(x) == string(y)
}

// claimSet holds the accounts claimed by role writes in progress: two writes that each find an
// account free in storage must not both store it.
type claimSet struct {
	mu sync.Mutex
	m  map[string]string // account -> role
}

// reserve claims the accounts for role, or names the first one another write holds.
func (c *claimSet) reserve(role string, claims []rotators.Claim) (release func(), holder string, clash rotators.Claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]string{}
	}
	for _, cl := range claims {
		if h, ok := c.m[cl.Account]; ok && h != role {
			return func() {}, h, cl
		}
	}
	var mine []string
	for _, cl := range claims {
		if _, ok := c.m[cl.Account]; !ok {
			c.m[cl.Account] = role
			mine = append(mine, cl.Account)
		}
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, a := range mine {
			delete(c.m, a)
		}
	}, "", rotators.Claim{}
}
