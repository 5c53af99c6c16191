package backend

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Defaults and bounds of the common role fields (README "PostgreSQL passwords", its role fields;
// docs/decisions.md, "Every input is bounded").
const (
	DefaultVersionsKept = 5
	MinVersionsKept     = 2 // the previous value must survive a rotation
	MaxVersionsKept     = 100
	MinRotationPeriod   = 5 * time.Second
	MaxRotationPeriod   = 5 * 365 * 24 * time.Hour
	MaxRotationWindow   = 365 * 24 * time.Hour
	MaxHealthTimeout    = time.Hour
	maxRoleNameLen      = 128

	maxScheduleLen    = 128
	maxPolicyNameLen  = 128
	MaxConsumers      = 16
	maxConsumerLen    = 256
	MaxHealthChecks   = 16
	maxHealthCheckLen = 512
	MaxTags           = 16
	maxTagLen         = 128
	// MaxRoleBytes bounds a role as stored (its JSON), whatever its fields hold.
	MaxRoleBytes = 32 << 10
)

var roleNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidateRoleName rejects names that could escape the role's storage key or a URL path.
func ValidateRoleName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("name: required")
	case len(name) > maxRoleNameLen:
		return fmt.Errorf("name: longer than %d characters", maxRoleNameLen)
	case strings.Contains(name, ".."):
		return fmt.Errorf("name: %q must not contain \"..\"", name)
	case !roleNameRe.MatchString(name):
		return fmt.Errorf("name: %q may hold only letters, digits, '_', '-' and '.', and must start with a letter or digit", name)
	}
	return nil
}

// Role is one secret under rotation: its common settings and its kind's settings.
type Role struct {
	Name             string            `json:"name"`
	Type             string            `json:"type"`
	RotationPeriod   time.Duration     `json:"rotation_period,omitempty"`
	RotationSchedule string            `json:"rotation_schedule,omitempty"`
	RotationWindow   time.Duration     `json:"rotation_window,omitempty"`
	AutoRotate       bool              `json:"auto_rotate"`
	VersionsKept     int               `json:"versions_kept"`
	PasswordPolicy   string            `json:"password_policy,omitempty"`
	Settings         rotators.Settings `json:"settings"`

	// Consumers are restarted, in order, on every rotation; HealthChecks must then pass within
	// HealthTimeout (zero: DefaultHealthTimeout).
	Consumers     []string      `json:"consumers,omitempty"`
	HealthChecks  []string      `json:"health_checks,omitempty"`
	HealthTimeout time.Duration `json:"health_timeout,omitempty"`
	// KeepFailedDeploy is rollback_on_failure=false, stored inverted so that the zero value
	// is the safe default.
	KeepFailedDeploy bool `json:"keep_failed_deploy,omitempty"`
	// StrictConsumers turns possible forgotten consumers found after a deploy (or a look that
	// could not be made) into a failed deploy (README "Finding forgotten services").
	StrictConsumers bool `json:"strict_consumers,omitempty"`
	// Tags are free-form labels (owner:alice, team:payments) that select roles for rotate-many.
	Tags []string `json:"tags,omitempty"`
}

// validateTags bounds the tags: printable, no comma (the list separator), no surrounding space.
func validateTags(tags []string) error {
	if err := checkList(FieldTags, tags, MaxTags, maxTagLen); err != nil {
		return err
	}
	for i, tag := range tags {
		if tag == "" || strings.TrimSpace(tag) != tag || strings.ContainsRune(tag, ',') || strings.IndexFunc(tag, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("%s: item %d must be printable, without commas or surrounding spaces", FieldTags, i+1)
		}
	}
	return nil
}

// RollbackOnFailure reports whether a failed deploy rolls the target back.
func (r *Role) RollbackOnFailure() bool { return !r.KeepFailedDeploy }

// HealthTimeoutOrDefault is the role's health_timeout, or the default.
func (r *Role) HealthTimeoutOrDefault() time.Duration {
	if r.HealthTimeout > 0 {
		return r.HealthTimeout
	}
	return DefaultHealthTimeout
}

// validateDeploy checks the consumers and health checks.
func (r *Role) validateDeploy() error {
	if err := checkList("consumers", r.Consumers, MaxConsumers, maxConsumerLen); err != nil {
		return err
	}
	if err := checkList("health_checks", r.HealthChecks, MaxHealthChecks, maxHealthCheckLen); err != nil {
		return err
	}
	if _, err := consumers.ParseAll(r.Consumers); err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	if _, err := consumers.ParseHealthChecks(r.HealthChecks); err != nil {
		return fmt.Errorf("health_checks: %w", err)
	}
	if r.HealthTimeout < 0 || r.HealthTimeout > MaxHealthTimeout {
		return fmt.Errorf("health_timeout: must be between 1s and 1h")
	}
	return nil
}

// checkList bounds a list field's item count and the length of each item; the error names the
// field and never quotes an item.
func checkList(field string, list []string, maxItems, maxLen int) error {
	if len(list) > maxItems {
		return fmt.Errorf("%s: more than %d items", field, maxItems)
	}
	for i, item := range list {
		if len(item) > maxLen {
			return fmt.Errorf("%s: item %d is longer than %d bytes", field, i+1, maxLen)
		}
	}
	return nil
}

// Kind returns the role's rotator kind.
func (r *Role) Kind() (rotators.Kind, error) {
	k, ok := rotators.Lookup(r.Type)
	if !ok {
		return nil, fmt.Errorf("role %q has unknown type %q", r.Name, r.Type)
	}
	return k, nil
}

// validateSchedule checks the common scheduling fields together.
func (r *Role) validateSchedule() error {
	switch {
	case r.RotationPeriod != 0 && r.RotationSchedule != "":
		return fmt.Errorf("rotation_period and rotation_schedule: give one, not both")
	case r.RotationPeriod == 0 && r.RotationSchedule == "":
		return fmt.Errorf("rotation_period or rotation_schedule: one is required (a secret that is never rotated is the mistake this engine exists to prevent)")
	case r.RotationPeriod < 0:
		return fmt.Errorf("rotation_period: must be positive")
	case r.RotationPeriod != 0 && r.RotationPeriod < MinRotationPeriod:
		return fmt.Errorf("rotation_period: must be at least %s", MinRotationPeriod)
	case r.RotationPeriod > MaxRotationPeriod:
		return fmt.Errorf("rotation_period: must be at most 43800h (5 years)")
	case r.RotationWindow < 0:
		return fmt.Errorf("rotation_window: must be positive")
	case r.RotationWindow > MaxRotationWindow:
		return fmt.Errorf("rotation_window: must be at most 8760h (a year)")
	case r.RotationWindow != 0 && r.RotationSchedule == "":
		return fmt.Errorf("rotation_window: only used with rotation_schedule")
	case len(r.RotationSchedule) > maxScheduleLen:
		return fmt.Errorf("rotation_schedule: longer than %d bytes", maxScheduleLen)
	}
	if r.RotationSchedule != "" {
		sched, err := parseSchedule(r.RotationSchedule)
		if err != nil {
			return fmt.Errorf("rotation_schedule: %w", err)
		}
		// robfig/cron answers the zero time when nothing matches within five years: a date
		// that does not exist (30 February, 31 April) would silently never rotate.
		if sched.Next(time.Now()).IsZero() {
			return fmt.Errorf("rotation_schedule: %q never fires: no date matches it (e.g. 30 February or 31 April)", r.RotationSchedule)
		}
	}
	if r.VersionsKept < MinVersionsKept || r.VersionsKept > MaxVersionsKept {
		return fmt.Errorf("versions_kept: must be between %d and %d", MinVersionsKept, MaxVersionsKept)
	}
	return nil
}

// parseSchedule parses a standard 5-field cron expression, evaluated in UTC.
func parseSchedule(expr string) (cron.Schedule, error) {
	if len(strings.Fields(expr)) != 5 {
		return nil, fmt.Errorf("%q is not a 5-field cron expression (minute hour day-of-month month day-of-week)", expr)
	}
	return cron.ParseStandard("TZ=UTC " + expr)
}

// NextRotation is when the schedule next asks for a rotation, given the last one; zero when
// the role is never rotated by the schedule.
func (r *Role) NextRotation(st *State, now time.Time) time.Time {
	if !r.AutoRotate || st.Failing {
		return time.Time{}
	}
	if !st.RetryAt.IsZero() {
		return st.RetryAt
	}
	return r.ScheduledAfter(st.LastRotated, now)
}

// NextReminder is when a role that is never rotated by the schedule (auto_rotate=false) is due
// for its reminder: at its due time, then once a period after the last reminder.
func (r *Role) NextReminder(st *State, now time.Time) time.Time {
	if r.AutoRotate || st.Current() == nil {
		return time.Time{}
	}
	due := r.ScheduledAfter(st.LastRotated, now)
	if st.RemindedAt.Before(due) {
		return due
	}
	return r.ScheduledAfter(st.RemindedAt, now)
}

// NextWake is when the scheduler next has work for the role: a rotation, or a reminder.
func (r *Role) NextWake(st *State, now time.Time) time.Time {
	if r.AutoRotate {
		return r.NextRotation(st, now)
	}
	return r.NextReminder(st, now)
}

// ScheduledAfter is the first scheduled time after last. With a rotation window, a scheduled
// time whose window has passed by now is skipped in favour of the next one.
func (r *Role) ScheduledAfter(last, now time.Time) time.Time {
	if r.RotationPeriod > 0 {
		return last.Add(r.RotationPeriod)
	}
	sched, err := parseSchedule(r.RotationSchedule)
	if err != nil {
		return time.Time{} // validated at write; unreachable for stored roles
	}
	next := sched.Next(last)
	if r.RotationWindow > 0 && now.After(next.Add(r.RotationWindow)) {
		next = sched.Next(now)
	}
	return next
}

// IsDue reports whether the schedule asks for a rotation now.
func (r *Role) IsDue(st *State, now time.Time) bool {
	next := r.NextRotation(st, now)
	return !next.IsZero() && !now.Before(next)
}
