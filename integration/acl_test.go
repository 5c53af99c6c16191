package integration

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// teamPolicy is what README "Security model" gives a team: its own roles, their rotation and
// their credentials, nothing else.
const teamPolicy = `
path "rotation/roles/team-a-*"  { capabilities = ["create", "read", "update", "delete"] }
path "rotation/rotate/team-a-*" { capabilities = ["update"] }
path "rotation/creds/team-a-*"  { capabilities = ["read"] }
`

// TestLeastPrivilege: a token with the team policy tries every escalation of issue 9 through
// the real Vault: the admin's own login, a superuser, a login outside allowed_usernames, a login
// another role manages, its password sent to another server or to one that asks for it in
// clear, the mount config. Each is refused with an error naming the field (or Vault's 403),
// nothing is stored, nothing is sent, and every login keeps its password.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	root := s.Vault.Client

	// The operator: an admin that grants team A's logins, and a role of its own for one of them.
	s.CreateLogin(t, "oa_admin", "acl-admin-pw", "CREATEROLE")
	s.Write(t, "roles/pg-admin", map[string]interface{}{
		"type": "postgres", "connection_url": s.Postgres.URLTemplate(), "username": "oa_admin", "password": "acl-admin-pw",
		"rotation_period": "2160h", "allowed_usernames": "team_a_*",
	})
	for user, extra := range map[string]string{"team_a_app": "", "team_a_taken": "", "team_a_super": "SUPERUSER",
		"team_a_replicator": "REPLICATION", "team_b_app": "", "team_a_z": ""} {
		s.CreateLogin(t, user, "pw-"+user, extra)
	}
	s.Postgres.Exec(t, `CREATE ROLE team_a_member LOGIN IN ROLE oa_admin PASSWORD 'pw-team_a_member'`)
	s.Write(t, "roles/ops-taken", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "team_a_taken", "rotation_period": "2160h"})

	if err := root.Sys().PutPolicy("team-a", teamPolicy); err != nil {
		t.Fatal(err)
	}
	team := s.PolicyClient(t, "team-a")
	asTeam := func(path string, data map[string]interface{}) (*api.Secret, *api.ResponseError) {
		sec, err := team.Logical().WriteWithContext(context.Background(), mount+"/"+path, data)
		var re *api.ResponseError
		if errors.As(err, &re) {
			return sec, re
		}
		if err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		return sec, nil
	}
	dependent := func(extra map[string]interface{}) map[string]interface{} {
		m := map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "rotation_period": "720h"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	_, adminPW, _ := s.Creds(t, "pg-admin")
	_, takenPW, _ := s.Creds(t, "ops-taken")

	// A cleartext-asking server where a password might be sent (a FAKE: see testenv.AuthServer).
	clear := testenv.StartAuthServer(t, &pgproto3.AuthenticationCleartextPassword{})

	for _, tc := range []struct {
		name  string
		data  map[string]interface{}
		field string
	}{
		{"the admin's own login", dependent(map[string]interface{}{"username": "oa_admin"}), `username: login "oa_admin" at`},
		{"the superuser postgres", dependent(map[string]interface{}{"username": "postgres"}), "username: login \"postgres\" is not in admin_role \"pg-admin\"'s allowed_usernames"},
		{"a superuser inside the glob", dependent(map[string]interface{}{"username": "team_a_super"}), "username: login \"team_a_super\" is privileged (SUPERUSER)"},
		{"a replication login", dependent(map[string]interface{}{"username": "team_a_replicator"}), "privileged (REPLICATION)"},
		{"a member of the admin", dependent(map[string]interface{}{"username": "team_a_member"}), "privileged (member of oa_admin)"},
		{"a login outside allowed_usernames", dependent(map[string]interface{}{"username": "team_b_app"}), "username: login \"team_b_app\" is not in"},
		{"a login another role manages", dependent(map[string]interface{}{"username": "team_a_taken"}), `is already managed by role "ops-taken"`},
		{"a dependent pointed at another server", dependent(map[string]interface{}{"username": "team_a_app", "connection_url": clear.URLTemplate()}), "connection_url: must name admin_role"},
		{"an admin of its own that grants itself", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "team_a_z", "allowed_usernames": "*", "rotation_period": "720h"}, "allowed_usernames: only an admin role"},
		{"a self-managed role through a cleartext server", map[string]interface{}{"type": "postgres", "connection_url": clear.URLTemplate(), "username": "team_a_z", "password": "pw-team_a_z", "rotation_period": "720h"}, "require_auth"},
		{"weaker auth than the plugin allows", dependent(map[string]interface{}{"username": "team_a_app", "require_auth": "password"}), "require_auth"},
		{"a docker consumer outside allowed_consumers (Vault's own container)", dependent(map[string]interface{}{"username": "team_a_app", "consumers": "docker:vault"}), `consumers: "docker:vault" is not in`},
		{"a health target outside allowed_health_targets (cloud metadata)", dependent(map[string]interface{}{"username": "team_a_app", "health_checks": "http://169.254.169.254/latest/meta-data/"}), "health_checks:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, re := asTeam("roles/team-a-x", tc.data)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, tc.field)
			if s.Read(t, "roles/team-a-x") != nil {
				t.Fatal("a refused role was stored")
			}
		})
	}
	if asked, got := clear.Got(); asked == 0 || bytes.Contains(got, []byte("pw-team_a_z")) || bytes.Contains(got, []byte(adminPW)) {
		t.Fatalf("the cleartext server was asked %d times and received %q", asked, got)
	}

	// The config is the operator's: no sudo, no write, no read.
	if _, err := team.Logical().Write(mount+"/config", map[string]interface{}{"max_failures": 1}); !isForbidden(err) {
		t.Fatalf("config write by the team: %v, want 403", err)
	}
	if _, err := team.Logical().Read(mount + "/creds/pg-admin"); !isForbidden(err) {
		t.Fatalf("creds of the admin read by the team: %v, want 403", err)
	}

	// What the team was granted works: a role for its own login, rotated, read, and moved only
	// where its password was proven.
	if _, re := asTeam("roles/team-a-app", dependent(map[string]interface{}{"username": "team_a_app"})); re != nil {
		t.Fatalf("the granted role: %v", re)
	}
	sec, err := team.Logical().Read(mount + "/creds/team-a-app")
	if err != nil || sec == nil {
		t.Fatalf("team creds: %v", err)
	}
	pw, _ := sec.Data["password"].(string)
	s.Remember(pw)
	s.AssertLogin(t, "team_a_app", pw, true)
	if _, re := asTeam("roles/team-a-app", map[string]interface{}{"connection_url": clear.URLTemplate()}); re == nil ||
		!strings.Contains(strings.Join(re.Errors, " "), "connection_url") {
		t.Fatalf("moving the granted role to another server: %v", re)
	}
	if _, got := clear.Got(); bytes.Contains(got, []byte(pw)) {
		t.Fatal("the team's password reached the cleartext server")
	}

	// Nothing changed at PostgreSQL for the logins the team tried.
	s.AssertLogin(t, "oa_admin", adminPW, true)
	s.AssertLogin(t, "team_a_taken", takenPW, true)
	for _, user := range []string{"team_a_super", "team_a_replicator", "team_b_app", "team_a_z", "team_a_member"} {
		s.AssertLogin(t, user, "pw-"+user, true)
	}
	s.AssertLogin(t, "postgres", s.Postgres.Password, true)

	// The DBA makes the team's login privileged later (or the role predates grants): the next
	// rotation is refused on the admin's session before anything changes.
	s.Postgres.Exec(t, `ALTER ROLE team_a_app CREATEROLE`)
	_, re := asTeam("rotate/team-a-app", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, `login "team_a_app" is privileged (CREATEROLE)`)
	s.AssertLogin(t, "team_a_app", pw, true)
	s.Postgres.Exec(t, `ALTER ROLE team_a_app NOCREATEROLE`)

	// The operator moves the admin to another spelling of its server: the logins its dependents
	// hold move with it, and the team cannot take one under the new spelling.
	s.Write(t, "roles/pg-admin", map[string]interface{}{"connection_url": strings.Replace(s.Postgres.URLTemplate(), "127.0.0.1", "localhost", 1)})
	_, re = asTeam("roles/team-a-steal", dependent(map[string]interface{}{"username": "team_a_taken"}))
	testenv.ExpectStatus(t, re, http.StatusBadRequest, `is already managed by role "ops-taken"`)
	s.AssertLogin(t, "team_a_taken", takenPW, true)

	// The operator narrows the grant: the team's role stops rotating, PostgreSQL unchanged.
	s.Write(t, "roles/pg-admin", map[string]interface{}{"allowed_usernames": "team_a_taken"})
	_, re = asTeam("rotate/team-a-app", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "allowed_usernames")
	s.AssertLogin(t, "team_a_app", pw, true)
}

// TestConsumerIsItsExactName: Docker resolves a reference as an id, a name, then an id prefix;
// a consumer docker:<prefix of some container's id> must not reach that container through an
// allow-list glob written for names (docker:4e* meant for names like 4e-api).
func TestConsumerIsItsExactName(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.ImportAdmin(t, "pg-admin", "ex_admin", "ex-admin-pw")
	s.CreateLogin(t, "ex_app", "ex-app-pw", "")
	victim := s.RunDemo(t, "none", testenv.DemoOptions{})
	prefix := victim.ID[:8]
	s.Write(t, "config", map[string]interface{}{"docker_host": testenv.DockerHost(), "allowed_consumers": "docker:" + victim.ID[:2] + "*"})
	started := victim.Inspect(t).State.StartedAt

	s.Write(t, "roles/ex", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "ex_app", "password": "ex-app-pw",
		"rotation_period": "720h", "consumers": "docker:" + prefix,
	})
	// Consumers are looked up in prepare, before PostgreSQL is touched.
	_, re := s.WriteErr("rotate/ex", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, `no such container "`+prefix+`"`)
	s.AssertLogin(t, "ex_app", "ex-app-pw", true)
	if got := victim.Inspect(t).State.StartedAt; got != started {
		t.Fatal("the container whose id starts with the name was restarted")
	}
}
