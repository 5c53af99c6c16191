package backend

import (
	"context"
	"crypto/rand"
	"fmt"
)

// passwordGenerator returns the role's password source: its Vault password policy, or
// crypto/rand.Text (26 base32 characters, 130 bits: nothing to quote in a URL, shell or config).
func (e *Engine) passwordGenerator(policy string) func(context.Context) (string, error) {
	if policy != "" && e.system != nil {
		return func(ctx context.Context) (string, error) {
			pw, err := e.system.GeneratePasswordFromPolicy(ctx, policy)
			if err != nil {
				return "", fmt.Errorf("password_policy %q: %w", policy, err)
			}
			return pw, nil
		}
	}
	return func(context.Context) (string, error) { return rand.Text(), nil }
}
