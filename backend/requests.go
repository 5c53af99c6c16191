// The engine's entry points for manual rotations, and who asked for them.

package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Requester is who asked for a rotation, as Vault's request names them.
type Requester struct {
	EntityID string `json:"entity_id,omitempty"`
	Accessor string `json:"accessor,omitempty"`
}

type requesterKey struct{}

// WithRequester returns a context that carries who made the request; the paths set it.
func WithRequester(ctx context.Context, by Requester) context.Context {
	return context.WithValue(ctx, requesterKey{}, by)
}

func requesterFrom(ctx context.Context) Requester {
	by, _ := ctx.Value(requesterKey{}).(Requester)
	return by
}

// Rotate rotates a role now (manual trigger).
func (e *Engine) Rotate(ctx context.Context, name string) (*Outcome, error) {
	return e.rotate(ctx, name, rotateRequest{trigger: TriggerManual})
}

// RotateTo rotates a role now to a value the operator supplies (a third-party token that only
// its provider can issue), with the whole protocol.
func (e *Engine) RotateTo(ctx context.Context, name, value string) (*Outcome, error) {
	return e.rotate(ctx, name, rotateRequest{trigger: TriggerManual, supplied: &value})
}

// supplied turns an operator-supplied value into the role's next secret, or a user error.
func supplied(role *Role, st *State, value string) (rotators.Secret, error) {
	kind, err := role.Kind()
	if err != nil {
		return nil, err
	}
	sup, ok := kind.(rotators.Supplier)
	if !ok {
		return nil, userError(fmt.Errorf("value: a %s role does not take a supplied value; rotate without it", role.Type))
	}
	// Bounded before the kind parses it, and as stored before anything is stored: a value too
	// large for its kept versions would otherwise fail at promote.
	if len(value) > rotators.MaxValueBytes {
		return nil, userError(fmt.Errorf("value: longer than %d bytes", rotators.MaxValueBytes))
	}
	var cur rotators.Secret
	if v := st.Current(); v != nil {
		cur = v.Secret
	}
	next, err := sup.SuppliedSecret(role.Settings, value, cur)
	if err != nil {
		return nil, userError(err)
	}
	if err := rotators.CheckValueSize("value", next); err != nil {
		return nil, userError(err)
	}
	if cur != nil && next.Equal(cur) {
		return nil, userError(errors.New("value: equal to the current value; a rotation needs a new one"))
	}
	return next, nil
}

// Rollback re-applies kept version n (0: the previous one) through the whole protocol; it
// becomes a new current version with the old value.
func (e *Engine) Rollback(ctx context.Context, name string, n int) (*Outcome, error) {
	if err := checkVersionNumber(n); err != nil {
		return nil, err
	}
	unlock := e.locks.lock(name)
	role, err := e.loadRole(ctx, name)
	var st *State
	if err == nil && role != nil {
		st, err = e.loadState(ctx, name)
	}
	unlock()
	if err != nil {
		return nil, err
	}
	if role == nil {
		return nil, ErrRoleNotFound
	}
	cur := st.Current()
	if cur == nil {
		return nil, userError(errors.New("version: the role has no value yet, so nothing to roll back to"))
	}
	var v *Version
	if n == 0 {
		if len(st.Versions) < 2 {
			return nil, userError(errors.New("version: there is no previous version to roll back to"))
		}
		v = &st.Versions[1]
	} else if v = st.Version(n); v == nil {
		return nil, userError(fmt.Errorf("version: %d is not a kept version", n))
	}
	if v.Number == cur.Number {
		return nil, userError(fmt.Errorf("version: %d is already the current version", n))
	}
	// The value is re-read under the lock by rotate; a concurrent rotation between the two
	// locks only means the rollback applies to the newer current value, which is still correct.
	return e.rotate(ctx, name, rotateRequest{trigger: TriggerRollback, value: v.Secret})
}
