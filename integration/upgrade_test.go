package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// upgrade is a second build of the plugin installed next to the one a stack runs: the release
// build stamped with another version, so another sha256, under its own file name (README "Running
// in production": the old file stays as registered).
type upgrade struct {
	oldVersion, version, file, sha string
}

// newUpgradeStack is a stack running the failpoints build at PluginVersion with failpoint fp, in
// a plugin directory of its own that also holds the second build.
func newUpgradeStack(t *testing.T, storage testenv.Storage, fp *testenv.Failpoint) (*stack, *upgrade) {
	t.Helper()
	s := &stack{testenv.NewStack(t, testenv.StackOptions{Storage: storage, Postgres: true, PluginTags: "failpoints",
		PluginEnv: fp.Env(), OwnPluginDir: true})}
	u := &upgrade{oldVersion: testenv.PluginVersion, version: "v0.2.0"}
	if u.version == u.oldVersion {
		u.version = "v0.2.1"
	}
	u.file = testenv.PluginName + "-" + u.version
	dir, _ := testenv.PluginBinaryVersion(t, "", u.version)
	u.sha = s.InstallPlugin(t, dir, u.file)
	if u.sha == s.PluginSHA {
		t.Fatal("the second build has the first one's sha256")
	}
	s.assertRunning(t, u.oldVersion, s.PluginSHA)
	s.ImportAdmin(t, "pg-admin", "up_admin", "up-admin-pw")
	s.CreateLogin(t, "up_app", "up-app-0", "")
	s.Write(t, "roles/app", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "up_app",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "2160h"})
	return s, u
}

// register, tune and reload are README's upgrade, with the vault CLI.
func (u *upgrade) register(t *testing.T, s *stack) {
	t.Helper()
	vaultCLI(t, s, "plugin", "register", "-sha256="+u.sha, "-version="+u.version, "-command="+u.file,
		"secret", testenv.PluginName)
}

// switchTo points the mount at version and reloads the plugin; it returns how long the reload took.
func switchTo(t *testing.T, s *stack, version string) time.Duration {
	t.Helper()
	vaultCLI(t, s, "secrets", "tune", "-plugin-version="+version, s.Mount+"/")
	start := time.Now()
	vaultCLI(t, s, "plugin", "reload", "-type=secret", "-plugin="+testenv.PluginName)
	took := time.Since(start)
	s.Vault.WaitPlugin(t, s.Mount)
	return took
}

// assertRunning checks the version and sha256 that sys/mounts says the mount runs.
func (s *stack) assertRunning(t *testing.T, version, sha string) {
	t.Helper()
	m, err := s.Client().Sys().GetMountWithContext(context.Background(), s.Mount)
	if err != nil {
		t.Fatal(err)
	}
	if m.RunningVersion != version || m.RunningSha256 != sha || m.PluginVersion != version {
		t.Fatalf("sys/mounts/%s: running %s (sha256 %s), plugin_version %s; want %s (sha256 %s)",
			s.Mount, m.RunningVersion, m.RunningSha256, m.PluginVersion, version, sha)
	}
}

// assertRotatesOn: creds logs in, a rotation succeeds, its value logs in and the one before is dead.
func (s *stack) assertRotatesOn(t *testing.T, version string) {
	t.Helper()
	user, pw, v := s.Creds(t, "app")
	s.AssertLogin(t, user, pw, true)
	rot := s.Write(t, "rotate/app", nil)
	if rot.Data["outcome"] != "success" || testenv.IntOf(t, rot.Data["version"]) != v+1 {
		t.Fatalf("rotation on %s: %s", version, testenv.JSONOf(t, rot.Data))
	}
	_, pw2, _ := s.Creds(t, "app")
	s.AssertLogin(t, user, pw2, true)
	s.AssertLogin(t, user, pw, false)
}

// TestUpgradeResolvesPendingRecord follows README "Upgrading the plugin without losing pending
// records" with a pending record in storage that the running version cannot resolve yet: Vault
// was killed while a rotation waited after apply (PostgreSQL has the new password), and restarted
// while PostgreSQL is down, so the old version's recovery cannot ask it and keeps the record. The
// second build is then registered, the mount tuned to it and the plugin reloaded: the new version
// runs the mount, its engine starts with the record, and once PostgreSQL is back it rolls it
// forward; creds logs in, rotation works, and going back to the old version works too.
func TestUpgradeResolvesPendingRecord(t *testing.T) {
	t.Parallel()
	fp := testenv.NewFailpoint(t, failpoint.AfterApply, 10*time.Minute)
	s, u := newUpgradeStack(t, testenv.StorageFile, fp)
	// Quick retries of an unresolved record (the new version's, once PostgreSQL is back).
	s.Write(t, "config", map[string]interface{}{"retry_base": "5s", "retry_max": "10s"})
	_, oldPW, before := s.Creds(t, "app")

	fp.Arm(t)
	done := s.RotateUnretried("app")
	fp.Wait(t, done, crashReachBound)
	s.AssertLogin(t, "up_app", oldPW, false) // the new password is live at PostgreSQL
	s.Vault.Kill(t)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the rotate request succeeded although Vault was killed inside it")
		}
	case <-time.After(time.Minute):
		t.Fatal("the rotate request did not end within a minute of the kill")
	}
	s.Postgres.Stop(t)
	s.Vault.Restart(t)
	testenv.Eventually(t, "the old version's recovery fails to reach PostgreSQL", time.Minute, func() error {
		for _, line := range strings.Split(s.Vault.ServerLog(t), "\n") {
			// hclog's fields come in any order.
			if strings.Contains(line, "recovery: not resolved yet:") && strings.Contains(line, "role=app") &&
				strings.Contains(line, `detail="target unreachable`) {
				return nil
			}
		}
		return fmt.Errorf("no failed recovery of app in the server log")
	})
	if p := s.Read(t, "roles/app").Data["pending"]; p != true {
		t.Fatalf("pending=%v before the upgrade, want the record kept", p)
	}

	logFrom := len(s.Vault.ServerLog(t))
	u.register(t, s)
	took := switchTo(t, s, u.version)
	t.Logf("vault plugin reload answered after %s", took.Round(time.Millisecond))
	s.assertRunning(t, u.version, u.sha)
	log := s.Vault.ServerLog(t)[logFrom:]
	s.AssertNoSecretIn(t, "the server log after the reload", log) // before any of it is printed
	// The new binary starts, then its engine (its logger is named after the binary) finds the record.
	loc := regexp.MustCompile(`starting plugin: .*path=` + regexp.QuoteMeta(filepath.Join(s.PluginDir, u.file))).FindStringIndex(log)
	if loc == nil || !regexp.MustCompile(regexp.QuoteMeta(u.file)+`: rotation engine started: .*pending=1`).MatchString(log[loc[0]:]) {
		t.Fatalf("the server log does not show the new version's engine starting with the pending record:\n%s", log)
	}
	if p := s.Read(t, "roles/app").Data["pending"]; p != true {
		t.Fatalf("pending=%v after the reload while PostgreSQL is still down", p)
	}

	s.Postgres.Start(t)
	data := s.WaitResolved(t, "app", 2*time.Minute)
	if got := testenv.IntOf(t, data["current_version"]); got != before+1 {
		t.Fatalf("current version %d after the new version's recovery, want %d (rolled forward)", got, before+1)
	}
	hist := s.Read(t, "history/app").Data["history"].([]interface{})
	if last := hist[0].(map[string]interface{}); last["trigger"] != "recovery" || last["outcome"] != "success" {
		t.Fatalf("the latest history entry is not the new version's recovery: %s", testenv.JSONOf(t, last))
	}
	for _, r := range s.Read(t, "status").Data["roles"].([]interface{}) {
		if row := r.(map[string]interface{}); row["pending"] == true {
			t.Fatalf("status shows a role pending after the upgrade: %s", testenv.JSONOf(t, row))
		}
	}
	s.assertRotatesOn(t, u.version)

	// Going back: the old version is still registered.
	switchTo(t, s, u.oldVersion)
	s.assertRunning(t, u.oldVersion, s.PluginSHA)
	s.assertRotatesOn(t, u.oldVersion)
	s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
}

// TestUpgradeWaitsForRotationInFlight: a reload while a requested rotation is in flight (paused
// after apply) waits for it; the rotation finishes on the old version, nothing is left pending,
// and the new version runs the mount with the rotated value.
func TestUpgradeWaitsForRotationInFlight(t *testing.T) {
	t.Parallel()
	const pause = 15 * time.Second
	fp := testenv.NewFailpoint(t, failpoint.AfterApply, pause)
	s, u := newUpgradeStack(t, testenv.StorageDev, fp)
	_, _, before := s.Creds(t, "app")
	u.register(t, s)

	logFrom := len(s.Vault.ServerLog(t))
	fp.Arm(t)
	done := s.RotateUnretried("app")
	fp.Wait(t, done, crashReachBound)
	reached := time.Now()
	switchTo(t, s, u.version)
	if waited := time.Since(reached); waited < pause-2*time.Second {
		t.Fatalf("the reload was done %s after the rotation paused, before its pause of %s ended", waited, pause)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the rotation in flight at the reload: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the rotate request did not end within a minute of the reload")
	}
	s.assertRunning(t, u.version, u.sha)
	// The old binary's engine (its logger is named after its file) promoted the rotation before
	// the new binary's engine started.
	log := s.Vault.ServerLog(t)[logFrom:]
	s.AssertNoSecretIn(t, "the server log around the reload", log) // before any of it is printed
	rotatedOld := regexp.MustCompile(regexp.QuoteMeta(testenv.PluginName) + `: rotated: .*role=app`).FindStringIndex(log)
	startedNew := regexp.MustCompile(regexp.QuoteMeta(u.file) + `: rotation engine started`).FindStringIndex(log)
	if rotatedOld == nil || startedNew == nil || rotatedOld[0] > startedNew[0] {
		t.Fatalf("the server log does not show the rotation in flight promoted by the old version before the new one started:\n%s", log)
	}
	role := s.Read(t, "roles/app").Data
	if role["pending"] != false || testenv.IntOf(t, role["current_version"]) != before+1 {
		t.Fatalf("after the reload: pending=%v current_version=%v, want no record and version %d", role["pending"], role["current_version"], before+1)
	}
	s.assertRotatesOn(t, u.version)
	s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
}

// vaultCLI runs the vault CLI (the server's binary) against the stack's node with its root
// token, bounded by 3 minutes, and fails the test on a non-zero exit.
func vaultCLI(t *testing.T, s *stack, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Vault.Bin, args...)
	env := []string{"HOME=" + t.TempDir(), "VAULT_ADDR=" + s.Vault.Addr, "VAULT_TOKEN=" + s.Vault.Token, "VAULT_CLIENT_TIMEOUT=150s"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
