// Package integration tests the plugin as operators use it: loaded by a real Vault server,
// rotating logins of a real PostgreSQL server, through Vault's HTTP API.
package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const mount = "rotation"

// stack is one Vault server with the plugin mounted at rotation/ and one PostgreSQL server.
type stack struct {
	vault *testenv.Vault
	pg    *testenv.Postgres
	// path is the plugin's mount path ("": rotation/).
	path string

	mu      sync.Mutex
	secrets []string // every secret value seen by the test, to prove none leaks
}

// newDevStack starts PostgreSQL (logging every statement) and a dev Vault with the plugin.
func newDevStack(t *testing.T) *stack {
	t.Helper()
	pg := testenv.StartPostgres(t, "log_statement=all")
	dir, sha := testenv.PluginBinary(t)
	v := testenv.StartDevVault(t, dir)
	v.MountPlugin(t, dir, sha, mount)
	return &stack{vault: v, pg: pg}
}

// mnt is the stack's mount path.
func (s *stack) mnt() string {
	if s.path != "" {
		return s.path
	}
	return mount
}

func (s *stack) remember(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if v != "" {
			s.secrets = append(s.secrets, v)
		}
	}
}

// write writes to rotation/PATH and fails the test on error.
func (s *stack) write(t *testing.T, path string, data map[string]interface{}) *api.Secret {
	t.Helper()
	sec, err := s.vault.Client.Logical().WriteWithContext(context.Background(), s.mnt()+"/"+path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return sec
}

// writeErr writes and returns the API error with its status code.
func (s *stack) writeErr(path string, data map[string]interface{}) (*api.Secret, *api.ResponseError) {
	sec, err := s.vault.Client.Logical().WriteWithContext(context.Background(), s.mnt()+"/"+path, data)
	var re *api.ResponseError
	if errors.As(err, &re) {
		return sec, re
	}
	if err != nil {
		return sec, &api.ResponseError{StatusCode: 0, Errors: []string{err.Error()}}
	}
	return sec, nil
}

// read reads rotation/PATH (nil when Vault answers 404) and fails the test on another error.
func (s *stack) read(t *testing.T, path string, params ...string) *api.Secret {
	t.Helper()
	q := map[string][]string{}
	for i := 0; i+1 < len(params); i += 2 {
		q[params[i]] = []string{params[i+1]}
	}
	sec, err := s.vault.Client.Logical().ReadWithDataWithContext(context.Background(), s.mnt()+"/"+path, q)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sec
}

// creds reads the current credential and remembers its password.
func (s *stack) creds(t *testing.T, role string, params ...string) (user, password string, version int) {
	t.Helper()
	sec := s.read(t, "creds/"+role, params...)
	if sec == nil {
		t.Fatalf("creds/%s: not found", role)
	}
	user, _ = sec.Data["username"].(string)
	password, _ = sec.Data["password"].(string)
	s.remember(password)
	return user, password, intOf(t, sec.Data["version"])
}

// createLogin creates a PostgreSQL login with a password.
func (s *stack) createLogin(t *testing.T, user, password string, extra string) {
	t.Helper()
	s.pg.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD '%s'", quoteIdent(user), extra, password))
	s.remember(password)
}

// importAdmin creates a CREATEROLE login and imports it as a self-managed role that grants any
// unprivileged login (allowed_usernames=*).
func (s *stack) importAdmin(t *testing.T, role, user, password string) {
	t.Helper()
	s.createLogin(t, user, password, "CREATEROLE")
	s.write(t, "roles/"+role, map[string]interface{}{
		"type": "postgres", "connection_url": s.pg.URLTemplate(), "username": user, "password": password,
		"rotation_period": "2160h", "allowed_usernames": "*",
	})
}

// assertLogin asserts that user/password logs in (want true) or is refused (want false).
func (s *stack) assertLogin(t *testing.T, user, password string, want bool) {
	t.Helper()
	err := s.pg.CanLogin(user, password)
	if want && err != nil {
		t.Fatalf("login %s with the expected password failed: %v", user, err)
	}
	if !want && err == nil {
		t.Fatalf("login %s with a password that should be dead succeeded", user)
	}
}

// assertNoSecretIn fails when any remembered secret appears in text.
func (s *stack) assertNoSecretIn(t *testing.T, what, text string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.secrets {
		if strings.Contains(text, v) {
			t.Errorf("a secret value appears in %s", what)
		}
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func intOf(t *testing.T, v interface{}) int {
	t.Helper()
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		if err != nil {
			t.Fatalf("not an int: %v", v)
		}
		return int(i)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}

// expectStatus asserts an API error with the given status whose message contains want.
func expectStatus(t *testing.T, re *api.ResponseError, status int, want string) {
	t.Helper()
	if re == nil {
		t.Fatalf("expected a %d error containing %q, got success", status, want)
	}
	if re.StatusCode != status || !strings.Contains(strings.Join(re.Errors, " "), want) {
		t.Fatalf("expected %d containing %q, got %d: %v", status, want, re.StatusCode, re.Errors)
	}
}

// canLoginURL opens a fresh connection with a full URL and runs SELECT 1.
func canLoginURL(connURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func jsonOf(t *testing.T, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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

// policyClient is a client whose token has only the named policy (no default policy).
func policyClient(t *testing.T, s *stack, policy string) *api.Client {
	t.Helper()
	tok, err := s.vault.Client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.vault.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tok.Auth.ClientToken)
	return c
}
