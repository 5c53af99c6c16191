package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// conns keeps one open session per admin (or self-managed) credential, so that a rotation does
// not pay a TCP connect and a SCRAM exchange to change a password. It is keyed by a hash of the
// rendered URL, so a changed credential never reuses another's session; sessions idle longer
// than connIdle are closed on the next use of the cache.
var conns = &connCache{entries: map[[32]byte]*cachedConn{}}

const connIdle = 2 * time.Minute

type connCache struct {
	mu      sync.Mutex
	entries map[[32]byte]*cachedConn
}

type cachedConn struct {
	mu       sync.Mutex // a pgx.Conn serves one statement at a time
	conn     *pgx.Conn
	lastUsed time.Time // guarded by connCache.mu
}

// exec runs stmt on the cached session for connURL, opening one if needed. A failure on a cached
// session (closed by the server, network cut) is retried once on a fresh session; ALTER ROLE is
// idempotent, so a retry cannot do harm.
func (c *connCache) exec(ctx context.Context, connURL, stmt string) error {
	entry := c.entry(connURL)
	entry.mu.Lock()
	defer entry.mu.Unlock()

	reused := entry.conn != nil
	for attempt := 0; attempt < 2; attempt++ {
		if entry.conn == nil {
			cfg, err := pgx.ParseConfig(connURL)
			if err != nil {
				return errors.New("connection_url does not parse with this credential")
			}
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return classify(err)
			}
			entry.conn = conn
		}
		_, err := entry.conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			return nil
		}
		entry.conn.Close(context.WithoutCancel(ctx))
		entry.conn = nil
		if !reused || ctx.Err() != nil {
			return fmt.Errorf("alter role: %w", err)
		}
		reused = false
	}
	return errors.New("alter role: no session")
}

func (c *connCache) entry(connURL string) *cachedConn {
	key := sha256.Sum256([]byte(connURL))
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if k != key && now.Sub(e.lastUsed) > connIdle && e.mu.TryLock() {
			if e.conn != nil {
				e.conn.Close(context.Background())
			}
			delete(c.entries, k)
			e.mu.Unlock()
		}
	}
	e, ok := c.entries[key]
	if !ok {
		e = &cachedConn{}
		c.entries[key] = e
	}
	e.lastUsed = now
	return e
}
