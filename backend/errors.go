package backend

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// ErrRoleNotFound is returned for an operation on a role that does not exist.
var ErrRoleNotFound = errors.New("role not found")

// ErrOutcomePending answers a creds read of the current version while a rotation's outcome is
// still unknown past the read's wait: the stored value may be dead, so none is handed out. The
// API answers it with 503; a client retries.
var ErrOutcomePending = errors.New("a rotation of this role is in progress and its outcome is not known yet; retry shortly")

// ErrTargetUnavailable answers a write whose grant could not be checked at the target (down,
// timed out): not the caller's mistake, so not a 400; the API answers 503 and a client retries.
var ErrTargetUnavailable = errors.New("the target could not be asked to check this write; nothing was stored")

// errShuttingDown refuses a rotation that would start while the mount is being closed.
var errShuttingDown = errors.New("the mount is shutting down; try again")

// UserError is a mistake in the request: the API answers it with a 400 and its message.
type UserError struct{ err error }

func (u *UserError) Error() string { return u.err.Error() }
func (u *UserError) Unwrap() error { return u.err }

func userError(err error) error { return &UserError{err: err} }

// IsUserError reports whether err is the caller's mistake.
func IsUserError(err error) bool {
	var u *UserError
	return errors.As(err, &u)
}

// redacted replaces every part of the given secrets in msg, so that no error text that reaches
// a response, a log line or the history can carry a value, whatever a driver put in it.
func redacted(msg string, secrets ...rotators.Secret) string {
	for _, s := range secrets {
		for _, v := range s {
			if len(v) < 4 || isPublicPart(v, s) {
				continue
			}
			// As given, and URL-escaped (a password inside a connection string).
			for _, form := range []string{v, url.QueryEscape(v), strings.ReplaceAll(url.QueryEscape(v), "+", "%20")} {
				msg = strings.ReplaceAll(msg, form, "[redacted]")
			}
		}
	}
	return msg
}

// isPublicPart keeps names (a username) readable in errors; every other part is redacted.
func isPublicPart(v string, s rotators.Secret) bool {
	return v == s["username"]
}

// maxErrorText bounds one error text kept in a response, the state or the history, so that a
// chatty target (remote stderr, a driver's message) cannot grow a role's storage without bound.
const maxErrorText = 2048

// capped cuts msg to maxErrorText bytes at a UTF-8 boundary and says that it did.
func capped(msg string) string { return cappedTo(msg, maxErrorText) }

// cappedTo cuts msg to max bytes at a UTF-8 boundary and says that it did.
func cappedTo(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " [cut]"
}
