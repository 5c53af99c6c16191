package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL cluster on 127.0.0.1:Port, superuser `postgres` with Password.
type Postgres struct {
	Port     int
	Dir      string // cluster directory (data in Dir/data)
	Password string // superuser password
	LogPath  string // server log

	script    string
	extraOpts []string
}

// StartPostgres creates and starts a cluster on a random free port; extraOpts are `name=value` server settings passed
// as `-c name=value` (e.g. "log_statement=all"). Cleanup stops it and removes its directory.
func StartPostgres(t testing.TB, extraOpts ...string) *Postgres {
	t.Helper()
	p := &Postgres{
		Port:      FreePort(t),
		Dir:       sharedTempDir(t, "testenv-pg-"),
		Password:  "pg-" + randHex(t, 12),
		script:    filepath.Join(RepoRoot(t), "bootstrap", "postgres.sh"),
		extraOpts: extraOpts,
	}
	p.LogPath = filepath.Join(p.Dir, "postgres.log")
	t.Cleanup(func() {
		// immediate: tests do not need a clean shutdown and this keeps cleanup fast.
		if out, err := exec.Command("bash", p.script, "stop", p.Dir, "immediate").CombinedOutput(); err != nil {
			t.Logf("testenv: stopping postgres: %v\n%s", err, out)
		}
	})
	p.Start(t)
	return p
}

// Start starts the cluster again (same directory, port and settings) after Stop; no-op when it is running.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	args := append([]string{p.script, "start", p.Dir, strconv.Itoa(p.Port), p.Password}, p.extraOpts...)
	if out, err := exec.Command("bash", args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: starting postgres: %v\n%s\n--- server log ---\n%s", err, out, p.Log(t))
	}
}

// Stop stops the server (fast shutdown); the cluster is kept for Start.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("bash", p.script, "stop", p.Dir, "fast").CombinedOutput(); err != nil {
		t.Fatalf("testenv: stopping postgres: %v\n%s", err, out)
	}
}

// AdminDSN is the superuser connection URL.
func (p *Postgres) AdminDSN() string { return p.DSN("postgres", p.Password) }

// DSN is a connection URL for user/password to database postgres (sslmode=disable).
func (p *Postgres) DSN(user, password string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     fmt.Sprintf("127.0.0.1:%d", p.Port),
		Path:     "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=10",
	}
	return u.String()
}

// URLTemplate is the plugin's connection_url form: postgres://{{username}}:{{password}}@127.0.0.1:PORT/postgres?sslmode=disable.
func (p *Postgres) URLTemplate() string {
	return fmt.Sprintf("postgres://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Exec runs sql (may hold several statements) as the superuser; the test fails on error.
func (p *Postgres) Exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminDSN())
	if err != nil {
		t.Fatalf("testenv: connect as superuser: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("testenv: exec %q: %v", sql, err)
	}
}

// CanLogin opens a fresh connection as user/password and runs SELECT 1; nil means the login works.
func (p *Postgres) CanLogin(user, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN(user, password))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 returned %d", one)
	}
	return nil
}

// Log returns the server log ("" when there is none yet).
func (p *Postgres) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(p.LogPath)
	if err != nil && !os.IsNotExist(err) {
		t.Logf("testenv: reading postgres log: %v", err)
	}
	return string(b)
}
