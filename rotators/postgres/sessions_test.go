package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// pgFixture is one real PostgreSQL server with an admin login (CREATEROLE) that the subtests'
// targets share, as roles of one mount share their admin_role.
type pgFixture struct {
	pg       *testenv.Postgres
	adminPW  string
	adminURL string // rendered: the key of the admin's pool
}

const fixtureAdmin = "oa_admin"

// TestAgainstPostgres runs the session tests on one server (starting one takes seconds).
func TestAgainstPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	f := &pgFixture{pg: pg, adminPW: "admin pw/with:odd@chars"}
	f.adminURL = renderURL(pg.URLTemplate(), fixtureAdmin, f.adminPW)
	f.createLogin(t, fixtureAdmin, f.adminPW, "CREATEROLE")

	t.Run("a lock held by another session's open ALTER ROLE is not applied, and says so", f.testLockTimeout)
	t.Run("a stuck ALTER ROLE does not block other roles of the same admin", f.testStuckDoesNotBlock)
	t.Run("waiting for a session of a full pool honours the context and is not applied", f.testFullPool)
	t.Run("statement_timeout is not applied", f.testStatementTimeout)
	t.Run("the admin's session terminated while waiting is unknown", f.testTerminated)
	t.Run("the client giving up is unknown, and the server may still commit", f.testClientGivesUp)
	t.Run("failures before the statement is sent are not applied", f.testBeforeSent)
	t.Run("every session carries the bounds", f.testSessionBounds)
	t.Run("pools belong to the engine's Resources", f.testPoolLifecycle)
	t.Run("a pooled session lost to a server restart is replaced", f.testServerRestart)
	t.Run("an admin grants no privileged login unless it says so", f.testGrants)
	t.Run("the first list of sessions on a cold engine shows them", f.testSessionsColdPool)
}

func (f *pgFixture) createLogin(t *testing.T, user, password, extra string) {
	t.Helper()
	f.pg.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD %s", pgx.Identifier{user}.Sanitize(), extra, quoteLiteral(password)))
}

// managed binds a single-strategy role of user through the fixture's admin, with limits lim,
// and the environment the engine would lend it.
func (f *pgFixture) managed(t *testing.T, user string, lim limits, res *rotators.Resources) (*target, rotators.Env) {
	t.Helper()
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{
		FieldConnectionURL: f.pg.URLTemplate(), FieldUsername: user, FieldAdminRole: "pg-admin",
	}))
	if err != nil {
		t.Fatal(err)
	}
	pt := tg.(*target)
	pt.lim = lim
	env := rotators.Env{Resources: res, Linked: map[string]rotators.Linked{FieldAdminRole: {
		Name:     "pg-admin",
		Settings: adminSettings(f.pg.URLTemplate()),
		Current:  rotators.Secret{PartUsername: fixtureAdmin, PartPassword: f.adminPW},
	}}}
	return pt, env
}

// adminSettings are the fixture admin's settings at connURL, granting every login.
func adminSettings(connURL string) rotators.Settings {
	return settings(map[string]interface{}{FieldConnectionURL: connURL, FieldUsername: fixtureAdmin, FieldAllowedUsernames: []string{"*"}})
}

// blocker is another session inside `BEGIN; ALTER ROLE user ...`: it holds the login's row lock
// until rollback. Defer rollback before anything that waits for the sessions it blocks (closing
// their pool waits for a session in use).
func (f *pgFixture) blocker(t *testing.T, users ...string) (rollback func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	sqls := []string{"BEGIN"}
	for _, user := range users {
		sqls = append(sqls, fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT 7", pgx.Identifier{user}.Sanitize()))
	}
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	done := false
	rollback = func() {
		if done {
			return
		}
		done = true
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			t.Errorf("blocker rollback: %v", err)
		}
		_ = conn.Close(ctx)
	}
	return rollback
}

// query runs one query as the superuser and returns its first column of every row as text.
func (f *pgFixture) query(t *testing.T, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitingAlter waits until PostgreSQL shows an ALTER ROLE of the admin waiting for a lock, and
// returns its backend pid.
func (f *pgFixture) waitingAlter(t *testing.T) string {
	t.Helper()
	return f.waitingAlters(t, 1)[0]
}

// waitingAlters waits until PostgreSQL shows n ALTER ROLE statements of the admin waiting for a
// lock, and returns their backend pids.
func (f *pgFixture) waitingAlters(t *testing.T, n int) []string {
	t.Helper()
	var pids []string
	waitFor(t, fmt.Sprintf("%d ALTER ROLE statements of the admin waiting for a lock", n), func() bool {
		pids = f.query(t, `SELECT pid::text FROM pg_stat_activity
			WHERE usename = $1 AND wait_event_type = 'Lock' AND query LIKE '%ALTER ROLE%'`, fixtureAdmin)
		return len(pids) >= n
	})
	if len(pids) != n {
		t.Fatalf("%d ALTER ROLE statements wait for a lock, want %d", len(pids), n)
	}
	return pids
}

// adminSessions is the number of sessions the admin has open.
func (f *pgFixture) adminSessions(t *testing.T) int {
	t.Helper()
	return len(f.query(t, `SELECT pid::text FROM pg_stat_activity WHERE usename = $1`, fixtureAdmin))
}

// waitFor polls cond; it fails the test only when cond never holds (a bug), never on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: never happened", what)
}

// assertClean fails when an error text carries a password or a connection URL.
func (f *pgFixture) assertClean(t *testing.T, err error, passwords ...string) {
	t.Helper()
	msg := err.Error()
	for _, pw := range append(passwords, f.adminPW, url.QueryEscape(f.adminPW), f.pg.Password) {
		if strings.Contains(msg, pw) {
			t.Fatalf("error text carries a password: %s", msg)
		}
	}
	if strings.Contains(msg, "postgres://") || strings.Contains(msg, "postgresql://") {
		t.Fatalf("error text carries a connection URL: %s", msg)
	}
}

func (f *pgFixture) assertLogin(t *testing.T, user, password string, want bool) {
	t.Helper()
	err := f.pg.CanLogin(user, password)
	if want && err != nil {
		t.Fatalf("%s does not log in with the password it should have: %v", user, err)
	}
	if !want && err == nil {
		t.Fatalf("%s still logs in with a password that should be dead", user)
	}
}

func secret(user, pw string) rotators.Secret {
	return rotators.Secret{PartUsername: user, PartPassword: pw}
}

func (f *pgFixture) testLockTimeout(t *testing.T) {
	ctx := context.Background()
	f.createLogin(t, "locked_app", "locked-old", "")
	res := rotators.NewResources()
	defer res.Close()
	tg, env := f.managed(t, "locked_app", defaultLimits, res)
	rollback := f.blocker(t, "locked_app")
	defer rollback()

	err := tg.Apply(ctx, env, secret("locked_app", "locked-old"), secret("locked_app", "locked-new"))
	if err == nil {
		t.Fatal("ALTER ROLE of a locked login succeeded")
	}
	if !errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("lock timeout = %v, want ErrNotApplied: the server refused the statement", err)
	}
	if !strings.Contains(err.Error(), "timed out waiting for a lock held by another session") || !strings.Contains(err.Error(), "55P03") {
		t.Fatalf("lock timeout error %q does not say what happened", err)
	}
	f.assertClean(t, err, "locked-old", "locked-new")
	f.assertLogin(t, "locked_app", "locked-old", true)

	rollback()
	if err := tg.Apply(ctx, env, secret("locked_app", "locked-old"), secret("locked_app", "locked-new")); err != nil {
		t.Fatalf("Apply once the lock is free: %v", err)
	}
	f.assertLogin(t, "locked_app", "locked-new", true)
}

// testStuckDoesNotBlock keeps one ALTER ROLE waiting (a lock_timeout longer than the test) while
// other roles of the same admin rotate: they finish while it is still observed waiting.
func (f *pgFixture) testStuckDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	defer res.Close()
	long := limits{connect: defaultConnectTimeout, lock: 10 * time.Minute, statement: 10 * time.Minute}
	f.createLogin(t, "stuck_app", "stuck-old", "")
	stuck, env := f.managed(t, "stuck_app", long, res)
	rollback := f.blocker(t, "stuck_app")
	defer rollback()

	stuckDone := make(chan error, 1)
	go func() {
		stuckDone <- stuck.Apply(context.Background(), env, secret("stuck_app", "stuck-old"), secret("stuck_app", "stuck-new"))
	}()
	pid := f.waitingAlter(t)

	// More other roles than the pool has sessions, one after another and then at once. (The
	// minute bounds only a failure: waiting for the stuck session would never end.)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var others []string
	for i := range poolMaxConns + 2 {
		user := fmt.Sprintf("free_app_%d", i)
		f.createLogin(t, user, "free-old", "")
		others = append(others, user)
		tg, env := f.managed(t, user, long, res)
		if err := tg.Apply(ctx, env, secret(user, "free-old"), secret(user, "free-1")); err != nil {
			t.Fatalf("%s through the same admin while another role is stuck: %v", user, err)
		}
	}
	errs := make(chan error, len(others))
	for _, user := range others {
		go func() {
			tg, env := f.managed(t, user, long, res)
			errs <- tg.Apply(ctx, env, secret(user, "free-1"), secret(user, "free-2"))
		}()
	}
	for range others {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent rotation through the same admin while another role is stuck: %v", err)
		}
	}
	for _, user := range others {
		f.assertLogin(t, user, "free-2", true)
	}
	// The stuck statement is still waiting on the same backend: the others did not wait for it.
	if got := f.waitingAlter(t); got != pid {
		t.Fatalf("the waiting ALTER ROLE moved from backend %s to %s", pid, got)
	}
	select {
	case err := <-stuckDone:
		t.Fatalf("the stuck Apply returned (%v) while its lock is still held", err)
	default:
	}

	rollback()
	if err := <-stuckDone; err != nil {
		t.Fatalf("the stuck Apply, once the lock is free: %v", err)
	}
	f.assertLogin(t, "stuck_app", "stuck-new", true)
}

// testFullPool keeps every session of the admin's pool stuck, so that a rotation of a free
// role waits for a session: its caller's context ends the wait, and nothing was sent.
func (f *pgFixture) testFullPool(t *testing.T) {
	res := rotators.NewResources()
	defer res.Close()
	long := limits{connect: defaultConnectTimeout, lock: 10 * time.Minute, statement: 10 * time.Minute}
	var stuckUsers []string
	for i := range poolMaxConns {
		user := fmt.Sprintf("full_stuck_%d", i)
		f.createLogin(t, user, "full-old", "")
		stuckUsers = append(stuckUsers, user)
	}
	f.createLogin(t, "full_free", "full-free-old", "")
	rollback := f.blocker(t, stuckUsers...)
	defer rollback()

	stuckDone := make(chan error, len(stuckUsers))
	for _, user := range stuckUsers {
		tg, env := f.managed(t, user, long, res)
		go func() {
			stuckDone <- tg.Apply(context.Background(), env, secret(user, "full-old"), secret(user, "full-new"))
		}()
	}
	f.waitingAlters(t, poolMaxConns)

	free, env := f.managed(t, "full_free", long, res)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := free.Apply(ctx, env, secret("full_free", "full-free-old"), secret("full_free", "full-free-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "waiting for a session") {
		t.Fatalf("Apply that waited for a session of a full pool until its context ended = %v, want ErrNotApplied", err)
	}
	f.assertClean(t, err, "full-free-old", "full-free-new")
	f.assertLogin(t, "full_free", "full-free-old", true)
	f.waitingAlters(t, poolMaxConns) // the pool opened no fifth session

	rollback()
	for range stuckUsers {
		if err := <-stuckDone; err != nil {
			t.Fatalf("a stuck Apply, once the lock is free: %v", err)
		}
	}
	if err := free.Apply(context.Background(), env, secret("full_free", "full-free-old"), secret("full_free", "full-free-new")); err != nil {
		t.Fatalf("Apply once sessions are free: %v", err)
	}
	f.assertLogin(t, "full_free", "full-free-new", true)
}

func (f *pgFixture) testStatementTimeout(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	defer res.Close()
	f.createLogin(t, "slow_app", "slow-old", "")
	// No lock_timeout to speak of: the statement_timeout ends the wait.
	tg, env := f.managed(t, "slow_app", limits{connect: defaultConnectTimeout, lock: 10 * time.Minute, statement: 300 * time.Millisecond}, res)
	defer f.blocker(t, "slow_app")()

	err := tg.Apply(ctx, env, secret("slow_app", "slow-old"), secret("slow_app", "slow-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "statement_timeout") || !strings.Contains(err.Error(), "57014") {
		t.Fatalf("statement timeout = %v, want ErrNotApplied naming statement_timeout", err)
	}
	f.assertClean(t, err, "slow-old", "slow-new")
	f.assertLogin(t, "slow_app", "slow-old", true)
}

func (f *pgFixture) testTerminated(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	defer res.Close()
	long := limits{connect: defaultConnectTimeout, lock: 10 * time.Minute, statement: 10 * time.Minute}
	f.createLogin(t, "term_app", "term-old", "")
	tg, env := f.managed(t, "term_app", long, res)
	rollback := f.blocker(t, "term_app")
	defer rollback()

	done := make(chan error, 1)
	go func() { done <- tg.Apply(ctx, env, secret("term_app", "term-old"), secret("term_app", "term-new")) }()
	pid := f.waitingAlter(t)
	if got := f.query(t, "SELECT pg_terminate_backend($1::int)::text", pid); len(got) != 1 || got[0] != "true" {
		t.Fatalf("pg_terminate_backend(%s) = %v", pid, got)
	}
	err := <-done
	if err == nil {
		t.Fatal("Apply on a terminated session succeeded")
	}
	if errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("terminated session = %v: a FATAL that ends the session proves nothing, the outcome is unknown", err)
	}
	if !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("error %q does not say the outcome is unknown", err)
	}
	f.assertClean(t, err, "term-old", "term-new")

	// The pool drops the dead session: the next rotation through the admin works.
	rollback()
	if err := tg.Apply(ctx, env, secret("term_app", "term-old"), secret("term_app", "term-new")); err != nil {
		t.Fatalf("Apply after the admin's session was terminated: %v", err)
	}
	f.assertLogin(t, "term_app", "term-new", true)
}

// testClientGivesUp cancels the caller's context while ALTER ROLE waits for its lock, on a
// session whose server the client can no longer reach with a new connection: pgx's cancel
// request (best effort) is refused. The server never hears of it and commits the change once
// the lock frees; calling that "not applied" would lose the live password. That is the window
// SettleTime covers.
func (f *pgFixture) testClientGivesUp(t *testing.T) {
	res := rotators.NewResources()
	defer res.Close()
	long := limits{connect: defaultConnectTimeout, lock: 10 * time.Minute, statement: 10 * time.Minute}
	f.createLogin(t, "gaveup_app", "gaveup-old", "")
	tg, env := f.managed(t, "gaveup_app", long, res)
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", f.pg.Port))
	viaProxy := strings.Replace(f.pg.URLTemplate(), fmt.Sprintf("127.0.0.1:%d", f.pg.Port), proxy.addr(), 1)
	env.Linked = map[string]rotators.Linked{FieldAdminRole: {
		Name:     "pg-admin",
		Settings: adminSettings(viaProxy),
		Current:  secret(fixtureAdmin, f.adminPW),
	}}
	tg.cfg.urlTemplate = viaProxy // a dependent names its admin's server
	rollback := f.blocker(t, "gaveup_app")
	defer rollback()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tg.Apply(ctx, env, secret("gaveup_app", "gaveup-old"), secret("gaveup_app", "gaveup-new"))
	}()
	pid := f.waitingAlter(t)
	proxy.refuseNew()
	cancel()
	err := <-done
	if err == nil || errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("Apply whose caller gave up while the statement ran = %v, want an unknown outcome", err)
	}
	if !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("error %q does not say the outcome is unknown", err)
	}
	f.assertClean(t, err, "gaveup-old", "gaveup-new")
	if got := f.waitingAlter(t); got != pid {
		t.Fatalf("the waiting ALTER ROLE moved from backend %s to %s", pid, got)
	}
	f.assertLogin(t, "gaveup_app", "gaveup-old", true)

	rollback()
	waitFor(t, "the abandoned ALTER ROLE commits once the lock frees", func() bool {
		return f.pg.CanLogin("gaveup_app", "gaveup-new") == nil
	})
	f.assertLogin(t, "gaveup_app", "gaveup-old", false)
}

func (f *pgFixture) testBeforeSent(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	defer res.Close()
	f.createLogin(t, "pre_app", "pre-old", "")
	tg, env := f.managed(t, "pre_app", defaultLimits, res)

	// A wrong admin password: the connect is refused.
	wrong := env
	wrong.Linked = map[string]rotators.Linked{FieldAdminRole: {
		Name: "pg-admin", Settings: env.Linked[FieldAdminRole].Settings,
		Current: secret(fixtureAdmin, "not the admin's password"),
	}}
	err := tg.Apply(ctx, wrong, secret("pre_app", "pre-old"), secret("pre_app", "pre-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("wrong admin password = %v, want ErrNotApplied naming the authentication failure", err)
	}
	f.assertClean(t, err, "pre-old", "pre-new", "not the admin's password", url.QueryEscape("not the admin's password"))

	// Nothing listens: the connect fails.
	down := env
	down.Linked = map[string]rotators.Linked{FieldAdminRole: {
		Name:     "pg-admin",
		Settings: adminSettings("postgres://{{username}}:{{password}}@127.0.0.1:1/postgres?sslmode=disable"),
		Current:  secret(fixtureAdmin, f.adminPW),
	}}
	downTarget := *tg
	downTarget.cfg.urlTemplate = "postgres://{{username}}:{{password}}@127.0.0.1:1/postgres?sslmode=disable"
	err = downTarget.Apply(ctx, down, secret("pre_app", "pre-old"), secret("pre_app", "pre-new"))
	if !errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("unreachable admin = %v, want ErrNotApplied", err)
	}
	f.assertClean(t, err, "pre-old", "pre-new")

	// The caller gave up before anything was sent.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err = tg.Apply(cancelled, env, secret("pre_app", "pre-old"), secret("pre_app", "pre-new"))
	if !errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("Apply with a cancelled context = %v, want ErrNotApplied", err)
	}

	// The server refuses the statement: a role the admin may not alter.
	f.createLogin(t, "pre_super", "pre-super-old", "SUPERUSER")
	sup, senv := f.managed(t, "pre_super", defaultLimits, res)
	// Without allow_privileged the admin's session refuses it first, before any ALTER ROLE
	// (a login made superuser after its role was written).
	err = sup.Apply(ctx, senv, secret("pre_super", "pre-super-old"), secret("pre_super", "pre-super-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), `username: login "pre_super" is privileged (SUPERUSER)`) {
		t.Fatalf("a privileged login without allow_privileged = %v, want refused before the change", err)
	}
	// A restore is not checked again: the value was granted when it was set.
	restoring := senv
	restoring.Restoring = true
	err = sup.Apply(ctx, restoring, secret("pre_super", "pre-super-old"), secret("pre_super", "pre-super-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("a restore is checked for privileges: %v, want the server's own refusal", err)
	}
	admin := senv.Linked[FieldAdminRole]
	admin.Settings.Set(rotators.Field{Name: FieldAllowPrivileged, Kind: rotators.FieldBool}, true)
	senv.Linked = map[string]rotators.Linked{FieldAdminRole: admin}
	err = sup.Apply(ctx, senv, secret("pre_super", "pre-super-old"), secret("pre_super", "pre-super-new"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("insufficient privilege = %v, want ErrNotApplied with SQLSTATE 42501", err)
	}
	f.assertClean(t, err, "pre-super-old", "pre-super-new")

	// No engine resources: nothing to run the statement on.
	if err := tg.Apply(ctx, rotators.Env{Linked: env.Linked}, nil, secret("pre_app", "pre-new")); !errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("Apply without Resources = %v", err)
	}
	f.assertLogin(t, "pre_app", "pre-old", true)
	f.assertLogin(t, "pre_super", "pre-super-old", true)
}

// testSessionBounds shows the limits on real sessions, over what the URL, the role and the
// database ask for.
func (f *pgFixture) testSessionBounds(t *testing.T) {
	ctx := context.Background()
	f.createLogin(t, "bounds_user", "bounds-pw", "")
	f.pg.Exec(t, `ALTER ROLE bounds_user SET statement_timeout = 0`)
	f.pg.Exec(t, `ALTER DATABASE postgres SET lock_timeout = 0`)
	defer f.pg.Exec(t, `ALTER DATABASE postgres RESET lock_timeout`)

	show := func(cfg *pgx.ConnConfig) (statement, lock string) {
		t.Helper()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')").Scan(&statement, &lock); err != nil {
			t.Fatal(err)
		}
		return statement, lock
	}
	tmpl := f.pg.URLTemplate() + "&connect_timeout=3600&statement_timeout=0&options=-c%20lock_timeout%3D0"
	cfg, err := pgx.ParseConfig(renderURL(tmpl, "bounds_user", "bounds-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defaultLimits.bound(&cfg.Config)
	if s, l := show(cfg); s != "15s" || l != "5s" {
		t.Fatalf("bounded session: statement_timeout %s, lock_timeout %s; want 15s, 5s", s, l)
	}
	if cfg.ConnectTimeout != defaultConnectTimeout {
		t.Fatalf("connect timeout %s: a URL may not lengthen it", cfg.ConnectTimeout)
	}
	short, _ := pgx.ParseConfig(renderURL(f.pg.URLTemplate()+"&connect_timeout=2", "bounds_user", "bounds-pw"))
	defaultLimits.bound(&short.Config)
	if short.ConnectTimeout != 2*time.Second {
		t.Fatalf("connect timeout %s: a URL may shorten it", short.ConnectTimeout)
	}

	// The pooled session that ran an ALTER ROLE carries them too.
	res := rotators.NewResources()
	defer res.Close()
	f.createLogin(t, "bounds_app", "bounds-app-old", "")
	tg, env := f.managed(t, "bounds_app", defaultLimits, res)
	if err := tg.Apply(ctx, env, nil, secret("bounds_app", "bounds-app-new")); err != nil {
		t.Fatal(err)
	}
	c, release, err := res.Use(poolKey(f.adminURL, defaultLimits), func() (io.Closer, error) {
		return nil, errors.New("the rotation left no pool under the admin's key")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	conn, err := c.(sessionPool).pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var statement, lock string
	if err := conn.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')").Scan(&statement, &lock); err != nil {
		t.Fatal(err)
	}
	if statement != "15s" || lock != "5s" {
		t.Fatalf("pooled session: statement_timeout %s, lock_timeout %s; want 15s, 5s", statement, lock)
	}
}

func (f *pgFixture) testPoolLifecycle(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	for _, u := range []string{"life_a", "life_b"} {
		f.createLogin(t, u, u+"-old", "")
	}
	a, env := f.managed(t, "life_a", defaultLimits, res)
	b, _ := f.managed(t, "life_b", defaultLimits, res)
	for i := range 3 {
		if err := a.Apply(ctx, env, nil, secret("life_a", fmt.Sprintf("life-a-%d", i))); err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(ctx, env, nil, secret("life_b", fmt.Sprintf("life-b-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if res.Len() != 1 {
		t.Fatalf("%d pools for one admin credential, want 1", res.Len())
	}
	if n := f.adminSessions(t); n != 1 {
		t.Fatalf("the admin has %d sessions after six sequential rotations, want 1 reused session", n)
	}

	// A self-managed role has its own pool, keyed by its own credential.
	f.createLogin(t, "life_self", "life-self-0", "")
	self, err := (Kind{}).Bind(settings(map[string]interface{}{FieldConnectionURL: f.pg.URLTemplate(), FieldUsername: "life_self"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := self.Apply(ctx, rotators.Env{Resources: res}, secret("life_self", "life-self-0"), secret("life_self", "life-self-1")); err != nil {
		t.Fatal(err)
	}
	if res.Len() != 2 {
		t.Fatalf("%d pools, want 2 (the admin's, the self-managed login's)", res.Len())
	}

	// CloseIdle spares pools used within the idle time, and closes the others with their sessions.
	res.CloseIdle(time.Hour)
	if res.Len() != 2 || f.adminSessions(t) != 1 {
		t.Fatal("CloseIdle closed a pool used within the idle time")
	}
	time.Sleep(20 * time.Millisecond)
	res.CloseIdle(10 * time.Millisecond)
	if res.Len() != 0 {
		t.Fatalf("%d pools left after CloseIdle", res.Len())
	}
	waitFor(t, "the idle pool's sessions end at the server", func() bool { return f.adminSessions(t) == 0 })

	// Close closes the pools in use now, and Apply fails afterwards without touching PostgreSQL.
	if err := a.Apply(ctx, env, nil, secret("life_a", "life-a-3")); err != nil {
		t.Fatal(err)
	}
	if f.adminSessions(t) != 1 {
		t.Fatal("a rotation after CloseIdle did not open a session")
	}
	res.Close()
	if res.Len() != 0 {
		t.Fatal("Close left pools")
	}
	waitFor(t, "the closed pool's sessions end at the server", func() bool { return f.adminSessions(t) == 0 })
	err = a.Apply(ctx, env, nil, secret("life_a", "life-a-4"))
	if !errors.Is(err, rotators.ErrClosed) || !errors.Is(err, rotators.ErrNotApplied) {
		t.Fatalf("Apply after Close = %v, want ErrClosed and ErrNotApplied", err)
	}
	if f.adminSessions(t) != 0 {
		t.Fatal("Apply after Close opened a session")
	}
	f.assertLogin(t, "life_a", "life-a-3", true)
}

// testServerRestart restarts PostgreSQL under a pool that holds an idle session: the pool pings
// a session before handing it out, so the rotation gets a new session instead of sending its
// statement into a dead one (an unknown outcome).
func (f *pgFixture) testServerRestart(t *testing.T) {
	ctx := context.Background()
	res := rotators.NewResources()
	defer res.Close()
	f.createLogin(t, "restart_app", "restart-0", "")
	tg, env := f.managed(t, "restart_app", defaultLimits, res)
	if err := tg.Apply(ctx, env, nil, secret("restart_app", "restart-1")); err != nil {
		t.Fatal(err)
	}
	f.pg.Stop(t)
	f.pg.Start(t)
	if err := tg.Apply(ctx, env, nil, secret("restart_app", "restart-2")); err != nil {
		t.Fatalf("Apply after a server restart: %v", err)
	}
	f.assertLogin(t, "restart_app", "restart-2", true)
}
