package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, "log_connections=on")
	if err := pg.CanLogin("postgres", pg.Password); err != nil {
		t.Fatalf("superuser login: %v", err)
	}
	if err := pg.CanLogin("postgres", "wrong-"+pg.Password); err == nil {
		t.Fatal("superuser login with a wrong password succeeded")
	}
	pg.Exec(t, `CREATE ROLE app LOGIN PASSWORD 'app-pw'`)
	if err := pg.CanLogin("app", "app-pw"); err != nil {
		t.Fatalf("app login: %v", err)
	}
	pg.Stop(t)
	if err := pg.CanLogin("app", "app-pw"); err == nil {
		t.Fatal("login succeeded while the server is stopped")
	}
	pg.Start(t)
	if err := pg.CanLogin("app", "app-pw"); err != nil {
		t.Fatalf("app login after restart: %v", err)
	}
	if log := pg.Log(t); !strings.Contains(log, "connection authorized: user=app") {
		t.Fatalf("server log lacks the extra option's effect (log_connections):\n%s", log)
	}
	if !strings.Contains(pg.URLTemplate(), "{{username}}:{{password}}@127.0.0.1:") {
		t.Fatal(pg.URLTemplate())
	}
}

func TestDevVault(t *testing.T) {
	t.Parallel()
	v := StartDevVault(t, "")
	if !strings.HasPrefix(v.Addr, "http://127.0.0.1:") {
		t.Fatalf("addr %s", v.Addr)
	}
	// The dev server mounts kv v2 at secret/.
	ctx := context.Background()
	if _, err := v.Client.KVv2("secret").Put(ctx, "x", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	s, err := v.Client.KVv2("secret").Get(ctx, "x")
	if err != nil || s.Data["k"] != "v" {
		t.Fatalf("kv get: %v %v", s, err)
	}
	v.Stop(t)
	if v.Running() {
		t.Fatal("still running after Stop")
	}
}

func TestFileVaultKillRestart(t *testing.T) {
	t.Parallel()
	v := StartFileVault(t, t.TempDir())
	if v.UnsealKey == "" || v.Token == "" {
		t.Fatal("no unseal key or root token")
	}
	ctx := context.Background()
	if err := v.Client.Sys().MountWithContext(ctx, "kv", &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "kv/foo", map[string]any{"value": "bar"}); err != nil {
		t.Fatal(err)
	}
	v.Kill(t)
	if _, err := v.Client.Logical().ReadWithContext(ctx, "kv/foo"); err == nil {
		t.Fatal("read succeeded after Kill")
	}
	v.Restart(t)
	readFoo := func() {
		t.Helper()
		s, err := v.Client.Logical().ReadWithContext(ctx, "kv/foo")
		if err != nil || s == nil || s.Data["value"] != "bar" {
			t.Fatalf("kv/foo after restart: %v %v", s, err)
		}
	}
	readFoo()
	v.Stop(t)
	v.Restart(t)
	readFoo()
	if n := strings.Count(v.ServerLog(t), "==== testenv:"); n != 3 {
		t.Fatalf("server log records %d runs, want 3", n)
	}
}

// TestMountPlugin mounts the plugin through NewStack on a dev and a file-storage Vault: the mount runs the
// registered build at PluginVersion, and a killed file-storage Vault comes back with the mount answering.
func TestMountPlugin(t *testing.T) {
	t.Parallel()
	for _, storage := range []Storage{StorageDev, StorageFile} {
		t.Run(string(storage), func(t *testing.T) {
			t.Parallel()
			s := NewStack(t, StackOptions{Storage: storage})
			m, err := s.Client().Sys().GetMountWithContext(context.Background(), s.Mount)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != PluginName || m.RunningVersion != PluginVersion || m.RunningSha256 != s.PluginSHA {
				t.Fatalf("mount: type %q running version %q sha %q; want %q %q %q", m.Type, m.RunningVersion, m.RunningSha256, PluginName, PluginVersion, s.PluginSHA)
			}
			if storage == StorageFile {
				s.Vault.Kill(t)
				start := time.Now()
				s.Vault.Restart(t)
				t.Logf("restart + plugin ready in %s", time.Since(start))
			}
		})
	}
}

// TestStack is the ten-line scenario NewStack is for: a role rotated through its admin logs in with what creds
// hands out, the old password is dead, and the server log holds neither.
func TestStack(t *testing.T) {
	t.Parallel()
	s := NewStack(t, StackOptions{Postgres: true})
	s.ImportAdmin(t, "pg-admin", "st_admin", "st-admin-pw")
	s.CreateLogin(t, "st_app", "st-app-pw", "")
	s.Write(t, "roles/app", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "st_app",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "2160h"})
	user, pw, v := s.Creds(t, "app")
	if user != "st_app" || v != 1 || len(s.List(t, "roles")) != 2 {
		t.Fatalf("creds %s v%d, roles %v", user, v, s.List(t, "roles"))
	}
	s.AssertLogin(t, user, pw, true)
	s.AssertLogin(t, user, "st-app-pw", false)
	_, re := s.WriteErr("roles/app", map[string]interface{}{"type": "token"})
	ExpectStatus(t, re, 400, "type")
	s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
}
