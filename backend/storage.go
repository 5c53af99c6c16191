package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Storage paths. Everything that holds a secret value lives under SealWrapPrefixes.
const (
	configPath    = "config"
	rolePrefix    = "role/"
	statePrefix   = "state/"
	pendingPrefix = "pending/"
	historyPrefix = "history/"
	jobPrefix     = "job/" // rotate-many job records: role names and outcomes, no values
)

// SealWrapPrefixes are the storage prefixes the mount declares in PathsSpecial.SealWrapStorage.
// The config entry is among them: notify_url is often a bearer-style URL whose path or query is
// the credential.
var SealWrapPrefixes = []string{configPath, rolePrefix, statePrefix, pendingPrefix}

// Version status names, as versions/:name shows them.
const (
	VersionActive   = "active"
	VersionPrevious = "previous"
)

// Version is one kept value of a role's secret.
type Version struct {
	Number  int             `json:"number"`
	Created time.Time       `json:"created"`
	Trigger Trigger         `json:"trigger"`
	Secret  rotators.Secret `json:"secret"`
}

// State is the runtime record of a role: its kept versions (newest first, [0] is current) and
// its rotation health. Versions and health share one record so that promotion is one write.
type State struct {
	Versions            []Version `json:"versions"`
	LastRotated         time.Time `json:"last_rotated"`
	LastOutcome         string    `json:"last_outcome,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	// Failing parks the role: the schedule no longer retries it until it is written or rotated by hand.
	Failing bool `json:"failing"`
	// RetryAt is when a failed scheduled rotation is tried again (zero: follow the schedule).
	RetryAt time.Time `json:"retry_at,omitempty"`
	// RemindedAt is when the last due reminder of a manual-only role was sent.
	RemindedAt time.Time `json:"reminded_at,omitempty"`

	// retain says whether the role's kind still needs a kept value that versions_kept would
	// drop (rotators.Retainer); nil: it never does. Set by loadState and by a role write.
	retain func(v rotators.Published, now time.Time) bool
}

// Current returns the active version, or nil before the first one.
func (s *State) Current() *Version {
	if s == nil || len(s.Versions) == 0 {
		return nil
	}
	return &s.Versions[0]
}

// Version returns kept version n, or nil.
func (s *State) Version(n int) *Version {
	for i := range s.Versions {
		if s.Versions[i].Number == n {
			return &s.Versions[i]
		}
	}
	return nil
}

// push makes v the current version and trims the kept versions to keep, as of v's creation.
func (s *State) push(v Version, keep int) {
	s.Versions = append([]Version{v}, s.Versions...)
	s.trim(keep, v.Created)
}

// trim keeps the newest keep versions, and beyond them every version up to the oldest one the
// role's kind still needs at now (a retired JWT key inside its verification_ttl), at most
// MaxVersionsKept in all (docs/decisions.md, "Retired values still in use are kept"). A version
// is retired when the next newer one was created; the list stays contiguous so that this holds
// for every kept version.
func (s *State) trim(keep int, now time.Time) {
	if keep <= 0 || len(s.Versions) <= keep {
		return
	}
	n := keep
	if s.retain != nil {
		for i := min(len(s.Versions), MaxVersionsKept) - 1; i >= keep; i-- {
			v := s.Versions[i]
			if s.retain(rotators.Published{Secret: v.Secret, Created: v.Created, Retired: s.Versions[i-1].Created}, now) {
				n = i + 1
				break
			}
		}
	}
	s.Versions = s.Versions[:n]
}

// retention is the role's kind's answer to whether a kept value is still needed, or nil when the
// kind keeps nothing beyond versions_kept.
func retention(role *Role) func(rotators.Published, time.Time) bool {
	kind, ok := rotators.Lookup(role.Type)
	if !ok {
		return nil
	}
	r, ok := kind.(rotators.Retainer)
	if !ok {
		return nil
	}
	settings := role.Settings
	return func(v rotators.Published, now time.Time) bool { return r.StillNeeded(settings, v, now) }
}

// Pending is the write-ahead record of a rotation in flight: both values, stored before the
// target is touched, so that whichever value is live at the target is always in Vault. Phase
// (phases.go) says how far the rotation got.
type Pending struct {
	Old        rotators.Secret `json:"old,omitempty"`
	New        rotators.Secret `json:"new"`
	OldVersion int             `json:"old_version"`
	NewVersion int             `json:"new_version"`
	Trigger    Trigger         `json:"trigger"`
	Phase      Phase           `json:"phase"`
	Started    time.Time       `json:"started"`
	// Displaced is the kept value the change overwrites when it is not Old (alternating: the
	// previous password of the login being changed); a failed rotation puts it back too.
	Displaced rotators.Secret `json:"displaced,omitempty"`
	// Deployed: consumers may have restarted on the new value, so a rollback restarts them again.
	Deployed bool `json:"deployed,omitempty"`
	// SettleAt is when the target can no longer be changing after a change whose answer was lost.
	SettleAt time.Time `json:"settle_at,omitempty"`
	// Attempts counts the recoveries that could not resolve the record; RetryAt is when
	// recovery may try again.
	Attempts int       `json:"attempts,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitempty"`
	// LegacyStep is the step name records stored before phases carried (read once, migrated).
	LegacyStep string `json:"step,omitempty"`
}

func getJSON(ctx context.Context, s logical.Storage, key string, out interface{}) (bool, error) {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if entry == nil {
		return false, nil
	}
	if err := json.Unmarshal(entry.Value, out); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, s logical.Storage, key string, in interface{}) error {
	entry, err := logical.StorageEntryJSON(key, in)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func deleteKey(ctx context.Context, s logical.Storage, key string) error {
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (e *Engine) loadRole(ctx context.Context, name string) (*Role, error) {
	var r Role
	ok, err := getJSON(ctx, e.storage, rolePrefix+name, &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// loadRoleAndState loads a role and its state; ErrRoleNotFound when the role does not exist.
func (e *Engine) loadRoleAndState(ctx context.Context, name string) (*Role, *State, error) {
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if role == nil {
		return nil, nil, ErrRoleNotFound
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return role, st, nil
}

func (e *Engine) loadState(ctx context.Context, name string) (*State, error) {
	var st State
	if _, err := getJSON(ctx, e.storage, statePrefix+name, &st); err != nil {
		return nil, err
	}
	st.retain = e.storedRetention(ctx, name)
	return &st, nil
}

// storedRetention is the retention of the stored role, read only when a trim first asks (a
// rotation whose kept versions are full), so that loading a state costs one read. Callers that
// trim hold the role's lock, so the role read is the one the rotation runs with. When the role
// cannot be read, every value is kept, up to MaxVersionsKept.
func (e *Engine) storedRetention(ctx context.Context, name string) func(rotators.Published, time.Time) bool {
	var (
		resolved bool
		retain   func(rotators.Published, time.Time) bool
	)
	return func(v rotators.Published, now time.Time) bool {
		if !resolved {
			resolved = true
			role, err := e.loadRole(ctx, name)
			switch {
			case err != nil:
				e.logger.Error("kept versions: cannot read the role; keeping every version", "role", name, "error", err)
				retain = func(rotators.Published, time.Time) bool { return true }
			case role != nil:
				retain = retention(role)
			}
		}
		return retain != nil && retain(v, now)
	}
}

func (e *Engine) loadPending(ctx context.Context, name string) (*Pending, error) {
	var p Pending
	ok, err := getJSON(ctx, e.storage, pendingPrefix+name, &p)
	if err != nil || !ok {
		return nil, err
	}
	p.migratePhase()
	return &p, nil
}
