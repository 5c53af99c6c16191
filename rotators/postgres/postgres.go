// Package postgres rotates the password of a PostgreSQL login.
//
// The new password reaches the server only as a SCRAM-SHA-256 verifier computed here, so the
// plaintext never appears on the wire of the ALTER ROLE nor in the server's statement log.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Field names, shared with Vault's database engine where the meaning is the same.
const (
	FieldConnectionURL = "connection_url"
	FieldUsername      = "username"
	FieldPassword      = "password"
	FieldAdminRole     = "admin_role"
	FieldStrategy      = "strategy"
	FieldUsernames     = "usernames"
	// Grants of an admin role (README "Security model").
	FieldAllowedUsernames = "allowed_usernames"
	FieldAllowPrivileged  = "allow_privileged"
	// FieldRequireAuth is libpq's require_auth: the authentication methods a session accepts.
	FieldRequireAuth = "require_auth"
	// AuthSCRAM, the default, never lets the password leave the plugin: SCRAM proves it.
	AuthSCRAM = "scram-sha-256"

	StrategySingle      = "single"
	StrategyAlternating = "alternating"

	// Secret parts.
	PartUsername = "username"
	PartPassword = "password"

	placeholderUser = "{{username}}"
	placeholderPass = "{{password}}"

	// maxIdentifierLen is PostgreSQL's NAMEDATALEN-1: longer names are silently truncated.
	maxIdentifierLen = 63
	// maxURLLen and maxPasswordLen bound connection_url and an imported password.
	maxURLLen      = 2048
	maxPasswordLen = 1024
)

func init() { rotators.Register(Kind{}) }

// Kind is the postgres secret kind.
type Kind struct{}

var (
	_ rotators.Kind     = Kind{}
	_ rotators.Target   = (*target)(nil)
	_ rotators.Settler  = (*target)(nil)
	_ rotators.Accounts = (*target)(nil)
)

func (Kind) Name() string { return "postgres" }

func (Kind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: FieldConnectionURL, Kind: rotators.FieldString, MaxLen: maxURLLen, Description: "PostgreSQL URL with {{username}} and {{password}} placeholders, e.g. postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=verify-full. With admin_role: leave it out to use the admin's; if given, its host, port and database must be the admin's. A change is proven with the current password before it is stored."},
		{Name: FieldUsername, Kind: rotators.FieldString, Description: "The login whose password is rotated (single strategy)."},
		{Name: FieldPassword, Kind: rotators.FieldSecret, MaxLen: maxPasswordLen, Description: "The login's current password, to import it as version 1 without changing it (at most 1024 bytes). Write-only."},
		{Name: FieldAdminRole, Kind: rotators.FieldRoleRef, RefKind: "postgres", Description: "Name of a self-managed postgres role whose current credential performs the change. Absent: the login changes its own password."},
		{Name: FieldStrategy, Kind: rotators.FieldString, Default: StrategySingle, Allowed: []string{StrategySingle, StrategyAlternating},
			Description: "single: one login, its password changes. alternating: two logins (usernames); each rotation changes the inactive one and makes it current, so the previous one keeps working until the next rotation."},
		{Name: FieldUsernames, Kind: rotators.FieldList, Description: "The two logins of the alternating strategy."},
		{Name: FieldAllowedUsernames, Kind: rotators.FieldList, MaxItems: 64, MaxLen: maxIdentifierLen + 2,
			Description: "Admin roles only: the logins that roles naming this one as admin_role may manage: '*' for any, 'app_*' (prefix), '*_svc' (suffix), or exact names. Empty: none. Never the admin's own login, and never a privileged one without allow_privileged."},
		{Name: FieldAllowPrivileged, Kind: rotators.FieldBool,
			Description: "Admin roles only: let dependent roles manage logins that are SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS, or members of such a role (default false)."},
		{Name: FieldRequireAuth, Kind: rotators.FieldString, Default: AuthSCRAM, Allowed: []string{AuthSCRAM, AuthSCRAM + ",md5", AuthSCRAM + ",md5,password"},
			Description: "Authentication methods this role's sessions accept (libpq's require_auth). Default scram-sha-256: a server that asks for md5 or a cleartext password, or lets the login in without one, is refused before any password is sent."},
	}
}

// config is a role's postgres settings after validation.
type config struct {
	urlTemplate string
	usernames   []string // one for single, two for alternating
	adminRole   string
	requireAuth string
}

func (Kind) Bind(s rotators.Settings) (rotators.Target, error) {
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	lim := defaultLimits
	lim.auth = c.requireAuth
	return &target{cfg: c, lim: lim}, nil
}

func parseConfig(s rotators.Settings) (config, error) {
	c := config{urlTemplate: s.String(FieldConnectionURL), adminRole: s.String(FieldAdminRole), requireAuth: requireAuthOf(s)}
	// A dependent written without connection_url takes its admin's (Inherit) before it is stored.
	if c.urlTemplate != "" || c.adminRole == "" {
		if err := validateURLTemplate(c.urlTemplate); err != nil {
			return c, err
		}
	}
	if err := checkAdminOnly(s); err != nil {
		return c, err
	}
	switch strategy := s.String(FieldStrategy); strategy {
	case "", StrategySingle:
		if s.Has(FieldUsernames) {
			return c, fmt.Errorf("%s: only used with %s=%s", FieldUsernames, FieldStrategy, StrategyAlternating)
		}
		c.usernames = []string{s.String(FieldUsername)}
		if err := validateUsername(FieldUsername, c.usernames[0]); err != nil {
			return c, err
		}
	case StrategyAlternating:
		if s.Has(FieldUsername) {
			return c, fmt.Errorf("%s: not used with %s=%s (give %s)", FieldUsername, FieldStrategy, StrategyAlternating, FieldUsernames)
		}
		c.usernames = s.List(FieldUsernames)
		if len(c.usernames) != 2 || c.usernames[0] == c.usernames[1] {
			return c, fmt.Errorf("%s: %s=%s needs exactly two different logins", FieldUsernames, FieldStrategy, StrategyAlternating)
		}
		for _, u := range c.usernames {
			if err := validateUsername(FieldUsernames, u); err != nil {
				return c, err
			}
		}
		if c.adminRole == "" {
			return c, fmt.Errorf("%s: %s=%s needs an admin_role to set the inactive login's password", FieldAdminRole, FieldStrategy, StrategyAlternating)
		}
	default:
		return c, fmt.Errorf("%s: %q is not one of %s, %s", FieldStrategy, strategy, StrategySingle, StrategyAlternating)
	}
	return c, nil
}

func validateUsername(field, u string) error {
	switch {
	case u == "":
		return fmt.Errorf("%s: required", field)
	case len(u) > maxIdentifierLen:
		return fmt.Errorf("%s: %q is longer than PostgreSQL's %d-byte limit", field, u, maxIdentifierLen)
	case strings.ContainsRune(u, 0):
		return fmt.Errorf("%s: contains a NUL byte", field)
	}
	return nil
}

// validatePassword refuses what PostgreSQL cannot hold: a password is a C string in the protocol,
// so a NUL byte could never log in (pgx refuses %00 in a URL's password before connecting).
func validatePassword(pw string) error {
	switch {
	case pw == "":
		return fmt.Errorf("%s: empty", FieldPassword)
	case strings.ContainsRune(pw, 0):
		return fmt.Errorf("%s: contains a NUL byte, which PostgreSQL cannot hold", FieldPassword)
	}
	return nil
}

func validateURLTemplate(tmpl string) error {
	if tmpl == "" {
		return fmt.Errorf("%s: required", FieldConnectionURL)
	}
	if !strings.Contains(tmpl, placeholderPass) {
		return fmt.Errorf("%s: must contain %s, where the plugin puts the password", FieldConnectionURL, placeholderPass)
	}
	// Rendered with sentinels, the placeholders must be the URL's user and password and nothing
	// else: a fixed user or password (or one in a query option) would make Verify prove a
	// credential other than the role's, and recovery would believe it.
	const sentinelUser, sentinelPass = "u0sentinel", "p0sentinel"
	rendered := renderURL(tmpl, sentinelUser, sentinelPass)
	u, err := url.Parse(rendered)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("%s: not a postgres://user:password@host:port/database URL", FieldConnectionURL)
	}
	pass, _ := u.User.Password()
	if u.User.Username() != sentinelUser || pass != sentinelPass || strings.Count(rendered, sentinelUser) != 1 || strings.Count(rendered, sentinelPass) != 1 {
		return fmt.Errorf("%s: the user and password must be exactly %s:%s, and appear nowhere else", FieldConnectionURL, placeholderUser, placeholderPass)
	}
	if _, err := parseConn(rendered); err != nil {
		return fmt.Errorf("%s: %w (accepted options: %s)", FieldConnectionURL, err, strings.Join(allowedOptions, ", "))
	}
	return nil
}

// renderURL fills the placeholders, escaped for the userinfo part of a URL.
func renderURL(tmpl, username, password string) string {
	return strings.NewReplacer(placeholderUser, escapeUserinfo(username), placeholderPass, escapeUserinfo(password)).Replace(tmpl)
}

// escapeUserinfo escapes every reserved byte; QueryEscape's "+" for a space would be read back
// as a literal plus in userinfo, so a space becomes %20.
func escapeUserinfo(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func (Kind) ImportSecret(s rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	pw, ok := supplied[FieldPassword]
	if !ok {
		return nil, nil
	}
	if err := validatePassword(pw); err != nil {
		return nil, err
	}
	if s.String(FieldStrategy) == StrategyAlternating {
		return nil, fmt.Errorf("%s: cannot import with %s=%s; the first rotation sets both logins through admin_role", FieldPassword, FieldStrategy, StrategyAlternating)
	}
	return rotators.Secret{PartUsername: s.String(FieldUsername), PartPassword: pw}, nil
}

func (Kind) NeedsImport(s rotators.Settings) string {
	if s.String(FieldAdminRole) == "" {
		return "password: required for a self-managed role (no admin_role): it is the login's current password, used to change it"
	}
	return ""
}

func (Kind) Describe(s rotators.Settings, secret rotators.Secret) map[string]interface{} {
	return map[string]interface{}{
		FieldConnectionURL: renderURL(s.String(FieldConnectionURL), secret[PartUsername], secret[PartPassword]),
	}
}

type target struct {
	cfg config
	lim limits
}

func (t *target) Generate(ctx context.Context, env rotators.Env, cur rotators.Secret) (rotators.Secret, error) {
	pw, err := env.Password(ctx)
	if err != nil {
		return nil, fmt.Errorf("generate password: %w", err)
	}
	if err := validatePassword(pw); err != nil {
		return nil, fmt.Errorf("generate password: the password policy made one PostgreSQL cannot take: %w", err)
	}
	user := t.cfg.usernames[0]
	if len(t.cfg.usernames) == 2 && cur[PartUsername] == t.cfg.usernames[0] {
		user = t.cfg.usernames[1]
	}
	return rotators.Secret{PartUsername: user, PartPassword: pw}, nil
}

// Apply runs ALTER ROLE on a pooled session of the admin (or of the login itself), bounded by
// the target's limits. Its error wraps rotators.ErrNotApplied only when PostgreSQL certainly
// kept the old password (docs/decisions.md, "PostgreSQL: not applied or unknown").
func (t *target) Apply(ctx context.Context, env rotators.Env, from, to rotators.Secret) error {
	verifier, err := scramVerifier(to[PartPassword])
	if err != nil {
		return rotators.NotApplied(err)
	}
	stmt := fmt.Sprintf("ALTER ROLE %s WITH PASSWORD %s", pgx.Identifier{to[PartUsername]}.Sanitize(), quoteLiteral(verifier))

	connURL, lim, err := t.authURL(env, from)
	if err != nil {
		return rotators.NotApplied(err)
	}
	return lim.alterRole(ctx, env.Resources, connURL, to[PartUsername], stmt, t.privilegeCheck(env, to[PartUsername]))
}

// privilegeCheck is what Apply asks on the admin's session before it changes user: whether the
// admin still grants it as PostgreSQL sees the login now (a login made privileged after the role
// was written, an admin that no longer allows privileged logins, a role stored before grants
// existed). None for a self-managed role, and none when restoring a value the login held.
func (t *target) privilegeCheck(env rotators.Env, user string) func(context.Context, *pgx.Conn) error {
	admin, ok := env.Linked[FieldAdminRole]
	if t.cfg.adminRole == "" || env.Restoring || !ok || admin.Settings.Bool(FieldAllowPrivileged) {
		return nil
	}
	return func(ctx context.Context, conn *pgx.Conn) error {
		return privilegeRefusal(ctx, conn, t.cfg.usernamesField(), user, admin)
	}
}

// SettleTime is how long after the client gave up an ALTER ROLE can still commit at the server:
// statement_timeout bounds the statement from its start, which is before the client gave up.
func (t *target) SettleTime() time.Duration { return t.lim.statement + settleMargin }

// Account is the login a value belongs to (two alternate with strategy=alternating).
func (t *target) Account(s rotators.Secret) string { return s[PartUsername] }

// authURL is the connection that performs a change, with its limits: the admin's, once it still
// grants this role's logins (a restore puts back a value granted before), or the login's own
// current one.
func (t *target) authURL(env rotators.Env, from rotators.Secret) (string, limits, error) {
	if t.cfg.adminRole != "" {
		admin, err := grantingAdmin(t.cfg, env)
		if err != nil {
			return "", t.lim, err
		}
		if !env.Restoring {
			if err := t.cfg.grantedBy(admin); err != nil {
				return "", t.lim, err
			}
		}
		lim := t.lim
		lim.auth = requireAuthOf(admin.Settings)
		return renderURL(admin.Settings.String(FieldConnectionURL), admin.Current[PartUsername], admin.Current[PartPassword]), lim, nil
	}
	if from == nil {
		return "", t.lim, errors.New("no current password to authenticate with (self-managed role)")
	}
	return renderURL(t.cfg.urlTemplate, from[PartUsername], from[PartPassword]), t.lim, nil
}

// Verify logs in on a fresh session, never a pooled one: that login is the point of the step.
// The session has the same bounds as the pooled ones.
func (t *target) Verify(ctx context.Context, _ rotators.Env, s rotators.Secret) error {
	cfg, err := parseConn(renderURL(t.cfg.urlTemplate, s[PartUsername], s[PartPassword]))
	if err != nil {
		return err
	}
	t.lim.bound(&cfg.Config)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.lim.connect)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	qctx, cancel := context.WithTimeout(ctx, t.lim.answer())
	defer cancel()
	var one int
	if err := conn.QueryRow(qctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&one); err != nil {
		return fmt.Errorf("verify query: %w", err)
	}
	return nil
}

// classify marks PostgreSQL's authentication failures as rotators.ErrRejected. Any other
// failure to open a session says no more than that, whatever the cause: a role writer may point
// a self-managed role anywhere, and "refused" against "timed out" against "not PostgreSQL" would
// make the plugin a port scanner of Vault's network (README "Security model"). The cause stays
// in the chain (errors.Is) for the engine's own decisions.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "28P01" || pgErr.Code == "28000" {
			return fmt.Errorf("%w: %s (SQLSTATE %s)", rotators.ErrRejected, pgErr.Message, pgErr.Code)
		}
		// The server answered as PostgreSQL: its own words (starting up, too many sessions).
		return fmt.Errorf("connect: %w", err)
	}
	if strings.Contains(err.Error(), "require_auth") {
		return connectError{cause: err, text: "connect: the server asked for an authentication method that require_auth does not allow; no password was sent"}
	}
	return connectError{cause: err, text: "connect: no PostgreSQL session could be opened (refused, timed out, TLS failed, or not a PostgreSQL server)"}
}

// connectError is a failure to open a session: its text is a class, its chain the cause.
type connectError struct {
	cause error
	text  string
}

func (c connectError) Error() string { return c.text }
func (c connectError) Unwrap() error { return c.cause }

// quoteLiteral quotes a string constant for a utility statement, where bind parameters are not
// allowed. The verifier's alphabet is base64 plus "$:", so this is belt and braces.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
