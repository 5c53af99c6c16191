package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Who still uses a role's secret (README "Finding forgotten services"): the kind lists the live
// sessions of the role's accounts at the target (rotators.SessionLister), the engine owns the
// rules: which roles have sessions, the bound, what "opened before the current version" means,
// and what a deploy makes of sessions that no restarted consumer explains.

// MaxSessions bounds one list of sessions.
const MaxSessions = 1000

// maxForgottenReported bounds the forgotten consumers one rotation records (the history entry
// stays small); the rest are counted in a warning.
const maxForgottenReported = 50

// Bounds of the look after a deploy: the whole look, and the pause before the second list that
// lets the sessions of the consumers just restarted finish closing.
const (
	sessionsTimeout  = 45 * time.Second
	forgottenRecheck = time.Second
)

// SessionView is one live session of a role's accounts.
type SessionView struct {
	rotators.Session
	// OpenedBeforeCurrent is true when the session was opened before the current version was
	// made, so it authenticated with an earlier value; nil when the target hid its start.
	OpenedBeforeCurrent *bool
}

// SessionsResult is a role's live sessions.
type SessionsResult struct {
	Sessions       []SessionView
	Truncated      bool
	CurrentVersion int
	Warnings       []string
}

// ForgottenConsumer is a session of a role's account that was opened before a rotation and is
// still open after every consumer was restarted and passed its health checks: whatever holds it
// was not restarted, and fails at its next reconnect unless it reads the secret again.
type ForgottenConsumer struct {
	Login           string    `json:"login"`
	ApplicationName string    `json:"application_name"`
	ClientAddr      string    `json:"client_addr,omitempty"`
	ClientPort      int       `json:"client_port,omitempty"`
	BackendStart    time.Time `json:"backend_start"`
	AgeSeconds      int64     `json:"age_seconds"`
}

// lister is the role's session lister, or the 400 of a kind without sessions.
func lister(role *Role, t rotators.Target) (rotators.SessionLister, error) {
	l, ok := t.(rotators.SessionLister)
	if !ok {
		return nil, userError(fmt.Errorf("a %s role has no sessions", role.Type))
	}
	return l, nil
}

// Sessions lists the live sessions of the role's accounts at its target, each marked with whether
// it was opened before the current version.
func (e *Engine) Sessions(ctx context.Context, name string) (*SessionsResult, error) {
	if err := ValidateRoleName(name); err != nil {
		return nil, userError(err)
	}
	role, err := e.loadRole(ctx, name)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return nil, ErrRoleNotFound
	}
	kind, err := role.Kind()
	if err != nil {
		return nil, err
	}
	t, err := kind.Bind(role.Settings)
	if err != nil {
		return nil, err
	}
	l, err := lister(role, t)
	if err != nil {
		return nil, err
	}
	st, err := e.loadState(ctx, name)
	if err != nil {
		return nil, err
	}
	cur := st.Current()
	if cur == nil {
		return nil, userError(errors.New("the role has no current value yet"))
	}
	env, err := e.env(ctx, role, kind)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, sessionsTimeout)
	defer cancel()
	list, err := l.Sessions(lctx, env, cur.Secret, MaxSessions)
	if err != nil {
		text := capped(redacted(err.Error(), cur.Secret))
		if errors.Is(err, rotators.ErrUnreachable) {
			return nil, fmt.Errorf("%w: %s", rotators.ErrUnreachable, text)
		}
		return nil, userError(errors.New(text))
	}
	// Ages are the target's; the version's age is ours: neither clock is compared with the other.
	sinceCurrent := e.now().Sub(cur.Created)
	res := &SessionsResult{Truncated: list.Truncated, CurrentVersion: cur.Number}
	hidden := 0
	// application_name is whatever a client said: a pasted connection string may hold any value
	// the role kept, or its admin's.
	known := make([]rotators.Secret, 0, len(st.Versions)+len(env.Linked))
	for _, v := range st.Versions {
		known = append(known, v.Secret)
	}
	for _, l := range env.Linked {
		known = append(known, l.Current)
	}
	for _, s := range list.Sessions {
		s.ApplicationName = redacted(s.ApplicationName, known...)
		v := SessionView{Session: s}
		if s.Hidden {
			hidden++
		} else {
			before := s.Age > sinceCurrent
			v.OpenedBeforeCurrent = &before
		}
		res.Sessions = append(res.Sessions, v)
	}
	if hidden > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d session(s) listed without start, address or state: %s", hidden, list.HiddenWhy))
	}
	if list.Truncated {
		res.Warnings = append(res.Warnings, fmt.Sprintf("more than %d sessions: only the %d oldest are listed", MaxSessions, MaxSessions))
	}
	return res, nil
}

// lookAgain runs after a deploy whose consumers all restarted and passed their health checks:
// a session of the role's accounts opened before the rotation started that is still open was
// not opened by a restarted consumer (a restart closes the container's sessions), so whatever
// holds it was forgotten. Reported as a warning; with strict_consumers, sessions found fail the
// deploy and the rotation rolls back.
func (e *Engine) lookAgain(ctx context.Context, r *run, p *Pending) error {
	l, ok := r.target.(rotators.SessionLister)
	if !ok || len(r.deploy.consumers) == 0 {
		return nil
	}
	found, warnings := e.forgotten(ctx, r, l, p, nil)
	if len(found) > 0 {
		// The sessions of a consumer just restarted may take a moment to close at the target:
		// only those still open a moment later are reported.
		select {
		case <-ctx.Done():
		case <-time.After(forgottenRecheck):
		}
		found, warnings = e.forgotten(ctx, r, l, p, found)
	}
	reported := found
	if len(reported) > maxForgottenReported {
		warnings = append(warnings, fmt.Sprintf("%d more possible forgotten consumers are not listed", len(reported)-maxForgottenReported))
		reported = reported[:maxForgottenReported]
	}
	r.out.Forgotten = make([]ForgottenConsumer, 0, len(reported))
	for _, s := range reported {
		r.out.Forgotten = append(r.out.Forgotten, ForgottenConsumer{Login: s.Account, ApplicationName: s.ApplicationName,
			ClientAddr: s.ClientAddr, ClientPort: s.ClientPort, BackendStart: s.Started, AgeSeconds: int64(s.Age / time.Second)})
	}
	r.out.Warnings = append(r.out.Warnings, warnings...)
	if len(found) > 0 {
		e.logger.Warn("possible forgotten consumers", "role", r.role.Name, "sessions", len(found))
	}
	// Only sessions actually found fail a strict deploy: a look that could not be made (a timeout,
	// an admin without pg_read_all_stats) is a warning, or every rotation of such a role would roll
	// back after its consumers were healthy.
	if !r.role.StrictConsumers || len(found) == 0 {
		return nil
	}
	return fmt.Errorf("strict_consumers: %d session(s) opened before the rotation are still open after every consumer restarted: %s",
		len(found), describeForgotten(r.out.Forgotten))
}

// forgotten lists the role's sessions and returns those opened before the rotation started, and
// the warnings of a list that could not be read or hid sessions. With among, only sessions also in
// among (same id and start) count.
func (e *Engine) forgotten(ctx context.Context, r *run, l rotators.SessionLister, p *Pending, among []rotators.Session) ([]rotators.Session, []string) {
	lctx, cancel := context.WithTimeout(ctx, sessionsTimeout)
	defer cancel()
	list, err := l.Sessions(lctx, r.env, p.New, MaxSessions)
	if err != nil {
		return nil, []string{"the sessions of the role's logins could not be read, so forgotten consumers were not looked for: " + capped(redacted(err.Error(), p.Old, p.New))}
	}
	// How long ago the rotation started, by our clock, measured after the list: a session whose
	// age (by the target's clock) is longer was certainly opened before the rotation started.
	sinceStart := e.now().Sub(p.Started)
	var found []rotators.Session
	hidden := 0
	for _, s := range list.Sessions {
		switch {
		case s.Hidden:
			hidden++
		case s.Age > sinceStart && (among == nil || containsSession(among, s)):
			s.ApplicationName = redacted(s.ApplicationName, r.secrets...)
			found = append(found, s)
		}
	}
	var warnings []string
	if hidden > 0 {
		warnings = append(warnings, fmt.Sprintf("%d session(s) of the role's logins could not be inspected for forgotten consumers: %s", hidden, list.HiddenWhy))
	}
	if list.Truncated {
		warnings = append(warnings, fmt.Sprintf("more than %d sessions of the role's logins: only the %d oldest were looked at", MaxSessions, MaxSessions))
	}
	return found, warnings
}

func containsSession(list []rotators.Session, s rotators.Session) bool {
	for _, o := range list {
		if o.ID == s.ID && o.Account == s.Account && o.Started.Equal(s.Started) {
			return true
		}
	}
	return false
}

// describeForgotten names each forgotten consumer in one line: login, application, address, age.
func describeForgotten(list []ForgottenConsumer) string {
	parts := make([]string, 0, len(list))
	for _, f := range list {
		from := "a local socket"
		if f.ClientAddr != "" {
			from = fmt.Sprintf("%s:%d", f.ClientAddr, f.ClientPort)
		}
		app := f.ApplicationName
		if app == "" {
			app = "(no application_name)"
		}
		parts = append(parts, fmt.Sprintf("%q from %s on login %q, %ds old", app, from, f.Login, f.AgeSeconds))
	}
	return strings.Join(parts, ", ")
}

// ForgottenWarning is the one-line warning a rotation answer carries for its forgotten consumers.
func ForgottenWarning(list []ForgottenConsumer) string {
	if len(list) == 0 {
		return ""
	}
	return fmt.Sprintf("possible forgotten consumers: %d session(s) opened before this rotation are still open after every consumer restarted (%s); "+
		"whatever holds them was not restarted and fails at its next reconnect unless it reads the new secret", len(list), describeForgotten(list))
}
