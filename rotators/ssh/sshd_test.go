package ssh

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// testHosts starts n real sshd hosts for one new user and binds a target to them (host keys
// checked).
func testHosts(t *testing.T, n int) (*target, []*testenv.SSHHost, string) {
	t.Helper()
	user := testenv.NewSSHUser(t)
	var hosts []*testenv.SSHHost
	var addrs, known []string
	for range n {
		h := testenv.StartSSHHost(t, user)
		hosts = append(hosts, h)
		addrs = append(addrs, h.Addr)
		known = append(known, h.KnownHostsLine)
	}
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{FieldHosts: addrs, FieldUsername: user, FieldHostKeys: known}))
	if err != nil {
		t.Fatal(err)
	}
	return tg.(*target), hosts, user
}

// testSecret imports a new key as a secret; line is its authorized_keys line (comment "test").
func testSecret(t *testing.T) (s rotators.Secret, line string) {
	t.Helper()
	priv, line := testenv.NewSSHKey(t, "test")
	s, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPrivateKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	return s, line
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomFile is one property-test input: bytes of every value, runs of the characters that
// printf or the shell treat specially, CR/LF, sizes 0 to 64 KiB, with or without a final newline.
func randomFile(rng *rand.Rand) []byte {
	const maxSize = 64 << 10
	if rng.IntN(4) == 0 {
		return randomBytes(rng, rng.IntN(maxSize+1)) // every byte value, uniform
	}
	size := rng.IntN(maxSize + 1)
	var b []byte
	for len(b) < size {
		n := 1 + rng.IntN(700)
		switch rng.IntN(9) {
		case 0:
			b = append(b, bytes.Repeat([]byte{'-'}, n)...)
		case 1:
			b = append(b, bytes.Repeat([]byte{'%'}, n)...)
		case 2:
			b = append(b, bytes.Repeat([]byte{'\''}, n)...)
		case 3:
			b = append(b, bytes.Repeat([]byte{'\\'}, n)...)
		case 4:
			b = append(b, bytes.Repeat([]byte("\r\n"), n/2+1)...)
		case 5:
			b = append(b, bytes.Repeat([]byte{'\n'}, n)...)
		case 6:
			b = append(b, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 -%s'\\c\\0 $HOME `id` \"x\"\n"...)
		case 7:
			b = append(b, bytes.Repeat([]byte{0}, n)...)
		default:
			b = append(b, randomBytes(rng, n)...)
		}
	}
	b = b[:size]
	if len(b) > 0 && rng.IntN(2) == 0 {
		b[len(b)-1] = '\n'
	}
	return b
}

// TestSSHWriteReadExactBytesThroughSSHD: files written through the real write script to a real
// sshd host are read back (through the read script, and on the host's disk) byte for byte:
// deterministic cases (the '-' at every 256-byte boundary of issue 8, every byte value, empty,
// 64 KiB) and a few dozen random files.
func TestSSHWriteReadExactBytesThroughSSHD(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	tg, hosts, _ := testHosts(t, 1)
	h := hosts[0]
	s, line := testSecret(t)
	h.AuthorizeKey(t, line)
	signer, err := signerOf(s)
	if err != nil {
		t.Fatal(err)
	}
	// One connection for the whole test: sshd checks authorized_keys only at login, and the files
	// written here do not authorize the key.
	c, err := tg.connect(ctx, h.Addr, signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	allBytes := make([]byte, 0, 1024)
	for i := range 1024 {
		allBytes = append(allBytes, byte(i))
	}
	cases := [][]byte{dashAtBoundaries(true), dashAtBoundaries(false), allBytes, {}, []byte("-"), []byte("%"), []byte("\r\n")}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	cases = append(cases, randomBytes(rng, 64<<10))
	for range 32 {
		cases = append(cases, randomFile(rng))
	}

	prev, prevPresent := h.ReadAuthorizedKeys(t), true
	for i, want := range cases {
		if _, err := c.write(ctx, prev, prevPresent, want, true); err != nil {
			t.Fatalf("case %d (%d bytes): write: %v", i, len(want), err)
		}
		if got := h.ReadAuthorizedKeys(t); !bytes.Equal(got, want) {
			t.Fatalf("case %d: the host's file has %d bytes, want %d (first difference at %d)", i, len(got), len(want), firstDiff(got, want))
		}
		got, present, err := c.read(ctx)
		if err != nil || !present || !bytes.Equal(got, want) {
			t.Fatalf("case %d: read back %d bytes (present %v, %v), want %d (first difference at %d)", i, len(got), present, err, len(want), firstDiff(got, want))
		}
		prev = want
	}
	if _, err := c.write(ctx, prev, true, nil, false); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, present, err := c.read(ctx); err != nil || present {
		t.Fatalf("after remove: present %v, %v", present, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// proxy forwards TCP connections to a host, and can stand for a host that hangs or a network
// that cuts without a reset: a frozen connection drops every byte both ways and stays open.
type proxy struct {
	addr string
	// upLimit, when not 0, freezes a connection once its client sent more bytes than that.
	upLimit atomic.Int64

	mu sync.Mutex
	// refuse, when set, is asked for each new connection (numbered from 1) before it is
	// forwarded; true closes it at once.
	refuse func(n int) bool
	n      int
	links  []*link
}

func (p *proxy) setRefuse(f func(n int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = f
}

type link struct {
	client, host net.Conn
	frozen       atomic.Bool // both ways
	downFrozen   atomic.Bool // host to client only: the host gets the client's bytes, its answers are lost
	up           atomic.Int64
}

// startProxy forwards a new 127.0.0.1 port to target; the knownHostsLine of the target is
// rewritten for the proxy's address.
func startProxy(t *testing.T, target *testenv.SSHHost) (*proxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.links {
			l.client.Close()
			l.host.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.n++
			n, refuse := p.n, p.refuse
			p.mu.Unlock()
			if refuse != nil && refuse(n) {
				c.Close()
				continue
			}
			d, err := net.DialTimeout("tcp", target.Addr, 10*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			l := &link{client: c, host: d}
			p.mu.Lock()
			p.links = append(p.links, l)
			p.mu.Unlock()
			go p.pipe(l, d, c, true)
			go p.pipe(l, c, d, false)
		}
	}()
	_, port, _ := net.SplitHostPort(p.addr)
	return p, "[127.0.0.1]:" + port + " " + strings.SplitN(target.KnownHostsLine, " ", 2)[1]
}

func (p *proxy) pipe(l *link, dst, src net.Conn, up bool) {
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if limit := p.upLimit.Load(); up && limit > 0 && l.up.Add(int64(n)) > limit {
			l.frozen.Store(true)
		}
		if n > 0 && !l.frozen.Load() && (up || !l.downFrozen.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freezeDownAll drops, on every connection open now, what the host sends from now on.
func (p *proxy) freezeDownAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.downFrozen.Store(true)
	}
}

// freezeAll freezes every connection open now.
func (p *proxy) freezeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.frozen.Store(true)
	}
}

// TestSSHCommandBoundedOnHungHost: when a host stops answering, opening a session and running a
// script end with an error at the command bound (here 1 s), not when the caller's context ends.
func TestSSHCommandBoundedOnHungHost(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, hosts, user := testHosts(t, 1)
	h := hosts[0]
	s, line := testSecret(t)
	h.AuthorizeKey(t, line)
	signer, err := signerOf(s)
	if err != nil {
		t.Fatal(err)
	}
	px, known := startProxy(t, h)
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{FieldHosts: []string{px.addr}, FieldUsername: user, FieldHostKeys: []string{known}}))
	if err != nil {
		t.Fatal(err)
	}
	tg.(*target).cmdTimeout = time.Second
	for _, what := range []string{"read", "write"} {
		c, err := tg.(*target).connect(ctx, px.addr, signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.read(ctx); err != nil {
			t.Fatalf("read before the host hangs: %v", err)
		}
		px.freezeAll()
		if what == "read" {
			_, _, err = c.read(ctx)
		} else {
			_, err = c.write(ctx, nil, false, []byte("x\n"), true)
		}
		if err == nil || !strings.Contains(err.Error(), "no answer within 1s") || ctx.Err() != nil {
			t.Fatalf("%s on a hung host: %v", what, err)
		}
		c.close()
	}
	if got := h.ReadAuthorizedKeys(t); !bytes.Equal(got, []byte(line+"\n")) {
		t.Fatalf("authorized_keys changed: %q", got)
	}
}
