package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/go-secure-stdlib/strutil"
	"github.com/jackc/pgx/v5"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// An admin role grants explicitly (README "Security model"): a role that names it as admin_role
// may manage a login only when the login matches the admin's allowed_usernames, is not the
// admin's own login, lives on the admin's server (host and port: logins are cluster-wide), and
// holds no privilege that reaches beyond itself unless the admin sets allow_privileged. The
// privilege check runs when the role is written and again, on the admin's session, before
// every change that is not a restore.

var (
	_ rotators.Grantor    = Kind{}
	_ rotators.Inheritor  = Kind{}
	_ rotators.Claimer    = Kind{}
	_ rotators.Locator    = Kind{}
	_ rotators.Identifier = Kind{}
)

// riskyPredefinedRoles are PostgreSQL's predefined roles whose members reach beyond their own
// objects: act as the server's operating-system user, read or write every table, open outbound
// connections from the server, signal other sessions, or force checkpoints. A login that is a
// member counts as privileged. Names a server does not know (older versions) match nothing.
var riskyPredefinedRoles = []string{"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files",
	"pg_read_all_data", "pg_write_all_data", "pg_create_subscription", "pg_signal_backend", "pg_checkpoint"}

// Inherit gives a role with an admin_role and no connection_url the admin's: the server a
// dependent's password is proven on is the admin's.
func (Kind) Inherit(s *rotators.Settings, linked map[string]rotators.Linked) {
	if s.String(FieldConnectionURL) != "" || s.String(FieldAdminRole) == "" {
		return
	}
	if admin, ok := linked[FieldAdminRole]; ok {
		s.Set(rotators.Field{Name: FieldConnectionURL, Kind: rotators.FieldString}, admin.Settings.String(FieldConnectionURL))
	}
}

// IdentityFields: the logins a role's values belong to.
func (Kind) IdentityFields() []string { return []string{FieldUsername, FieldUsernames, FieldStrategy} }

// LocationFields: connection_url says where passwords are sent.
func (Kind) LocationFields() []string { return []string{FieldConnectionURL} }

// Claims are the logins the role manages, named by server: host:port plus login. A dependent's
// server is its admin's current one, not the copy of the URL it was written with: moving the
// admin moves every claim of its dependents with it.
func (Kind) Claims(s rotators.Settings, linked map[string]rotators.Linked) []rotators.Claim {
	c, err := parseConfig(s)
	if err != nil {
		return nil
	}
	tmpl := c.urlTemplate
	if admin, ok := linked[FieldAdminRole]; ok && c.adminRole != "" {
		tmpl = admin.Settings.String(FieldConnectionURL)
	}
	srv, err := serverOf(tmpl)
	if err != nil {
		return nil
	}
	field := c.usernamesField()
	out := make([]rotators.Claim, 0, len(c.usernames))
	for _, u := range c.usernames {
		out = append(out, rotators.Claim{Field: field, Account: fmt.Sprintf("login %q at %s", u, srv.hostPort())})
	}
	return out
}

// usernamesField names the field that holds the role's logins.
func (c config) usernamesField() string {
	if len(c.usernames) == 2 {
		return FieldUsernames
	}
	return FieldUsername
}

// CheckGrant decides whether the role's admin_role grants its logins: the static rules, then the
// logins' privileges as PostgreSQL reports them through the admin's own session (read only). An
// error that wraps rotators.ErrUnreachable means PostgreSQL could not be asked.
func (Kind) CheckGrant(ctx context.Context, env rotators.Env, s rotators.Settings) error {
	c, err := parseConfig(s)
	if err != nil || c.adminRole == "" {
		return err
	}
	admin, err := grantingAdmin(c, env)
	if err != nil {
		return err
	}
	if err := c.grantedBy(admin); err != nil {
		return err
	}
	lim := defaultLimits
	lim.auth = requireAuthOf(admin.Settings)
	connURL := renderURL(admin.Settings.String(FieldConnectionURL), admin.Current[PartUsername], admin.Current[PartPassword])
	for _, u := range c.usernames {
		var refusal error
		err := lim.withSession(ctx, env.Resources, connURL, func(ctx context.Context, conn *pgx.Conn) error {
			refusal = privilegeRefusal(ctx, conn, c.usernamesField(), u, admin)
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: checking login %q through admin_role %q: %w", rotators.ErrUnreachable, u, admin.Name, err)
		}
		if refusal != nil {
			return refusal
		}
	}
	return nil
}

// grantingAdmin is the admin role from env, with a current credential.
func grantingAdmin(c config, env rotators.Env) (rotators.Linked, error) {
	admin, ok := env.Linked[FieldAdminRole]
	if !ok || admin.Current == nil {
		return admin, fmt.Errorf("%s: role %q has no current credential", FieldAdminRole, c.adminRole)
	}
	return admin, nil
}

// grantedBy applies the rules that need no server: allowed_usernames, the admin's own login,
// the same server (host and port; the database may differ, logins are cluster-wide). Apply runs them again before every change, so that an admin
// narrowed after its dependents were written stops them.
func (c config) grantedBy(admin rotators.Linked) error {
	field := c.usernamesField()
	allowed := admin.Settings.List(FieldAllowedUsernames)
	own := admin.Settings.String(FieldUsername)
	for _, u := range c.usernames {
		if u == own {
			return fmt.Errorf("%s: %q is the login of admin_role %q itself; a role may not manage its admin's login", field, u, admin.Name)
		}
		if !usernameAllowed(allowed, u) {
			return fmt.Errorf("%s: login %q is not in admin_role %q's %s", field, u, admin.Name, FieldAllowedUsernames)
		}
	}
	mine, err := serverOf(c.urlTemplate)
	if err != nil {
		return fmt.Errorf("%s: %w", FieldConnectionURL, err)
	}
	theirs, err := serverOf(admin.Settings.String(FieldConnectionURL))
	if err != nil {
		return fmt.Errorf("%s: admin_role %q's connection_url: %w", FieldAdminRole, admin.Name, err)
	}
	if mine.hostPort() != theirs.hostPort() {
		return fmt.Errorf("%s: must name admin_role %q's host and port (%s); leave it out to use the admin's", FieldConnectionURL, admin.Name, theirs.hostPort())
	}
	return nil
}

// usernameAllowed matches a login against allowed_usernames: "*" allows any login; an item with
// a leading or trailing "*" matches by suffix or prefix (both: by substring); any other item
// matches exactly. Empty: nothing is allowed. These are the globs of Vault's database engine's
// allowed_roles.
func usernameAllowed(allowed []string, user string) bool {
	return strutil.StrListContains(allowed, "*") || strutil.StrListContainsGlob(allowed, user)
}

// server is where a connection_url points: host, port and database.
type server struct {
	host     string
	port     uint16
	database string
}

func (s server) hostPort() string {
	return strings.TrimSuffix(strings.TrimPrefix(s.host, "["), "]") + ":" + strconv.Itoa(int(s.port))
}

func (s server) String() string { return s.hostPort() + "/" + s.database }

// serverOf parses a connection_url template. Hosts compare case-insensitively; a name and an
// address of the same server differ (no lookup is made).
func serverOf(tmpl string) (server, error) {
	cfg, err := parseConn(renderURL(tmpl, "u", "p"))
	if err != nil {
		return server{}, err
	}
	return server{host: strings.ToLower(cfg.Host), port: cfg.Port, database: cfg.Database}, nil
}

// privilegesQuery reports, for login $1, whether it exists and every reason it reaches beyond
// itself: its own attributes, and membership (direct or not) in a role that has them, in the
// admin's login, or in a predefined role that acts as the server's OS user. pg_has_role's
// MEMBER counts memberships it could SET ROLE to even without INHERIT. A superuser is a member
// of every role: its memberships add nothing.
const privilegesQuery = `SELECT r.rolsuper, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
  CASE WHEN r.rolsuper THEN '' ELSE COALESCE((SELECT string_agg(p.rolname, ',' ORDER BY p.rolname) FROM pg_catalog.pg_roles p
    WHERE p.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER')
      AND (p.rolsuper OR p.rolcreaterole OR p.rolreplication OR p.rolbypassrls OR p.rolname = ANY($2))), '') END
FROM pg_catalog.pg_roles r WHERE r.rolname = $1`

// privilegeRefusal asks PostgreSQL, on the admin's session conn, whether user exists and what
// it can reach; it refuses a missing login, and a privileged one unless the admin allows
// privileged logins. Failing to ask wraps rotators.ErrUnreachable.
func privilegeRefusal(ctx context.Context, conn *pgx.Conn, field, user string, admin rotators.Linked) error {
	asRoles := append([]string{admin.Current[PartUsername]}, riskyPredefinedRoles...)
	var super, createRole, replication, bypassRLS bool
	var via string
	err := conn.QueryRow(ctx, privilegesQuery, user, asRoles).Scan(&super, &createRole, &replication, &bypassRLS, &via)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: no login %q exists at admin_role %q's server", field, user, admin.Name)
	case err != nil:
		return fmt.Errorf("%w: checking login %q's privileges through admin_role %q: %w", rotators.ErrUnreachable, user, admin.Name, err)
	case admin.Settings.Bool(FieldAllowPrivileged):
		return nil
	}
	var why []string
	for _, a := range []struct {
		has  bool
		name string
	}{{super, "SUPERUSER"}, {createRole, "CREATEROLE"}, {replication, "REPLICATION"}, {bypassRLS, "BYPASSRLS"}} {
		if a.has {
			why = append(why, a.name)
		}
	}
	if via != "" {
		why = append(why, "member of "+via)
	}
	if len(why) > 0 {
		return fmt.Errorf("%s: login %q is privileged (%s); admin_role %q does not set %s=true", field, user, strings.Join(why, ", "), admin.Name, FieldAllowPrivileged)
	}
	return nil
}

// checkAdminOnly refuses grants on a role that is not an admin: they would grant nothing.
func checkAdminOnly(s rotators.Settings) error {
	switch {
	case s.String(FieldAdminRole) == "":
		return nil
	case len(s.List(FieldAllowedUsernames)) > 0:
		return fmt.Errorf("%s: only an admin role (one without admin_role) grants logins", FieldAllowedUsernames)
	case s.Bool(FieldAllowPrivileged):
		return fmt.Errorf("%s: only an admin role (one without admin_role) grants logins", FieldAllowPrivileged)
	}
	return nil
}

// requireAuthOf is the libpq require_auth a role's sessions use.
func requireAuthOf(s rotators.Settings) string {
	if v := s.String(FieldRequireAuth); v != "" {
		return v
	}
	return AuthSCRAM
}
