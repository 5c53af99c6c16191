package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// holdSession opens a session of user/password that stays open until the test ends: a service
// that keeps a long-lived pool and is not listed as a consumer.
func (s *stack) holdSession(t *testing.T, user, password, appName string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.Postgres.DSN(user, password)+"&application_name="+appName)
	if err != nil {
		t.Fatalf("hold a session of %s: %v", user, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// sessionsOf reads sessions/ROLE and returns its rows with the given application_name.
func (s *stack) sessionsOf(t *testing.T, role, appName string) (rows []map[string]interface{}, all map[string]interface{}) {
	t.Helper()
	sec := s.Read(t, "sessions/"+role)
	if sec == nil {
		t.Fatalf("sessions/%s: not found", role)
	}
	list, _ := sec.Data["sessions"].([]interface{})
	for _, r := range list {
		m := r.(map[string]interface{})
		if m["application_name"] == appName {
			rows = append(rows, m)
		}
	}
	return rows, sec.Data
}

// forgottenIn returns the possible_forgotten_consumers of a rotation answer or history entry.
func forgottenIn(data map[string]interface{}) []map[string]interface{} {
	list, _ := data["possible_forgotten_consumers"].([]interface{})
	out := make([]map[string]interface{}, 0, len(list))
	for _, f := range list {
		out = append(out, f.(map[string]interface{}))
	}
	return out
}

// TestForgottenConsumers covers issue 13 items 1 and 2 against a real PostgreSQL, Docker and
// Vault: the live sessions of a role's logins, and the look after every deploy for sessions that
// no restarted consumer explains.
func TestForgottenConsumers(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	h := startHook(t)
	s.Write(t, "config", map[string]interface{}{"notify_url": h.url})
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	// Without it the admin sees other logins' sessions without address, start or state.
	s.Postgres.Exec(t, "GRANT pg_read_all_stats TO oa_admin")

	t.Run("an unlisted client is reported after a rotation, and sessions shows it", func(t *testing.T) {
		s.CreateLogin(t, "fg", "fg-0", "")
		s.Write(t, "roles/fg", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "fg",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, _ := s.Creds(t, "fg")
		s.holdSession(t, "fg", pw, "forgotten-worker")

		rows, _ := s.sessionsOf(t, "fg", "forgotten-worker")
		if len(rows) != 1 {
			t.Fatalf("sessions/fg does not list the held session once: %v", rows)
		}
		r := rows[0]
		if r["login"] != "fg" || r["current"] != true || r["opened_before_current"] != false || r["client_addr"] != "127.0.0.1" ||
			r["client_port"] == nil || r["backend_start"] == nil || r["database"] != "postgres" || r["state"] != "idle" {
			t.Fatalf("held session before the rotation: %s", testenv.JSONOf(t, r))
		}

		api := s.RunDemo(t, "fg", testenv.DemoOptions{})
		s.Write(t, "roles/fg", map[string]interface{}{"consumers": "docker:" + api.Name, "health_checks": api.URL("/health")})
		rot := s.Write(t, "rotate/fg", nil)
		if rot.Data["outcome"] != "success" {
			t.Fatalf("rotation: %s", testenv.JSONOf(t, rot.Data))
		}
		found := forgottenIn(rot.Data)
		if len(found) != 1 || found[0]["application_name"] != "forgotten-worker" || found[0]["client_addr"] != "127.0.0.1" ||
			found[0]["login"] != "fg" || found[0]["age_seconds"] == nil {
			t.Fatalf("rotate answer's possible_forgotten_consumers: %s", testenv.JSONOf(t, rot.Data))
		}
		if len(rot.Warnings) == 0 || !strings.Contains(strings.Join(rot.Warnings, " "), "forgotten-worker") {
			t.Fatalf("rotate answer's warnings do not name the forgotten client: %v", rot.Warnings)
		}
		entry := s.Read(t, "history/fg").Data["history"].([]interface{})[0].(map[string]interface{})
		if f := forgottenIn(entry); len(f) != 1 || f[0]["application_name"] != "forgotten-worker" {
			t.Fatalf("history entry: %s", testenv.JSONOf(t, entry))
		}
		testenv.Eventually(t, "success notification naming the forgotten client", 10*time.Second, func() error {
			for _, d := range h.find("fg", "success") {
				if f := forgottenIn(d); len(f) == 1 && f[0]["application_name"] == "forgotten-worker" {
					return nil
				}
			}
			return errorf("none yet: %s", h.all())
		})

		rows, _ = s.sessionsOf(t, "fg", "forgotten-worker")
		if len(rows) != 1 || rows[0]["opened_before_current"] != true {
			t.Fatalf("after the rotation the held session is not opened_before_current: %s", testenv.JSONOf(t, rows))
		}

		// Once the forgotten client is gone, the next rotation reports nothing.
		s.Postgres.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'forgotten-worker'")
		testenv.Eventually(t, "the held session gone", 10*time.Second, func() error {
			if rows, _ := s.sessionsOf(t, "fg", "forgotten-worker"); len(rows) > 0 {
				return errorf("still listed")
			}
			return nil
		})
		rot = s.Write(t, "rotate/fg", nil)
		if f := forgottenIn(rot.Data); len(f) != 0 {
			t.Fatalf("a rotation whose clients all restarted reports %s", testenv.JSONOf(t, f))
		}

		s.AssertNoSecretIn(t, "the rotate answer", testenv.JSONOf(t, rot.Data))
		s.AssertNoSecretIn(t, "the sessions answer", testenv.JSONOf(t, s.Read(t, "sessions/fg").Data))
		s.AssertNoSecretIn(t, "the history", testenv.JSONOf(t, s.Read(t, "history/fg").Data))
		s.AssertNoSecretIn(t, "the notifications", h.all())
	})

	t.Run("strict_consumers fails the rotation and rolls back", func(t *testing.T) {
		s.CreateLogin(t, "st", "st-0", "")
		s.Write(t, "roles/st", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "st",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, oldPW, oldVersion := s.Creds(t, "st")
		s.holdSession(t, "st", oldPW, "forgotten-cron")
		api := s.RunDemo(t, "st", testenv.DemoOptions{})
		s.Write(t, "roles/st", map[string]interface{}{
			"consumers": "docker:" + api.Name, "health_checks": api.URL("/health"), "strict_consumers": true,
		})
		if s.Read(t, "roles/st").Data["strict_consumers"] != true {
			t.Fatal("role read lacks strict_consumers=true")
		}
		sec, re := s.WriteErr("rotate/st", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		if !strings.Contains(strings.Join(re.Errors, " "), "forgotten-cron") {
			t.Fatalf("the error does not name the forgotten client: %v", re.Errors)
		}
		_ = sec
		_, pw, v := s.Creds(t, "st")
		if pw != oldPW || v != oldVersion {
			t.Fatalf("creds after a strict failure: v%d, want v%d with the old password", v, oldVersion)
		}
		s.AssertLogin(t, "st", oldPW, true)
		entry := s.Read(t, "history/st").Data["history"].([]interface{})[0].(map[string]interface{})
		if entry["rolled_back"] != true || entry["failed_step"] != "deploy" || len(forgottenIn(entry)) != 1 {
			t.Fatalf("history of the strict failure: %s", testenv.JSONOf(t, entry))
		}
		if got := demoStartedWith(t, api); got.Version != oldVersion {
			t.Fatalf("the consumer runs v%d after the rollback, want v%d", got.Version, oldVersion)
		}
		s.AssertNoSecretIn(t, "the history", testenv.JSONOf(t, entry))
	})

	t.Run("alternating: both logins, the current one marked", func(t *testing.T) {
		s.CreateLogin(t, "alt_blue", "ab-0", "")
		s.CreateLogin(t, "alt_green", "ag-0", "")
		s.Write(t, "roles/alt", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "strategy": "alternating", "usernames": "alt_blue,alt_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		user, pw, _ := s.Creds(t, "alt")
		s.holdSession(t, user, pw, "old-login-service")
		api := s.RunDemo(t, "alt", testenv.DemoOptions{})
		s.Write(t, "roles/alt", map[string]interface{}{"consumers": "docker:" + api.Name, "health_checks": api.URL("/health")})
		rot := s.Write(t, "rotate/alt", nil)
		if f := forgottenIn(rot.Data); len(f) != 1 || f[0]["login"] != user || f[0]["application_name"] != "old-login-service" {
			t.Fatalf("a service left on the previous login is not reported: %s", testenv.JSONOf(t, rot.Data))
		}
		newUser, newPW, _ := s.Creds(t, "alt")
		s.holdSession(t, newUser, newPW, "new-login-service")
		old, _ := s.sessionsOf(t, "alt", "old-login-service")
		cur, _ := s.sessionsOf(t, "alt", "new-login-service")
		if len(old) != 1 || old[0]["login"] != user || old[0]["current"] != false || old[0]["opened_before_current"] != true {
			t.Fatalf("session on the previous login: %s", testenv.JSONOf(t, old))
		}
		if len(cur) != 1 || cur[0]["login"] != newUser || cur[0]["current"] != true || cur[0]["opened_before_current"] != false {
			t.Fatalf("session on the current login: %s", testenv.JSONOf(t, cur))
		}
	})

	t.Run("without pg_read_all_stats: a warning, never a failure, strict or not", func(t *testing.T) {
		s.ImportAdmin(t, "pg-admin-np", "oa_admin_np", "admin-np-pw")
		s.CreateLogin(t, "np", "np-0", "")
		s.Write(t, "roles/np", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin-np", "username": "np",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, _ := s.Creds(t, "np")
		s.holdSession(t, "np", pw, "hidden-worker")
		sec := s.Read(t, "sessions/np")
		data := sec.Data
		list, _ := data["sessions"].([]interface{})
		if len(list) != 1 {
			t.Fatalf("sessions/np without the privilege: %s", testenv.JSONOf(t, data))
		}
		if r := list[0].(map[string]interface{}); r["client_addr"] != nil || r["opened_before_current"] != nil || r["backend_start"] != nil {
			t.Fatalf("a hidden session shows details: %s", testenv.JSONOf(t, r))
		}
		if w := strings.Join(sec.Warnings, " "); !strings.Contains(w, "pg_read_all_stats") {
			t.Fatalf("sessions/np does not say what the admin lacks: %s", testenv.JSONOf(t, data))
		}

		api := s.RunDemo(t, "np", testenv.DemoOptions{})
		s.Write(t, "roles/np", map[string]interface{}{"consumers": "docker:" + api.Name, "health_checks": api.URL("/health")})
		rot := s.Write(t, "rotate/np", nil)
		if rot.Data["outcome"] != "success" || !strings.Contains(testenv.JSONOf(t, rot.Data["warnings"]), "pg_read_all_stats") {
			t.Fatalf("rotation without the privilege: %s", testenv.JSONOf(t, rot.Data))
		}
		_, _, v := s.Creds(t, "np")
		// Strict fails on sessions found only: a look that cannot be made would otherwise roll
		// back every rotation of the role after its consumers were healthy.
		s.Write(t, "roles/np", map[string]interface{}{"strict_consumers": true})
		rot = s.Write(t, "rotate/np", nil)
		if rot.Data["outcome"] != "success" || !strings.Contains(testenv.JSONOf(t, rot.Data["warnings"]), "pg_read_all_stats") {
			t.Fatalf("strict rotation without the privilege: %s", testenv.JSONOf(t, rot.Data))
		}
		u, pw, nv := s.Creds(t, "np")
		if nv != v+1 {
			t.Fatalf("version %d after a strict rotation that could not look, want %d", nv, v+1)
		}
		s.AssertLogin(t, u, pw, true)
	})

	t.Run("self-managed: the plugin's own pooled sessions are not consumers", func(t *testing.T) {
		s.CreateLogin(t, "selfm", "selfm-0", "")
		s.Write(t, "roles/selfm", map[string]interface{}{
			"type": "postgres", "username": "selfm", "password": "selfm-0",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		// A read opens the plugin's pool on the login's current credential, before the rotation.
		sec := s.Read(t, "sessions/selfm")
		if n := testenv.IntOf(t, sec.Data["count"]); n != 0 {
			t.Fatalf("sessions/selfm lists the plugin's own session: %s", testenv.JSONOf(t, sec.Data))
		}
		api := s.RunDemo(t, "selfm", testenv.DemoOptions{})
		s.Write(t, "roles/selfm", map[string]interface{}{"consumers": "docker:" + api.Name, "health_checks": api.URL("/health"), "strict_consumers": true})
		rot := s.Write(t, "rotate/selfm", nil)
		if f := forgottenIn(rot.Data); len(f) != 0 || rot.Data["warnings"] != nil {
			t.Fatalf("the plugin's own session is reported: %s", testenv.JSONOf(t, rot.Data))
		}
	})

	t.Run("other kinds have no sessions", func(t *testing.T) {
		s.Write(t, "roles/tok", map[string]interface{}{"type": "token", "rotation_period": "720h"})
		_, re := s.Vault.Client.Logical().ReadWithContext(context.Background(), s.Mount+"/sessions/tok")
		if re == nil || !strings.Contains(re.Error(), "a token role has no sessions") || !strings.Contains(re.Error(), "400") {
			t.Fatalf("sessions/tok: %v", re)
		}
		if sec := s.Read(t, "sessions/nope"); sec != nil { // the API client answers a 404 as nil
			t.Fatalf("sessions of a missing role: %s", testenv.JSONOf(t, sec))
		}
	})
}
