package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestPostgresRotation covers the operator's story of issue 2 on one dev Vault and one
// PostgreSQL with log_statement=all.
func TestPostgresRotation(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)

	t.Run("import, create through admin, rotate, creds, versions, rollback", func(t *testing.T) {
		s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-initial-pw")
		s.AssertLogin(t, "oa_admin", "admin-initial-pw", true) // import did not touch it
		if strings.Contains(s.Postgres.Log(t), `ALTER ROLE "oa_admin"`) {
			t.Fatal("importing the admin changed it at PostgreSQL")
		}

		s.CreateLogin(t, "app", "app-initial-pw", "")
		created := s.Write(t, "roles/app", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "app",
			"connection_url": s.Postgres.URLTemplate(), "rotation_schedule": "0 0 1 1,4,7,10 *",
		})
		if created == nil || testenv.IntOf(t, created.Data["version"]) != 1 {
			t.Fatalf("create did not rotate at once: %#v", created)
		}
		s.AssertLogin(t, "app", "app-initial-pw", false)
		user, pw1, v1 := s.Creds(t, "app")
		if user != "app" || v1 != 1 {
			t.Fatalf("creds: user %q version %d", user, v1)
		}
		s.AssertLogin(t, "app", pw1, true)

		role := s.Read(t, "roles/app")
		for _, k := range []string{"password", "value", "private_key"} {
			if _, ok := role.Data[k]; ok {
				t.Fatalf("role read returns %s", k)
			}
		}
		if role.Data["rotation_schedule"] != "0 0 1 1,4,7,10 *" || role.Data["admin_role"] != "pg-admin" || role.Data["next_rotation"] == nil {
			t.Fatalf("role read: %#v", role.Data)
		}

		rot := s.Write(t, "rotate/app", nil)
		if testenv.IntOf(t, rot.Data["version"]) != 2 || testenv.IntOf(t, rot.Data["version_before"]) != 1 {
			t.Fatalf("rotate: %#v", rot.Data)
		}
		steps := stepNames(t, rot.Data["steps"])
		if strings.Join(steps, ",") != "prepare,apply,verify,promote" {
			t.Fatalf("rotate steps %v", steps)
		}
		_, pw2, v2 := s.Creds(t, "app")
		if v2 != 2 || pw2 == pw1 {
			t.Fatalf("after rotate: version %d, password changed %v", v2, pw2 != pw1)
		}
		s.AssertLogin(t, "app", pw2, true)
		s.AssertLogin(t, "app", pw1, false)

		conn := s.Read(t, "creds/app").Data["connection_url"].(string)
		if !strings.Contains(conn, ":"+pw2+"@") {
			t.Fatal("creds connection_url lacks the password")
		}
		if err := testenv.CanLoginURL(conn); err != nil {
			t.Fatalf("creds connection_url does not log in: %v", err)
		}

		_, old, oldVersion := s.Creds(t, "app", "version", "1")
		if old != pw1 || oldVersion != 1 {
			t.Fatal("creds version=1 does not return the kept prior value")
		}
		versions := s.Read(t, "versions/app")
		if strings.Contains(testenv.JSONOf(t, versions.Data), pw1) || strings.Contains(testenv.JSONOf(t, versions.Data), pw2) {
			t.Fatal("versions shows a value")
		}
		if testenv.IntOf(t, versions.Data["current_version"]) != 2 || len(versions.Data["versions"].([]interface{})) != 2 {
			t.Fatalf("versions: %#v", versions.Data)
		}

		rb := s.Write(t, "rollback/app", nil)
		if testenv.IntOf(t, rb.Data["version"]) != 3 || rb.Data["trigger"] != "rollback" {
			t.Fatalf("rollback: %#v", rb.Data)
		}
		_, pw3, _ := s.Creds(t, "app")
		if pw3 != pw1 {
			t.Fatal("rollback did not restore the previous value")
		}
		s.AssertLogin(t, "app", pw1, true)
		s.AssertLogin(t, "app", pw2, false)

		hist := s.Read(t, "history/app").Data["history"].([]interface{})
		if len(hist) != 3 || hist[0].(map[string]interface{})["trigger"] != "rollback" {
			t.Fatalf("history: %s", testenv.JSONOf(t, hist))
		}

		list, err := s.Vault.Client.Logical().List(mount + "/roles")
		if err != nil || !strings.Contains(testenv.JSONOf(t, list.Data["keys"]), `"app"`) {
			t.Fatalf("list roles: %v %v", list, err)
		}
	})

	t.Run("self-managed admin rotates itself and dependents keep working", func(t *testing.T) {
		s.ImportAdmin(t, "self-admin", "self_admin", "self-admin-pw")
		s.CreateLogin(t, "dep", "dep-pw", "")
		s.Write(t, "roles/dep", map[string]interface{}{
			"type": "postgres", "admin_role": "self-admin", "username": "dep",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		s.Write(t, "rotate/self-admin", nil)
		_, adminPW, v := s.Creds(t, "self-admin")
		if v != 2 {
			t.Fatalf("admin version %d", v)
		}
		s.AssertLogin(t, "self_admin", adminPW, true)
		s.AssertLogin(t, "self_admin", "self-admin-pw", false)
		s.Write(t, "rotate/dep", nil)
		_, depPW, _ := s.Creds(t, "dep")
		s.AssertLogin(t, "dep", depPW, true)
		// Deleting an admin that others use is refused.
		_, re := s.WriteErr("roles/self-admin", map[string]interface{}{"admin_role": "pg-admin", "allowed_usernames": ""})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "must therefore stay self-managed")
		if _, err := s.Vault.Client.Logical().Delete(mount + "/roles/self-admin"); err == nil {
			t.Fatal("deleting an admin that a role uses succeeded")
		}
		if _, err := s.Vault.Client.Logical().Delete(mount + "/roles/dep"); err != nil {
			t.Fatal(err)
		}
		if s.Read(t, "roles/dep") != nil {
			t.Fatal("deleted role still reads")
		}
	})

	t.Run("alternating keeps the previous login working until the next rotation", func(t *testing.T) {
		s.ImportAdmin(t, "alt-admin", "alt_admin", "alt-admin-pw")
		s.CreateLogin(t, "app_blue", "blue-0", "")
		s.CreateLogin(t, "app_green", "green-0", "")
		s.Write(t, "roles/alt", map[string]interface{}{
			"type": "postgres", "admin_role": "alt-admin", "strategy": "alternating", "usernames": "app_blue,app_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		u1, p1, _ := s.Creds(t, "alt")
		s.Write(t, "rotate/alt", nil)
		u2, p2, _ := s.Creds(t, "alt")
		if u1 == u2 {
			t.Fatalf("alternating rotated the same login twice: %s", u1)
		}
		s.AssertLogin(t, u2, p2, true)
		s.AssertLogin(t, u1, p1, true) // the previous login still works
		s.Write(t, "rotate/alt", nil)
		u3, p3, _ := s.Creds(t, "alt")
		if u3 != u1 {
			t.Fatalf("third rotation changed %s, want %s", u3, u1)
		}
		s.AssertLogin(t, u3, p3, true)
		s.AssertLogin(t, u2, p2, true)  // previous still works
		s.AssertLogin(t, u1, p1, false) // the one before is gone
	})

	t.Run("identifiers are quoted", func(t *testing.T) {
		s.ImportAdmin(t, "q-admin", "q_admin", "q-admin-pw")
		s.Postgres.Exec(t, `CREATE TABLE canary (x int)`)
		for i, user := range []string{`we"ird user`, `x"; DROP TABLE canary; --`} {
			s.CreateLogin(t, user, "quoted-pw", "")
			name := []string{"quoted-a", "quoted-b"}[i]
			s.Write(t, "roles/"+name, map[string]interface{}{
				"type": "postgres", "admin_role": "q-admin", "username": user,
				"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
			})
			got, pw, _ := s.Creds(t, name)
			if got != user {
				t.Fatalf("creds username %q, want %q", got, user)
			}
			s.AssertLogin(t, user, pw, true)
		}
		s.Postgres.Exec(t, `SELECT count(*) FROM canary`)
	})

	t.Run("password policy", func(t *testing.T) {
		if _, err := s.Vault.Client.Logical().Write("sys/policies/password/lower20", map[string]interface{}{
			"policy": `length = 20
rule "charset" { charset = "abcdefghijklmnopqrstuvwxyz" }`,
		}); err != nil {
			t.Fatal(err)
		}
		s.ImportAdmin(t, "pp-admin", "pp_admin", "pp-admin-pw")
		s.CreateLogin(t, "pp_app", "pp-pw", "")
		s.Write(t, "roles/pp", map[string]interface{}{
			"type": "postgres", "admin_role": "pp-admin", "username": "pp_app", "password_policy": "lower20",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, _ := s.Creds(t, "pp")
		if len(pw) != 20 || strings.ToLower(pw) != pw || strings.ContainsAny(pw, "0123456789") {
			t.Fatalf("password does not follow the policy (length %d)", len(pw))
		}
		s.AssertLogin(t, "pp_app", pw, true)
		_, re := s.WriteErr("roles/pp", map[string]interface{}{"password_policy": "no-such-policy"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "password_policy")
	})

	t.Run("bad input is a 400 naming the field and stores nothing", func(t *testing.T) {
		s.ImportAdmin(t, "bad-admin", "bad_admin", "bad-admin-pw")
		s.CreateLogin(t, "bad_app", "bad-app-pw", "")
		url := s.Postgres.URLTemplate()
		base := func(extra map[string]interface{}) map[string]interface{} {
			m := map[string]interface{}{"type": "postgres", "connection_url": url, "username": "bad_app", "admin_role": "bad-admin", "rotation_period": "720h"}
			for k, v := range extra {
				if v == nil {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
			return m
		}
		cases := []struct {
			name  string
			data  map[string]interface{}
			field string
		}{
			{"unknown type", base(map[string]interface{}{"type": "mysql"}), "type"},
			{"field of another type", base(map[string]interface{}{"hosts": "127.0.0.1:22"}), "hosts"},
			{"both period and schedule", base(map[string]interface{}{"rotation_schedule": "0 0 * * *"}), "rotation_period and rotation_schedule"},
			{"invalid cron", base(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "61 * * * *"}), "rotation_schedule"},
			{"six-field cron", base(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "0 0 0 1 * *"}), "rotation_schedule"},
			{"zero period", base(map[string]interface{}{"rotation_period": "0s"}), "rotation_period"},
			{"negative period", base(map[string]interface{}{"rotation_period": "-1h"}), "rotation_period"},
			{"no schedule", base(map[string]interface{}{"rotation_period": nil}), "rotation_period or rotation_schedule"},
			{"url without password", base(map[string]interface{}{"connection_url": "postgres://{{username}}@127.0.0.1:1/postgres"}), "connection_url"},
			{"unparsable url", base(map[string]interface{}{"connection_url": "mysql://{{username}}:{{password}}@"}), "connection_url"},
			{"missing admin", base(map[string]interface{}{"admin_role": "nope"}), "admin_role"},
			{"admin that is not self-managed", base(map[string]interface{}{"admin_role": "app"}), "admin_role"},
			{"versions_kept too small", base(map[string]interface{}{"versions_kept": 1}), "versions_kept"},
			{"self-managed without password", base(map[string]interface{}{"admin_role": nil}), "password"},
			{"alternating without usernames", base(map[string]interface{}{"strategy": "alternating"}), "username"},
			{"unknown strategy", base(map[string]interface{}{"strategy": "round-robin"}), "strategy"},
			{"the admin's own login", base(map[string]interface{}{"username": "bad_admin"}), "username"},
			{"a superuser", base(map[string]interface{}{"username": "postgres"}), "allow_privileged"},
			{"a login that does not exist", base(map[string]interface{}{"username": "bad_nobody"}), "username"},
			{"another server", base(map[string]interface{}{"connection_url": strings.Replace(url, "127.0.0.1", "localhost", 1)}), "connection_url"},
			{"fallback hosts", base(map[string]interface{}{"connection_url": strings.Replace(url, "127.0.0.1:", "127.0.0.1:1,127.0.0.1:", 1)}), "more than one host"},
			{"grants on a dependent", base(map[string]interface{}{"allowed_usernames": "*"}), "allowed_usernames"},
			{"weaker auth than the list allows", base(map[string]interface{}{"require_auth": "password"}), "require_auth"},
		}
		for _, c := range cases {
			_, re := s.WriteErr("roles/bad", c.data)
			if re == nil || re.StatusCode != http.StatusBadRequest || !strings.Contains(strings.Join(re.Errors, " "), c.field) {
				t.Errorf("%s: want a 400 naming %q, got %v", c.name, c.field, re)
			}
			if s.Read(t, "roles/bad") != nil {
				t.Fatalf("%s: a role was stored", c.name)
			}
		}
		for _, name := range []string{"a..b", "a/b", ".hidden"} {
			_, re := s.WriteErr("roles/"+name, base(nil))
			testenv.ExpectStatus(t, re, http.StatusBadRequest, "name")
		}
		_, re := s.WriteErr("roles/app", map[string]interface{}{"type": "token"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "type: cannot change")

		_, re = s.WriteErr("rotate/nope", nil)
		testenv.ExpectStatus(t, re, http.StatusNotFound, "not found")
		_, re = s.WriteErr("rollback/nope", nil)
		testenv.ExpectStatus(t, re, http.StatusNotFound, "not found")
		if s.Read(t, "creds/nope") != nil || s.Read(t, "roles/nope") != nil {
			t.Fatal("reading a missing role returned data")
		}

		// A wrong admin password, or an unreachable database, at create: an error that says
		// so, and no role.
		s.CreateLogin(t, "bad_other", "bad-other-pw", "")
		_, re = s.WriteErr("roles/wrong-admin", map[string]interface{}{
			"type": "postgres", "connection_url": url, "username": "bad_other", "password": "not-the-password", "rotation_period": "720h"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "rejects the supplied current value")
		down := "postgres://{{username}}:{{password}}@127.0.0.1:1/postgres?sslmode=disable"
		_, re = s.WriteErr("roles/unreachable", map[string]interface{}{
			"type": "postgres", "connection_url": down, "username": "bad_admin", "password": "bad-admin-pw", "rotation_period": "720h"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "cannot reach the target")
		// The admin lost its right to change passwords (its pooled session, warm from the grant
		// check, would survive a password change): the first rotation fails, and no role is left.
		s.Postgres.Exec(t, `ALTER ROLE bad_admin NOCREATEROLE`)
		_, re = s.WriteErr("roles/through-broken-admin", base(nil))
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "was not created")
		for _, name := range []string{"wrong-admin", "unreachable", "through-broken-admin"} {
			if s.Read(t, "roles/"+name) != nil {
				t.Fatalf("role %s half-created", name)
			}
		}
		s.AssertLogin(t, "bad_app", "bad-app-pw", true) // the failed create changed nothing
	})

	t.Run("a typo in connection_url at create keeps the password PostgreSQL took as version 1, not lost", func(t *testing.T) {
		s.ImportAdmin(t, "typo-admin", "typo_admin", "typo-admin-pw")
		s.CreateLogin(t, "typo_app", "typo-app-0", "")
		// The server and database must be the admin's; an option can still be wrong (this
		// server has no TLS).
		wrong := strings.Replace(s.Postgres.URLTemplate(), "sslmode=disable", "sslmode=require", 1)
		_, re := s.WriteErr("roles/typo", map[string]interface{}{
			"type": "postgres", "admin_role": "typo-admin", "username": "typo_app",
			"connection_url": wrong, "rotation_period": "720h",
		})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "which is kept as the current value")
		// The admin did change the password (PostgreSQL acknowledged it); Vault holds the new one.
		s.AssertLogin(t, "typo_app", "typo-app-0", false)
		role := s.Read(t, "roles/typo").Data
		if role["pending"] != false || role["last_outcome"] != "failed" {
			t.Fatalf("role: pending=%v last_outcome=%v", role["pending"], role["last_outcome"])
		}
		_, pw1, v1 := s.Creds(t, "typo")
		if v1 != 1 {
			t.Fatalf("version %d, want the acknowledged value as version 1", v1)
		}
		s.AssertLogin(t, "typo_app", pw1, true)

		s.Write(t, "roles/typo", map[string]interface{}{"connection_url": s.Postgres.URLTemplate()})
		s.Write(t, "rotate/typo", nil)
		_, pw, v := s.Creds(t, "typo")
		if v != 2 {
			t.Fatalf("version %d after the fix and a rotation, want 2", v)
		}
		s.AssertLogin(t, "typo_app", pw, true)
	})

	t.Run("no plaintext password reaches PostgreSQL's statement log or Vault's log", func(t *testing.T) {
		pgLog := s.Postgres.Log(t)
		if !strings.Contains(pgLog, "SCRAM-SHA-256$4096:") {
			t.Fatal("the statement log does not show the verifier: is log_statement=all on?")
		}
		// Passwords the test set itself appear in its own CREATE ROLE statements; check only
		// the ones the plugin generated.
		generated := s.generatedPasswords(t)
		if len(generated) < 5 {
			t.Fatalf("only %d generated passwords seen", len(generated))
		}
		for _, pw := range generated {
			if strings.Contains(pgLog, pw) {
				t.Fatal("a generated password appears in PostgreSQL's statement log")
			}
		}
		s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
	})
}

// generatedPasswords returns the current and kept passwords of every role (all generated
// by the plugin except imported version-1 values, which the test created).
func (s *stack) generatedPasswords(t *testing.T) []string {
	t.Helper()
	list, err := s.Vault.Client.Logical().ListWithContext(context.Background(), mount+"/roles")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range list.Data["keys"].([]interface{}) {
		role := k.(string)
		versions := s.Read(t, "versions/"+role).Data["versions"].([]interface{})
		for _, v := range versions {
			vm := v.(map[string]interface{})
			if vm["trigger"] == "import" {
				continue
			}
			sec := s.Read(t, "creds/"+role, "version", testenv.JSONOf(t, vm["version"]))
			out = append(out, sec.Data["password"].(string))
		}
	}
	return out
}

// TestPostgresLockedRole: another session holds `BEGIN; ALTER ROLE app ...` open. Rotating app
// fails once lock_timeout passes, with an error that says why, and app keeps its password; six
// other roles of the same admin rotate meanwhile, before the blocker lets go; then app rotates.
func TestPostgresLockedRole(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	ctx := context.Background()
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	var others []string
	for i := range 7 {
		user := "app"
		if i > 0 {
			user = fmt.Sprintf("other_%d", i)
			others = append(others, user)
		}
		s.CreateLogin(t, user, user+"-initial", "")
		s.Write(t, "roles/"+user, map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": user,
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "2160h",
		})
	}
	_, appPW, appVersion := s.Creds(t, "app")

	blocker, err := pgx.Connect(ctx, s.Postgres.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	for _, sql := range []string{"BEGIN", "ALTER ROLE app CONNECTION LIMIT 7"} {
		if _, err := blocker.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	holdsLock := func() {
		t.Helper()
		var held int
		err := blocker.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE pid = pg_backend_pid() AND locktype = 'transactionid' AND granted`).Scan(&held)
		if err != nil || held != 1 {
			t.Fatalf("the blocker no longer holds its transaction lock: %d, %v", held, err)
		}
	}

	appDone := make(chan *api.ResponseError, 1)
	go func() {
		_, re := s.WriteErr("rotate/app", nil)
		appDone <- re
	}()
	// The rotation's ALTER ROLE app waits for the blocker's lock at PostgreSQL.
	// (A fresh session per look: pg_stat_activity is a snapshot per transaction.)
	testenv.Eventually(t, "rotate/app waits for the blocker's lock", time.Minute, func() error {
		conn, err := pgx.Connect(ctx, s.Postgres.AdminDSN())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var waiting int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE usename = 'oa_admin' AND wait_event_type = 'Lock' AND query LIKE '%ALTER ROLE "app"%'`).Scan(&waiting)
		if err == nil && waiting != 1 {
			err = fmt.Errorf("%d waiting", waiting)
		}
		return err
	})

	// The other roles of the same admin rotate, all at once, while the lock is held.
	errs := make(chan error, len(others))
	for _, user := range others {
		go func() {
			_, re := s.WriteErr("rotate/"+user, nil)
			if re != nil {
				errs <- fmt.Errorf("rotate/%s: %d %v", user, re.StatusCode, re.Errors)
				return
			}
			errs <- nil
		}()
	}
	for range others {
		if err := <-errs; err != nil {
			t.Fatalf("a role of the same admin did not rotate while another was locked: %v", err)
		}
	}
	holdsLock()
	for _, user := range others {
		_, pw, v := s.Creds(t, user)
		if v != 2 {
			t.Fatalf("%s: version %d after its rotation, want 2", user, v)
		}
		s.AssertLogin(t, user, pw, true)
	}

	re := <-appDone
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "timed out waiting for a lock held by another session")
	s.AssertNoSecretIn(t, "the failed rotation's error", strings.Join(re.Errors, " "))
	holdsLock()
	s.AssertLogin(t, "app", appPW, true)
	if _, pw, v := s.Creds(t, "app"); pw != appPW || v != appVersion {
		t.Fatalf("the failed rotation changed app's current credential (version %d -> %d)", appVersion, v)
	}
	hist := s.Read(t, "history/app").Data["history"].([]interface{})
	if last := hist[0].(map[string]interface{}); last["outcome"] != "failed" || !strings.Contains(testenv.JSONOf(t, last), "lock_timeout") {
		t.Fatalf("history of the failed rotation: %s", testenv.JSONOf(t, last))
	}

	if _, err := blocker.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	s.Write(t, "rotate/app", nil)
	_, newPW, v := s.Creds(t, "app")
	if v != appVersion+1 {
		t.Fatalf("app: version %d after the rotation, want %d", v, appVersion+1)
	}
	s.AssertLogin(t, "app", newPW, true)
	s.AssertLogin(t, "app", appPW, false)
	s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
}
