package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Bounds of every PostgreSQL session the rotator opens, pooled or fresh (docs/decisions.md,
// "Bounded PostgreSQL sessions").
const (
	// defaultConnectTimeout bounds one connect (TCP, TLS, authentication). A connection_url's
	// own connect_timeout may shorten it, never lengthen it.
	defaultConnectTimeout = 10 * time.Second
	// defaultLockTimeout is the session's lock_timeout: how long ALTER ROLE may wait for a lock
	// that another session holds on the login before the server refuses the statement.
	defaultLockTimeout = 5 * time.Second
	// defaultStatementTimeout is the session's statement_timeout: the server cancels a statement
	// that runs longer, lock waits included.
	defaultStatementTimeout = 15 * time.Second
	// answerGrace is how long past statement_timeout the client still waits for the server's
	// answer, so that the server's own timeout error (a certain "not applied") arrives first.
	answerGrace = 5 * time.Second
	// settleMargin is added to statement_timeout in SettleTime, for the commit and the network.
	settleMargin = 5 * time.Second
	// poolMaxConns is the most sessions open at once per admin (or self-managed) credential.
	poolMaxConns = 4
	// poolIdleTime closes a pooled session unused for that long.
	poolIdleTime = 2 * time.Minute
)

// limits are the bounds a target puts on its sessions: the defaults above, shorter in tests;
// and the authentication methods its sessions accept (auth, libpq's require_auth; "" is
// AuthSCRAM).
type limits struct {
	connect, lock, statement time.Duration
	auth                     string
}

var defaultLimits = limits{connect: defaultConnectTimeout, lock: defaultLockTimeout, statement: defaultStatementTimeout, auth: AuthSCRAM}

// bound puts the limits on a parsed connection config.
func (l limits) bound(cfg *pgconn.Config) {
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > l.connect {
		cfg.ConnectTimeout = l.connect
	}
	// Sent in the startup packet: they apply before the first statement and take precedence
	// over the role's and the database's settings and over the URL's options.
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(l.statement.Milliseconds(), 10)
	cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(l.lock.Milliseconds(), 10)
	// pgx answers a server's request for a cleartext or MD5 password, or lets a login in with
	// none (trust), unless require_auth says otherwise: with SCRAM only, a server that does not
	// already hold the password's verifier learns nothing about it (README "Security model").
	cfg.RequireAuth = l.auth
	if cfg.RequireAuth == "" {
		cfg.RequireAuth = AuthSCRAM
	}
}

// local sets the bounds again inside the statement's own implicit transaction: a connection
// pooler may drop startup parameters (pgbouncer's ignore_startup_parameters), and the settle
// time rests on them.
func (l limits) local() string {
	return fmt.Sprintf("SET LOCAL statement_timeout = %d; SET LOCAL lock_timeout = %d; ", l.statement.Milliseconds(), l.lock.Milliseconds())
}

// answer bounds the client's wait for one statement's answer.
func (l limits) answer() time.Duration { return l.statement + answerGrace }

// acquire bounds the wait for a pooled session: long enough for a busy one to finish or time
// out and for a new one to connect.
func (l limits) acquire() time.Duration { return l.answer() + l.connect }

// poolKeySecret keys the hash that names a pool, so that the key of a pool (which is derived
// from a URL holding a password) is worthless outside this process.
var poolKeySecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}()

// poolKey names the pool of one rendered URL under given limits. The URL itself, which holds a
// password, is never kept as a key nor written anywhere.
func poolKey(connURL string, l limits) string {
	m := hmac.New(sha256.New, poolKeySecret)
	fmt.Fprintf(m, "%d\x00%d\x00%d\x00%s\x00%s", l.connect, l.lock, l.statement, l.auth, connURL)
	return "postgres/" + hex.EncodeToString(m.Sum(nil))
}

// sessionPool is a pgxpool as a rotators.Resources entry. own holds the backend pids of its
// sessions, so that a list of a login's sessions can leave out the engine's own (a self-managed
// role's pool is a session of that login).
type sessionPool struct {
	pool *pgxpool.Pool
	own  *pidSet
}

// pidSet is the backend pids of one pool's open sessions, by server (host:port).
type pidSet struct {
	mu     sync.Mutex
	server string
	pids   map[uint32]bool
}

func (p *pidSet) add(pid uint32) {
	p.mu.Lock()
	p.pids[pid] = true
	p.mu.Unlock()
}

func (p *pidSet) remove(pid uint32) {
	p.mu.Lock()
	delete(p.pids, pid)
	p.mu.Unlock()
}

// ownPIDs is every backend pid of the engine's pooled sessions at server.
func ownPIDs(res *rotators.Resources, server string) []int64 {
	out := []int64{} // never nil: pgx sends a nil slice as NULL, and NOT (pid = ANY(NULL)) hides every row
	if res == nil {
		return out
	}
	res.Each(func(_ string, c io.Closer) {
		sp, ok := c.(sessionPool)
		if !ok || sp.own == nil {
			return
		}
		sp.own.mu.Lock()
		if sp.own.server == server {
			for pid := range sp.own.pids {
				out = append(out, int64(pid))
			}
		}
		sp.own.mu.Unlock()
	})
	return out
}

// Close closes the pool. It waits for sessions in use, which their statement bounds release.
func (p sessionPool) Close() error {
	p.pool.Close()
	return nil
}

var errParse = errors.New("connection_url does not parse with this credential")

// allowedKeys are the connection_url parts the plugin accepts. Every other libpq option is
// refused before pgx acts on it: several name files that pgx would read on the plugin's host
// (sslrootcert, sslcert, sslkey, passfile, servicefile), or redirect the connection (service).
var allowedKeys = append([]string{"host", "port", "dbname", "user", "password"}, allowedOptions...)

// allowedOptions are the query options of connection_url the plugin accepts.
var allowedOptions = []string{"sslmode", "connect_timeout", "application_name", "target_session_attrs"}

// errMultiHost refuses libpq's multi-host URLs: one server per role.
var errMultiHost = errors.New("connection_url names more than one host; one server per role")

// errOptions names what connection_url may hold; its text holds no part of the URL.
var errOptions = errors.New("connection_url holds an option the plugin does not accept, or a host that is not host[:port]")

// parseConn parses a rendered connection URL. Besides pgx's own allow-list of keys (which also
// admits host, port, user and password as query options, overriding the URL's), the query may
// hold only allowedOptions, and the host must be a network host, never a Unix socket path.
func parseConn(connURL string) (*pgx.ConnConfig, error) {
	u, err := url.Parse(connURL)
	if err != nil || u.Host == "" || strings.HasPrefix(u.Hostname(), "/") || strings.Contains(u.Host, "%") {
		return nil, errParse
	}
	if strings.Contains(u.Host, ",") {
		// Fallback hosts would receive the password when the first one is down, unproven.
		return nil, errMultiHost
	}
	for k := range u.Query() {
		if !slices.Contains(allowedOptions, k) {
			return nil, errOptions
		}
	}
	cfg, err := pgx.ParseConfigWithOptions(connURL, pgx.ParseConfigOptions{
		ParseConfigOptions: pgconn.ParseConfigOptions{ConnStringAllowedKeys: allowedKeys}})
	if err != nil {
		return nil, errParse // pgx's parse error may quote the URL
	}
	return cfg, nil
}

// openPool returns the opener of a pool for connURL. Opening connects nothing: sessions are made
// by Acquire.
func (l limits) openPool(connURL string) func() (io.Closer, error) {
	return func() (io.Closer, error) {
		if _, err := parseConn(connURL); err != nil {
			return nil, err
		}
		cfg, err := pgxpool.ParseConfig(connURL)
		if err != nil {
			return nil, errParse // pgx's parse error may quote the URL
		}
		l.bound(&cfg.ConnConfig.Config)
		own := &pidSet{server: server{host: strings.ToLower(cfg.ConnConfig.Host), port: cfg.ConnConfig.Port}.hostPort(), pids: map[uint32]bool{}}
		cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
			own.add(c.PgConn().PID())
			return nil
		}
		cfg.BeforeClose = func(c *pgx.Conn) { own.remove(c.PgConn().PID()) }
		cfg.MaxConns = poolMaxConns
		cfg.MinConns, cfg.MinIdleConns = 0, 0
		cfg.MaxConnIdleTime = poolIdleTime
		// Ping every session before handing it out, not only those idle for over a second
		// (pgxpool's default): a statement sent into a session the server has just ended
		// (a restart) has an unknown outcome, and a ping is cheap next to a rotation.
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			return nil, fmt.Errorf("session pool: %w", err)
		}
		return sessionPool{pool: p, own: own}, nil
	}
}

// alterRole runs stmt, an ALTER ROLE of user, on a pooled session of connURL. Its error is
// rotators.NotApplied only when PostgreSQL certainly did not change (docs/decisions.md,
// "PostgreSQL: not applied or unknown").
//
// precheck, when not nil, runs first on the same session; its error means nothing was changed.
func (l limits) alterRole(ctx context.Context, res *rotators.Resources, connURL, user, stmt string, precheck func(context.Context, *pgx.Conn) error) error {
	sent := false
	err := l.withSession(ctx, res, connURL, func(sctx context.Context, conn *pgx.Conn) error {
		if precheck != nil {
			if err := precheck(sctx, conn); err != nil {
				return err
			}
		}
		if err := sctx.Err(); err != nil {
			return fmt.Errorf("ALTER ROLE %s was not sent: %w", pgx.Identifier{user}.Sanitize(), err)
		}
		sent = true
		_, err := conn.Exec(sctx, l.local()+stmt, pgx.QueryExecModeSimpleProtocol)
		return err
	})
	if !sent {
		return rotators.NotApplied(err)
	}
	return l.alterError(user, err)
}

// withSession runs fn on a pooled session of connURL, its context bounded by the answer time.
// An error before fn ran means nothing was sent.
func (l limits) withSession(ctx context.Context, res *rotators.Resources, connURL string, fn func(context.Context, *pgx.Conn) error) error {
	if res == nil {
		return errors.New("no session pool: the engine lent no resources")
	}
	c, release, err := res.Use(poolKey(connURL, l), l.openPool(connURL))
	if err != nil {
		return err
	}
	defer release()
	pool := c.(sessionPool).pool

	actx, cancel := context.WithTimeout(ctx, l.acquire())
	conn, err := pool.Acquire(actx)
	if err != nil {
		// Nothing was sent: connecting, or waiting for a free session, failed.
		var connErr *pgconn.ConnectError
		switch {
		case errors.As(err, &connErr):
			err = classify(err)
		case ctx.Err() == nil && actx.Err() != nil:
			err = fmt.Errorf("no session of this credential free or connected within %s: %w", l.acquire(), err)
		default:
			err = fmt.Errorf("waiting for a session of this credential: %w", err)
		}
		cancel()
		return err
	}
	cancel()
	defer conn.Release()

	sctx, cancel := context.WithTimeout(ctx, l.answer())
	defer cancel()
	return fn(sctx, conn.Conn())
}

// alterError says whether a failed ALTER ROLE certainly left PostgreSQL unchanged.
func (l limits) alterError(user string, err error) error {
	if err == nil {
		return nil
	}
	what := "ALTER ROLE " + pgx.Identifier{user}.Sanitize()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && statementError(pgErr) {
		// The server answered the statement with an error: an autocommit statement that
		// errors is rolled back.
		switch pgErr.Code {
		case "55P03": // lock_not_available
			return rotators.NotApplied(fmt.Errorf("%s timed out waiting for a lock held by another session (lock_timeout %s; an open transaction that altered the login?): %w", what, l.lock, pgErr))
		case "57014": // query_canceled
			return rotators.NotApplied(fmt.Errorf("%s was cancelled by the server (statement_timeout %s, or a cancel request): %w", what, l.statement, pgErr))
		}
		return rotators.NotApplied(fmt.Errorf("%s refused: %w", what, pgErr))
	}
	// pgconn.SafeToRetry is no proof here: a reply lost after the statement reached the server
	// (and committed) comes back as a "conn closed" error that it calls safe to retry
	// (integration/unknown_test.go). Once Exec started, only the server's own ERROR answer
	// proves the password unchanged.
	//
	// Sent, or perhaps sent, and no answer: the connection was lost or the client stopped waiting. The server
	// may still commit it (SettleTime).
	return fmt.Errorf("%s got no answer, so whether PostgreSQL changed the password is unknown: %w", what, err)
}

// statementError is an ERROR the server reported for the statement. A FATAL or PANIC ends the
// session, possibly after the transaction committed (a backend terminated while it waits for a
// synchronous standby), so it proves nothing.
func statementError(e *pgconn.PgError) bool {
	sev := e.SeverityUnlocalized
	if sev == "" {
		sev = e.Severity
	}
	return sev == "ERROR"
}
