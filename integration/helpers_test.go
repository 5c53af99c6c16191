// Package integration tests the plugin as operators use it: loaded by a real Vault server,
// rotating logins of a real PostgreSQL server, through Vault's HTTP API.
package integration

import (
	"fmt"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const mount = testenv.DefaultMount

// stack is testenv's stack (Vault with the plugin mounted at rotation/, PostgreSQL, request helpers,
// leak tracker) plus the helpers of this package's own scenarios, defined on it in the test files.
type stack struct{ *testenv.Stack }

// newDevStack starts PostgreSQL (logging every statement) and a dev Vault with the plugin.
func newDevStack(t *testing.T) *stack {
	t.Helper()
	return &stack{testenv.NewStack(t, testenv.StackOptions{Postgres: true, PostgresOpts: []string{"log_statement=all"}})}
}

// stepNames returns the names of a rotation's steps.
func stepNames(t *testing.T, v interface{}) []string {
	t.Helper()
	steps, ok := v.([]interface{})
	if !ok {
		t.Fatalf("steps: %#v", v)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.(map[string]interface{})["name"].(string))
	}
	return names
}

func errorf(format string, args ...interface{}) error { return fmt.Errorf(format, args...) }
