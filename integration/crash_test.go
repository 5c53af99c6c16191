package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestCrashBetweenApplyAndPromote kills Vault (SIGKILL, plugin included) after PostgreSQL has
// the new password and before Vault has promoted it, restarts and unseals it, and shows that
// the credential Vault hands out logs in. The window is made certain by the failpoints test
// build of the plugin, which pauses after the ALTER ROLE; the release binary has no failpoint.
func TestCrashBetweenApplyAndPromote(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "failpoint-reached")
	s := &stack{testenv.NewStack(t, testenv.StackOptions{Storage: testenv.StorageFile, Postgres: true, PluginTags: "failpoints",
		PluginEnv: []string{"ROTATION_FAILPOINT=after-apply=5m", "ROTATION_FAILPOINT_MARKER=" + marker}})}
	v, pg := s.Vault, s.Postgres

	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	s.CreateLogin(t, "app", "app-initial", "")
	// Creating the role rotates it, which would stop at the failpoint: import instead.
	s.Write(t, "roles/app", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "app", "password": "app-initial",
		"connection_url": pg.URLTemplate(), "rotation_period": "2160h",
	})

	rotateDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := v.Client.Logical().WriteWithContext(ctx, mount+"/rotate/app", nil)
		rotateDone <- err
	}()
	testenv.Eventually(t, "the rotation reaches the failpoint after ALTER ROLE", time.Minute, func() error {
		if _, err := os.Stat(marker); err != nil {
			return err
		}
		return nil
	})
	// PostgreSQL has the new password now: the old one no longer logs in.
	s.AssertLogin(t, "app", "app-initial", false)

	v.Kill(t)
	if err := <-rotateDone; err == nil {
		t.Fatal("the rotate request succeeded although Vault was killed inside it")
	}
	v.Restart(t)

	// Recovery resolves the pending record on mount init: the new value is live, so it rolls
	// forward and creds hands it out.
	testenv.Eventually(t, "creds logs in after restart", time.Minute, func() error {
		sec, err := v.Client.Logical().Read(mount + "/creds/app")
		if err != nil || sec == nil {
			return fmt.Errorf("read creds: %v", err)
		}
		pw, _ := sec.Data["password"].(string)
		return pg.CanLogin("app", pw)
	})
	_, _, version := s.Creds(t, "app")
	if version != 2 {
		t.Fatalf("recovered version %d, want 2", version)
	}
	hist := s.Read(t, "history/app").Data["history"].([]interface{})
	if len(hist) == 0 || hist[0].(map[string]interface{})["trigger"] != "recovery" {
		t.Fatalf("history does not record the recovery: %s", testenv.JSONOf(t, hist))
	}
	if s.Read(t, "roles/app").Data["pending"] != false {
		t.Fatal("pending record left after recovery")
	}
	// The role keeps rotating normally after recovery (the marker disables the failpoint).
	s.Write(t, "rotate/app", nil)
	_, pw, _ := s.Creds(t, "app")
	s.AssertLogin(t, "app", pw, true)
}

// TestPostgresDownDuringRotation stops PostgreSQL before a rotation: the rotation fails, the
// old credential stays current in Vault and valid at the database, and the schedule retries
// it after a backoff once the database is back.
func TestPostgresDownDuringRotation(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.Write(t, "config", map[string]interface{}{"retry_base": "5s", "retry_max": "10s"})
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	s.CreateLogin(t, "app", "app-initial", "")
	s.Write(t, "roles/app", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "app",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "2160h",
	})
	_, before, v1 := s.Creds(t, "app")

	s.Postgres.Stop(t)
	_, re := s.WriteErr("rotate/app", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at apply")
	_, still, v := s.Creds(t, "app")
	if still != before || v != v1 {
		t.Fatal("a failed rotation changed the current credential")
	}
	role := s.Read(t, "roles/app").Data
	if testenv.IntOf(t, role["consecutive_failures"]) != 1 || role["last_outcome"] == "success" {
		t.Fatalf("role after failure: %#v", role)
	}
	next, err := time.Parse(time.RFC3339, role["next_rotation"].(string))
	if err != nil || time.Until(next) > 15*time.Second {
		t.Fatalf("next_rotation %v is not a backoff retry (retry_max 10s)", role["next_rotation"])
	}

	s.Postgres.Start(t)
	s.AssertLogin(t, "app", before, true)

	// Vault's periodic function runs about once a minute: the retry is due by then.
	testenv.Eventually(t, "the schedule retries the failed rotation", 150*time.Second, func() error {
		_, pw, v := s.Creds(t, "app")
		if v == v1 {
			return fmt.Errorf("still version %d", v)
		}
		return s.Postgres.CanLogin("app", pw)
	})
	hist := s.Read(t, "history/app").Data["history"].([]interface{})
	if first := hist[0].(map[string]interface{}); first["trigger"] != "schedule" || first["outcome"] != "success" {
		t.Fatalf("latest history entry: %s", testenv.JSONOf(t, first))
	}
	if !strings.Contains(testenv.JSONOf(t, hist), "failed_step") {
		t.Fatal("history lacks the failed rotation")
	}
}
