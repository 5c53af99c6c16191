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
// called once the role is stored or the write failed.
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
	changed := existing == nil || !sameSettings(existing.Settings, role.Settings)
	if g, ok := kind.(rotators.Grantor); ok && changed {
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
			return release, userError(errors.New(capped(redacted(err.Error(), linked...))))
		}
	}
	if c, ok := kind.(rotators.Claimer); ok && changed {
		return e.claim(ctx, role, c)
	}
	return release, nil
}

// claim reserves the role's accounts: refused when another role manages one of them, stored or
// being written.
func (e *Engine) claim(ctx context.Context, role *Role, c rotators.Claimer) (func(), error) {
	claims := c.Claims(role.Settings)
	release, holder, clash := e.claims.reserve(role.Name, claims)
	if holder != "" {
		return release, userError(fmt.Errorf("%s: %s is being claimed by role %q, written at this moment", clash.Field, clash.Account, holder))
	}
	names, err := e.ListRoles(ctx)
	if err != nil {
		release()
		return func() {}, err
	}
	for _, n := range names {
		if n == role.Name {
			continue
		}
		other, err := e.loadRole(ctx, n)
		if err != nil {
			release()
			return func() {}, err
		}
		if other == nil || other.Type != role.Type {
			continue
		}
		for _, theirs := range c.Claims(other.Settings) {
			for _, mine := range claims {
				if mine.Account == theirs.Account {
					release()
					return func() {}, userError(fmt.Errorf("%s: %s is already managed by role %q; one login, one role", mine.Field, mine.Account, n))
				}
			}
		}
	}
	return release, nil
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

// proveAtNewLocation verifies the role's current value where the write moves it, before the
// write is stored: a value is only ever sent where it was proven to work.
func (e *Engine) proveAtNewLocation(ctx context.Context, role *Role, kind rotators.Kind, st *State) error {
	cur := st.Current()
	if cur == nil {
		return nil
	}
	if err := e.verifyImport(ctx, role, kind, cur.Secret); err != nil {
		var ue *UserError
		if errors.As(err, &ue) {
			return userError(fmt.Errorf("the role's current value does not work at the new location, so the write was not stored: %s", ue.Error()))
		}
		return err
	}
	return nil
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
