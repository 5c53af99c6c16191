package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// lossyProxy forwards TCP connections to a PostgreSQL server. Once armed, it forwards the next
// ALTER ROLE to the server and, instead of passing the server's answer back, cuts both
// connections: the change is committed at PostgreSQL while the plugin never hears of it. This is
// a fault the real server cannot produce on demand (a reply lost on the network), so the test
// makes it; everything else is the real PostgreSQL.
type lossyProxy struct {
	ln       net.Listener
	upstream string
	armed    atomic.Bool
	dropped  atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// track remembers a connection, so that the proxy can close every one when the test ends (the
// plugin keeps its admin sessions open).
func (p *lossyProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *lossyProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func startLossyProxy(t *testing.T, upstream string) *lossyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, upstream: upstream}
	t.Cleanup(p.close)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	return p
}

func (p *lossyProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *lossyProxy) serve(client net.Conn) {
	defer client.Close()
	p.track(client)
	server, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	p.track(server)
	// cut is closed when an ALTER ROLE went to the server while armed: its answer is dropped.
	cut := make(chan struct{})
	var once sync.Once
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				drop := bytes.Contains(chunk, []byte("ALTER ROLE")) && p.armed.CompareAndSwap(true, false)
				if _, werr := server.Write(chunk); werr != nil {
					return
				}
				if drop {
					p.dropped.Add(1)
					once.Do(func() { close(cut) })
					return
				}
			}
			if err != nil {
				server.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		select {
		case <-cut:
			// Give the server a moment to commit, then cut both sides without the answer.
			time.Sleep(200 * time.Millisecond)
			return
		default:
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: either side is gone
		}
	}
}

// TestLostReplyIsUnknownAndResolvedToWhatPostgresHolds: the admin's ALTER ROLE reaches
// PostgreSQL and commits, but the reply never reaches the plugin. The rotation's outcome is
// unknown, both values stay in the pending record, and once the target has settled recovery asks
// PostgreSQL and promotes the value it holds: creds logs in.
func TestLostReplyIsUnknownAndResolvedToWhatPostgresHolds(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	proxy := startLossyProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Postgres.Port))
	viaProxy := strings.Replace(s.Postgres.URLTemplate(), fmt.Sprintf(":%d/", s.Postgres.Port), fmt.Sprintf(":%d/", proxy.port()), 1)

	s.CreateLogin(t, "lossy_admin", "lossy-admin-pw", "CREATEROLE")
	s.Write(t, "roles/lossy-admin", map[string]interface{}{
		"type": "postgres", "connection_url": viaProxy, "username": "lossy_admin", "password": "lossy-admin-pw",
		"rotation_period": "2160h", "allowed_usernames": "lossy_*",
	})
	s.CreateLogin(t, "lossy_app", "lossy-app-initial", "")
	s.Write(t, "roles/lossy-app", map[string]interface{}{
		"type": "postgres", "admin_role": "lossy-admin", "username": "lossy_app", "password": "lossy-app-initial",
		"rotation_period": "2160h", // connection_url: the admin's, through the proxy
	})

	proxy.armed.Store(true)
	_, re := s.WriteErr("rotate/lossy-app", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "not yet known which value is live")
	if proxy.dropped.Load() != 1 {
		t.Fatalf("the proxy dropped %d replies, want 1", proxy.dropped.Load())
	}
	// PostgreSQL took the change: the old password is dead, and Vault must not have lost the new one.
	s.AssertLogin(t, "lossy_app", "lossy-app-initial", false)
	if role := s.Read(t, "roles/lossy-app").Data; role["pending"] != true || role["last_outcome"] != "unresolved" {
		t.Fatalf("role after a lost reply: pending=%v last_outcome=%v", role["pending"], role["last_outcome"])
	}

	testenv.Eventually(t, "recovery promotes the value PostgreSQL holds", 3*time.Minute, func() error {
		if s.Read(t, "roles/lossy-app").Data["pending"] != false {
			return fmt.Errorf("still pending")
		}
		_, pw, v := s.Creds(t, "lossy-app")
		if v != 2 {
			return fmt.Errorf("version %d", v)
		}
		return s.Postgres.CanLogin("lossy_app", pw)
	})
	hist := s.Read(t, "history/lossy-app").Data["history"].([]interface{})
	if first := hist[0].(map[string]interface{}); first["trigger"] != "recovery" || first["outcome"] != "success" {
		t.Fatalf("latest history entry: %s", testenv.JSONOf(t, first))
	}
	s.Write(t, "rotate/lossy-app", nil)
	_, pw, _ := s.Creds(t, "lossy-app")
	s.AssertLogin(t, "lossy_app", pw, true)
}

// TestAlternatingRollbackRestoresBothLogins: with strategy=alternating a rotation changes the
// inactive login, which displaces that login's previous password (kept as an older version). A
// rotation that fails after apply puts back the current login's value and the displaced one, so
// every kept version that worked before still works.
func TestAlternatingRollbackRestoresBothLogins(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.ImportAdmin(t, "alt-admin", "altr_admin", "altr-admin-pw")
	s.CreateLogin(t, "altr_blue", "blue-0", "")
	s.CreateLogin(t, "altr_green", "green-0", "")
	s.Write(t, "roles/alt", map[string]interface{}{
		"type": "postgres", "admin_role": "alt-admin", "strategy": "alternating", "usernames": "altr_blue,altr_green",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
	})
	s.Write(t, "rotate/alt", nil)
	u2, p2, v2 := s.Creds(t, "alt")
	u1, p1, v1 := s.Creds(t, "alt", "version", fmt.Sprint(v2-1))
	s.AssertLogin(t, u1, p1, true)
	s.AssertLogin(t, u2, p2, true)

	// The next rotation changes u1's password, then fails its health check and rolls back.
	closed := testenv.FreePort(t)
	s.Write(t, "roles/alt", map[string]interface{}{
		"health_checks": fmt.Sprintf("tcp://127.0.0.1:%d", closed), "health_timeout": "1s",
	})
	_, re := s.WriteErr("rotate/alt", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")

	u, p, v := s.Creds(t, "alt")
	if u != u2 || p != p2 || v != v2 {
		t.Fatalf("current after the rollback is %s v%d, want %s v%d", u, v, u2, v2)
	}
	s.AssertLogin(t, u2, p2, true)
	// The displaced login has its previous password back.
	_, pOld, _ := s.Creds(t, "alt", "version", fmt.Sprint(v1))
	s.AssertLogin(t, u1, pOld, true)
	if role := s.Read(t, "roles/alt").Data; role["pending"] != false {
		t.Fatal("pending record left after the rollback")
	}
}

// TestCredsNeverHandsOutADeadValue hammers creds while rotations run (single strategy, where the
// old password dies at apply) and logs in with every answer. A login may fail only because a
// rotation finished after the read; so a failed login is re-read, and the same version failing
// again is a dead value handed out as current. Bounded by a count of rotations.
func TestCredsNeverHandsOutADeadValue(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.ImportAdmin(t, "ham-admin", "ham_admin", "ham-admin-pw")
	const roles, rotations, readers = 4, 120, 4
	for i := 0; i < roles; i++ {
		user := fmt.Sprintf("ham_%d", i)
		s.CreateLogin(t, user, "ham-initial-"+user, "")
		s.Write(t, "roles/ham-"+fmt.Sprint(i), map[string]interface{}{
			"type": "postgres", "admin_role": "ham-admin", "username": user,
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "2160h",
		})
	}
	var done atomic.Bool
	var rotated, reads, retries atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rotated.Add(1) <= rotations {
				if _, re := s.WriteErr(fmt.Sprintf("rotate/ham-%d", rand.IntN(roles)), nil); re != nil {
					report(fmt.Errorf("rotate: %v", re.Errors))
				}
			}
			done.Store(true)
		}()
	}
	readOnce := func(role string) (string, string, int, error) {
		sec, err := s.Vault.Client.Logical().Read(mount + "/creds/" + role)
		if err != nil || sec == nil {
			return "", "", 0, fmt.Errorf("read creds: %v", err)
		}
		u, _ := sec.Data["username"].(string)
		p, _ := sec.Data["password"].(string)
		return u, p, testenv.IntOf(t, sec.Data["version"]), nil
	}
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				role := fmt.Sprintf("ham-%d", rand.IntN(roles))
				u, p, v, err := readOnce(role)
				if err != nil {
					report(err)
					return
				}
				reads.Add(1)
				if s.Postgres.CanLogin(u, p) == nil {
					continue
				}
				retries.Add(1)
				_, p2, v2, err := readOnce(role)
				if err != nil {
					report(err)
					return
				}
				if v2 == v {
					if err := s.Postgres.CanLogin(u, p2); err != nil {
						report(fmt.Errorf("%s: creds answered version %d twice and it does not log in: %v", role, v, err))
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d rotations, %d creds reads, %d re-reads after a rotation overtook a read", rotations, reads.Load(), retries.Load())
	if reads.Load() == 0 {
		t.Fatal("no creds read ran during the rotations")
	}
}
