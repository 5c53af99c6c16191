package postgres

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// testGrants: the privileges PostgreSQL reports decide whether an admin grants a login; every
// way a login reaches beyond itself is refused unless the admin allows privileged logins.
func (f *pgFixture) testGrants(t *testing.T) {
	res := rotators.NewResources()
	defer res.Close()
	f.pg.Exec(t, `CREATE ROLE gr_plain LOGIN PASSWORD 'x';
		CREATE ROLE gr_super LOGIN SUPERUSER PASSWORD 'x';
		CREATE ROLE gr_createrole LOGIN CREATEROLE PASSWORD 'x';
		CREATE ROLE gr_replication LOGIN REPLICATION PASSWORD 'x';
		CREATE ROLE gr_bypassrls LOGIN BYPASSRLS PASSWORD 'x';
		CREATE ROLE gr_powers NOLOGIN CREATEROLE;
		CREATE ROLE gr_group NOLOGIN IN ROLE gr_powers;
		CREATE ROLE gr_nested LOGIN NOINHERIT IN ROLE gr_group PASSWORD 'x';
		CREATE ROLE gr_files LOGIN IN ROLE pg_read_server_files PASSWORD 'x';
		CREATE ROLE gr_as_admin LOGIN IN ROLE `+fixtureAdmin+` PASSWORD 'x';
		CREATE ROLE "gr odd'""name" LOGIN PASSWORD 'x';`)
	_, env := f.managed(t, "gr_plain", defaultLimits, res)
	grant := func(user string, allowPrivileged bool) error {
		admin := env.Linked[FieldAdminRole]
		admin.Settings = adminSettings(f.pg.URLTemplate())
		if allowPrivileged {
			admin.Settings.Set(rotators.Field{Name: FieldAllowPrivileged, Kind: rotators.FieldBool}, true)
		}
		e := env
		e.Linked = map[string]rotators.Linked{FieldAdminRole: admin}
		s := settings(map[string]interface{}{FieldConnectionURL: f.pg.URLTemplate(), FieldUsername: user, FieldAdminRole: "pg-admin"})
		return Kind{}.CheckGrant(context.Background(), e, s)
	}
	for _, ok := range []string{"gr_plain", `gr odd'"name`} {
		if err := grant(ok, false); err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
	}
	for user, why := range map[string]string{
		"gr_super": "SUPERUSER", "gr_createrole": "CREATEROLE", "gr_replication": "REPLICATION", "gr_bypassrls": "BYPASSRLS",
		"gr_nested": "member of gr_powers", "gr_files": "member of pg_read_server_files", "gr_as_admin": "member of " + fixtureAdmin,
		"postgres": "SUPERUSER",
	} {
		err := grant(user, false)
		if err == nil || !strings.HasPrefix(err.Error(), "username: login \""+user+"\" is privileged") || !strings.Contains(err.Error(), why) ||
			!strings.Contains(err.Error(), "allow_privileged=true") {
			t.Fatalf("%s: %v, want a refusal naming %s", user, err, why)
		}
		if err := grant(user, true); err != nil {
			t.Fatalf("%s with allow_privileged: %v", user, err)
		}
	}
	if err := grant("gr_missing", true); err == nil || !strings.Contains(err.Error(), `username: no login "gr_missing" exists`) {
		t.Fatalf("a missing login: %v", err)
	}
	// The check is read only: every login keeps its password.
	f.assertLogin(t, "gr_plain", "x", true)
	f.assertLogin(t, "gr_super", "x", true)
}

// TestNoPasswordForWeakAuthentication: a server that asks for a cleartext or MD5 password, or
// lets the login in without one, gets nothing from Verify nor from Apply's admin session,
// unless the role's require_auth allows that method.
func TestNoPasswordForWeakAuthentication(t *testing.T) {
	const password = "the-password-a-weak-server-wants"
	for _, tc := range []struct {
		name string
		ask  pgproto3.BackendMessage
	}{
		{"cleartext", &pgproto3.AuthenticationCleartextPassword{}},
		{"md5", &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}}},
		{"trust", &pgproto3.AuthenticationOk{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartAuthServer(t, tc.ask)
			tg, err := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: srv.URLTemplate(), FieldUsername: "app"}))
			if err != nil {
				t.Fatal(err)
			}
			err = tg.Verify(context.Background(), rotators.Env{}, secret("app", password))
			if err == nil || !strings.Contains(err.Error(), "require_auth") {
				t.Fatalf("Verify against a server asking for %s = %v, want a require_auth refusal", tc.name, err)
			}
			if errors.Is(err, rotators.ErrRejected) {
				t.Fatal("a refused authentication method is not the target rejecting the value")
			}
			res := rotators.NewResources()
			defer res.Close()
			err = tg.Apply(context.Background(), rotators.Env{Resources: res}, secret("app", password), secret("app", "new-"+password))
			if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "require_auth") {
				t.Fatalf("Apply through a server asking for %s = %v, want not applied", tc.name, err)
			}
			asked, received := srv.Got()
			if asked < 2 {
				t.Fatalf("the server asked %d times; the test proves nothing", asked)
			}
			if len(received) != 0 && tc.name != "trust" {
				// pgx closes the connection; a Terminate message is all it may send.
				for _, b := range [][]byte{[]byte(password), []byte("md5")} {
					if bytes.Contains(received, b) {
						t.Fatalf("the client sent %q to a server asking for %s", received, tc.name)
					}
				}
			}
			if bytes.Contains(received, []byte(password)) || strings.Contains(err.Error(), password) {
				t.Fatal("the password left the plugin")
			}
		})
	}

	// With require_auth allowing it, the weak method is used: the setting is what decides.
	srv := testenv.StartAuthServer(t, &pgproto3.AuthenticationCleartextPassword{})
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: srv.URLTemplate(), FieldUsername: "app", FieldRequireAuth: AuthSCRAM + ",md5,password"}))
	if err != nil {
		t.Fatal(err)
	}
	_ = tg.Verify(context.Background(), rotators.Env{}, secret("app", password))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := srv.Got(); bytes.Contains(got, []byte(password)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("with require_auth=scram-sha-256,md5,password the client never answered the cleartext request: the test's server is broken")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testSessionsColdPool: the first list of a login's sessions, on an engine that has no pool to
// the server yet, shows them (an empty list of the engine's own sessions is no NULL that hides
// every row).
func (f *pgFixture) testSessionsColdPool(t *testing.T) {
	res := rotators.NewResources()
	defer res.Close()
	f.createLogin(t, "cold_app", "cold-app-pw", "")
	f.pg.Exec(t, "GRANT pg_read_all_stats TO "+fixtureAdmin)
	held, err := pgx.Connect(context.Background(), f.pg.DSN("cold_app", "cold-app-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	tg, env := f.managed(t, "cold_app", defaultLimits, res)
	list, err := tg.Sessions(context.Background(), env, secret("cold_app", "cold-app-pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 1 || list.Sessions[0].Account != "cold_app" {
		t.Fatalf("sessions on a cold engine: %+v, want the one held", list.Sessions)
	}
}
