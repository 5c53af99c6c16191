// Package rotators holds one implementation per kind of secret behind one small interface.
// A rotator knows one kind of target (a PostgreSQL server, an SSH host, ...) and nothing of
// Vault, storage, locks or consumers: the rotation protocol in package backend drives it.
package rotators

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Secret is one value of a credential, as named parts ("username", "password", ...).
// It is what versions keep and what creds returns.
type Secret map[string]string

// Clone returns a copy, so that a stored version is never changed through an alias.
func (s Secret) Clone() Secret {
	if s == nil {
		return nil
	}
	c := make(Secret, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// Equal reports whether both secrets hold the same parts.
func (s Secret) Equal(o Secret) bool {
	if len(s) != len(o) {
		return false
	}
	for k, v := range s {
		if ov, ok := o[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// ErrRejected marks a target's clear answer that a credential is not valid (authentication
// failed), as opposed to a target that could not be asked (down, unreachable). Recovery uses
// the difference: only a rejection proves which value is live.
var ErrRejected = errors.New("credential rejected by the target")

// ErrNotApplied marks an Apply error after which the target certainly holds what it held before:
// the change was never sent, or the target answered that it refused it (a lock timeout, a
// permission error). Every other Apply error leaves the outcome unknown: the change may have
// reached the target, so the engine keeps both values until it can ask the target which one
// works (docs/decisions.md, "Unknown is a state").
var ErrNotApplied = errors.New("the target did not change")

// ErrUnreachable marks a check that could not ask the target (down, timed out): not the
// caller's mistake, and no answer either way.
var ErrUnreachable = errors.New("the target could not be asked")

// NotApplied wraps err as ErrNotApplied.
func NotApplied(err error) error { return fmt.Errorf("%w: %w", ErrNotApplied, err) }

// Env is what the engine lends a rotator for one call: the parts of Vault it may use without
// knowing Vault.
type Env struct {
	// Password returns a new random password: the role's Vault password policy when it has one.
	Password func(ctx context.Context) (string, error)
	// HasPolicy is true when the role names a Vault password policy (Password follows it).
	HasPolicy bool
	// Linked holds, for each field of kind FieldRoleRef that is set, the referenced role's
	// settings and current secret (e.g. postgres admin_role).
	Linked map[string]Linked
	// Resources holds the clients the kind keeps open between calls (database sessions); they
	// belong to the mount's engine and are closed with it.
	Resources *Resources
	// Restoring is set when Apply puts back a value the target held before this rotation (a
	// failed rotation rolled back): the value was granted when it was first set, so a grant
	// narrowed since must not keep the login on the value that failed (README "Security model").
	Restoring bool
}

// Linked is another role that this role's rotation depends on.
type Linked struct {
	Name     string
	Settings Settings
	Current  Secret
}

// Target is a rotator bound to one role's settings.
type Target interface {
	// Generate returns the next value. cur is the current value (nil on a first rotation).
	Generate(ctx context.Context, env Env, cur Secret) (Secret, error)
	// Apply makes `to` the valid value at the target, authenticating with `from` (nil when
	// unknown) or with a linked admin. Restoring is Apply(from=new, to=old).
	Apply(ctx context.Context, env Env, from, to Secret) error
	// Verify proves that s works at the target now. A wrapped ErrRejected means the target
	// answered that s is not valid.
	Verify(ctx context.Context, env Env, s Secret) error
}

// Finisher is a target whose Apply has work left once the new value is live (ssh: remove the
// retired key from every host). When recovery rolls an interrupted rotation forward it calls
// Finish before the new value is promoted. Finish must be idempotent: Apply may have done all
// or part of it before the interruption.
type Finisher interface {
	Finish(ctx context.Context, env Env, old, new Secret) error
}

// Settler is a target that may still be changing after its client gave up on a change (a
// statement still running at a database server). SettleTime bounds that: recovery waits that
// long after an unknown outcome before it asks the target which value is live.
type Settler interface {
	SettleTime() time.Duration
}

// Bounded is a target whose calls need other bounds than the engine's defaults (an ssh target
// changes its hosts one after another, so its bounds grow with their number). The engine gives
// Apply and Finish ApplyTimeout, and Verify VerifyTimeout.
type Bounded interface {
	ApplyTimeout() time.Duration
	VerifyTimeout() time.Duration
}

// Accounts is a target whose values belong to one of several accounts (postgres alternating:
// two logins). A rotation changes the account of its new value, so the value that account held
// before (an older kept version) stops working; a failed rotation puts that value back too.
type Accounts interface {
	Account(s Secret) string
}

// privateParts are the parts of a value that are secret, by the names the kinds give them: a copy
// of one outside Vault is an exposure. The others (a username, a public key, a key id) are public.
var privateParts = map[string]bool{"password": true, "private_key": true, "secret": true, "value": true}

// IsPrivatePart reports whether a part of a value is secret.
func IsPrivatePart(name string) bool { return privateParts[name] }

// Grantor is a kind whose role-reference fields grant explicitly (postgres: an admin_role names
// the logins it may manage). Before a role that links to another is stored, CheckGrant decides
// whether the linked roles in env grant it, asking the target when it must (bounded, read only:
// nothing is changed). Its errors name the field at fault and quote no secret (README "Security
// model").
type Grantor interface {
	CheckGrant(ctx context.Context, env Env, s Settings) error
}

// Inheritor is a kind whose roles take settings from a linked role when the write leaves them
// out (postgres: connection_url from admin_role). Inherit fills them into s before validation.
type Inheritor interface {
	Inherit(s *Settings, linked map[string]Linked)
}

// Claim is an account at a target that a role manages, with the field that names it.
type Claim struct {
	Field   string
	Account string // e.g. "127.0.0.1:5432 login app"; never secret
}

// Claimer is a kind whose accounts are managed by one role at most: two roles rotating one
// login would each hold a value the other has replaced. linked holds the settings of the roles
// s links to (Current is not needed), so that a claim can follow a linked role that moved.
type Claimer interface {
	Claims(s Settings, linked map[string]Linked) []Claim
}

// Identifier is a kind with settings that say whose value the role holds (postgres: the login).
// Once the role holds a value, the engine refuses to change them unless the same write imports
// the new account's value: the kept value would otherwise be used as another account's (a
// self-managed role repointed at another login would change that login with its own password).
type Identifier interface {
	IdentityFields() []string
}

// Locator is a kind with settings that say where a value is sent (postgres: connection_url).
// When a write changes one of them on a role that holds a value, the engine proves that value
// at the new place before the write is stored (README "Security model").
type Locator interface {
	LocationFields() []string
}

// Kind is one kind of secret: its role fields, its validation and its binding to a target.
type Kind interface {
	// Name is the role `type`, e.g. "postgres".
	Name() string
	// Fields are the role fields that belong to this kind only.
	Fields() []Field
	// Bind validates settings (type-specific fields, already decoded by their Field types)
	// and returns the target they describe. It does no I/O.
	Bind(s Settings) (Target, error)
	// ImportSecret builds the current secret from the write-only fields supplied at role
	// create (e.g. password), or returns nil when none was supplied.
	ImportSecret(s Settings, supplied map[string]string) (Secret, error)
	// NeedsImport reports why a role cannot be created without a supplied secret ("" = it can
	// rotate on its own at create).
	NeedsImport(s Settings) string
	// Describe returns the parts of creds beyond the secret itself (e.g. connection_url with
	// the password filled in).
	Describe(s Settings, secret Secret) map[string]interface{}
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Kind{}
)

// Register makes a kind available by name; each kind calls it once from init.
func Register(k Kind) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[k.Name()]; dup {
		panic(fmt.Sprintf("rotators: kind %q registered twice", k.Name()))
	}
	registry[k.Name()] = k
}

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	k, ok := registry[name]
	return k, ok
}

// Names returns the registered kind names, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every registered kind, sorted by name.
func All() []Kind {
	names := Names()
	kinds := make([]Kind, 0, len(names))
	for _, n := range names {
		k, _ := Lookup(n)
		kinds = append(kinds, k)
	}
	return kinds
}

// Supplier is a kind whose new value may be supplied by the operator instead of generated: a
// third-party token that only its provider can issue (`rotate/NAME value=...`).
type Supplier interface {
	// SuppliedSecret builds the next value from the supplied one; cur is the current value.
	SuppliedSecret(s Settings, value string, cur Secret) (Secret, error)
}

// Published is one kept value of a role with its lifetime, for kinds that publish public keys.
type Published struct {
	Secret  Secret
	Created time.Time
	// Retired is when a newer value replaced it (zero for the current value).
	Retired time.Time
}

// KeySetPublisher is a kind that publishes the public parts of its values (jwt: a JWK Set).
type KeySetPublisher interface {
	// KeySet returns the document to publish for the kept values, newest first, at time now.
	KeySet(s Settings, values []Published, now time.Time) ([]byte, error)
	// KeySetChanges is the first time after now at which KeySet of the same values would answer
	// another document (a retired key leaving the set); zero when only new values change it.
	// The engine serves a cached document until then.
	KeySetChanges(s Settings, values []Published, now time.Time) time.Time
}

// Retainer is a kind whose values stay needed for a while after a newer value replaced them (jwt:
// tokens signed with a retired key must verify until its verification_ttl has passed). When
// versions_kept would drop such a value, the engine keeps it, and every newer one, up to its own
// limit of kept versions (docs/decisions.md, "Retired values still in use are kept").
type Retainer interface {
	// StillNeeded reports whether the kept value v, retired at v.Retired (zero: current), is
	// still needed at now.
	StillNeeded(s Settings, v Published, now time.Time) bool
}

// Session is one live session at the target opened with one of a role's accounts (postgres: a
// row of pg_stat_activity). It never holds a secret. Fields the target hides from the asking
// account (PostgreSQL without pg_read_all_stats) are left zero and Hidden is set.
type Session struct {
	ID              int64  // the target's session id (postgres: the backend pid)
	Account         string // the login it authenticated as
	Current         bool   // Account is the current value's account
	ApplicationName string
	ClientAddr      string // "" when hidden, or a local (Unix socket) client
	ClientPort      int    // 0 when hidden; -1 for a Unix socket
	Database        string
	State           string
	// Started is when the session was opened, by the target's clock; Age is how long ago, by the
	// target's clock too, so that comparing it with a duration measured here is free of skew.
	Started time.Time
	Age     time.Duration
	// Hidden: the target did not show this session's details (start, address, state).
	Hidden bool
}

// SessionList is what a SessionLister found.
type SessionList struct {
	Sessions  []Session // oldest first, at most the limit asked for
	Truncated bool      // there were more
	// HiddenWhy says, when some sessions are Hidden, what the asking account lacks to see them.
	HiddenWhy string
}

// SessionLister is a target that can list the live sessions of a role's accounts (postgres: who
// is connected with the login now). cur is the current value: it marks the current account, and
// a target without a linked admin authenticates with it. At most limit sessions are returned. The
// target is only read, and the call is bounded like every call to it; sessions the target itself
// holds for the engine (pooled admin sessions) are left out.
type SessionLister interface {
	Sessions(ctx context.Context, env Env, cur Secret, limit int) (SessionList, error)
}
