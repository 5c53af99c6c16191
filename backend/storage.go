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
)

// SealWrapPrefixes are the storage prefixes the mount declares in PathsSpecial.SealWrapStorage.
var SealWrapPrefixes = []string{rolePrefix, statePrefix, pendingPrefix}

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

// push makes v the current version and keeps at most keep versions.
func (s *State) push(v Version, keep int) {
	s.Versions = append([]Version{v}, s.Versions...)
	if keep > 0 && len(s.Versions) > keep {
		s.Versions = s.Versions[:keep]
	}
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

func (e *Engine) loadState(ctx context.Context, name string) (*State, error) {
	var st State
	if _, err := getJSON(ctx, e.storage, statePrefix+name, &st); err != nil {
		return nil, err
	}
	return &st, nil
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
