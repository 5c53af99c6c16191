package backend

import (
	"context"
	"crypto/rand"
	"fmt"
)

// MaxPasswordBytes bounds a password a Vault password policy generates: its length is the
// policy's, so an unbounded one could make a value too large for its kept versions. Even in
// characters that JSON escapes to six bytes, 512 bytes and a username fit rotators.MaxValueBytes.
const MaxPasswordBytes = 512

// passwordGenerator returns the role's password source: its Vault password policy, or
// crypto/rand.Text (26 base32 characters, 130 bits: nothing to quote in a URL, shell or config).
func (e *Engine) passwordGenerator(policy string) func(context.Context) (string, error) {
	if policy != "" && e.system != nil {
		return func(ctx context.Context) (string, error) {
			pw, err := e.system.GeneratePasswordFromPolicy(ctx, policy)
			if err != nil {
				return "", fmt.Errorf("password_policy %q: %w", policy, err)
			}
			if len(pw) > MaxPasswordBytes {
				return "", fmt.Errorf("password_policy %q: makes passwords of %d bytes, more than %d", policy, len(pw), MaxPasswordBytes)
			}
			return pw, nil
		}
	}
	return func(context.Context) (string, error) { return rand.Text(), nil }
}
