package testenv

import (
	"context"
	"os"
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

// TestMountPlugin needs ./cmd/vault-plugin-rotation to build (or $ROTATION_PLUGIN_DIR); it is skipped, with the build
// error, when it does not yet.
func TestMountPlugin(t *testing.T) {
	t.Parallel()
	var dir, sha string
	if os.Getenv("ROTATION_PLUGIN_DIR") != "" {
		dir, sha = PluginBinary(t)
	} else {
		var err error
		if dir, sha, err = BuildPlugin(RepoRoot(t), ""); err != nil {
			t.Skipf("plugin does not build yet: %v", err)
		}
	}
	for _, dev := range []bool{true, false} {
		name := map[bool]string{true: "dev", false: "file"}[dev]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := StartVault(t, VaultOptions{Dev: dev, PluginDir: dir})
			v.MountPlugin(t, dir, sha, "rotation")
			m, err := v.Client.Sys().GetMountWithContext(context.Background(), "rotation")
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != PluginName || m.RunningVersion != PluginVersion || m.RunningSha256 != sha {
				t.Fatalf("mount: type %q running version %q sha %q; want %q %q %q", m.Type, m.RunningVersion, m.RunningSha256, PluginName, PluginVersion, sha)
			}
			if !dev {
				v.Kill(t)
				start := time.Now()
				v.Restart(t)
				t.Logf("restart + plugin ready in %s", time.Since(start))
			}
		})
	}
}
