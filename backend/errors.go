package backend

import (
	"errors"
	"strings"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// ErrRoleNotFound is returned for an operation on a role that does not exist.
var ErrRoleNotFound = errors.New("role not found")

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
			if len(v) >= 4 && !isPublicPart(v, s) {
				msg = strings.ReplaceAll(msg, v, "[redacted]")
			}
		}
	}
	return msg
}

// isPublicPart keeps names (a username) readable in errors; every other part is redacted.
func isPublicPart(v string, s rotators.Secret) bool {
	return v == s["username"]
}
