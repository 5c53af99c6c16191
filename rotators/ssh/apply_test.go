package ssh

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// applySetup is two real sshd hosts of one user, the current key authorized on both among
// foreign lines (options, CRLF, a comment, no final newline on host 2), and a new key.
type applySetup struct {
	tg           *target
	hosts        []*testenv.SSHHost
	user         string
	old, new     rotators.Secret
	oldLine      string
	before       [][]byte // each host's authorized_keys before Apply
	foreignLines []string
}

func newApplySetup(t *testing.T, viaProxy func(i int, h *testenv.SSHHost) (addr, known string)) *applySetup {
	t.Helper()
	user := testenv.NewSSHUser(t)
	s := &applySetup{user: user}
	var addrs, known []string
	for i := range 2 {
		h := testenv.StartSSHHost(t, user)
		s.hosts = append(s.hosts, h)
		addr, line := h.Addr, h.KnownHostsLine
		if viaProxy != nil {
			if a, k := viaProxy(i, h); a != "" {
				addr, line = a, k
			}
		}
		addrs, known = append(addrs, addr), append(known, line)
	}
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{FieldHosts: addrs, FieldUsername: user, FieldHostKeys: known}))
	if err != nil {
		t.Fatal(err)
	}
	s.tg = tg.(*target)
	s.old, s.oldLine = testSecret(t)
	s.new, _ = testSecret(t)
	_, other := testenv.NewSSHKey(t, "someone else")
	s.foreignLines = []string{"# managed by hand\r\n", `from="127.0.0.1",no-agent-forwarding ` + other + "\n", "\n"}
	s.before = [][]byte{
		[]byte(strings.Join(s.foreignLines, "") + s.oldLine + "\n"),
		[]byte(s.oldLine + "\r\n" + strings.Join(s.foreignLines, "") + "# last line, no newline"),
	}
	for i, h := range s.hosts {
		h.WriteAuthorizedKeys(t, s.before[i])
	}
	return s
}

// checkLogins checks, on every host, whether each key logs in.
func (s *applySetup) checkLogins(t *testing.T, oldWorks, newWorks bool) {
	t.Helper()
	for _, h := range s.hosts {
		if err := h.CanLogin(s.user, s.old[PartPrivateKey]); (err == nil) != oldWorks {
			t.Errorf("%s: old key logs in: %v, want %v", h.Addr, err == nil, oldWorks)
		}
		if err := h.CanLogin(s.user, s.new[PartPrivateKey]); (err == nil) != newWorks {
			t.Errorf("%s: new key logs in: %v, want %v", h.Addr, err == nil, newWorks)
		}
	}
}

func (s *applySetup) checkUnchanged(t *testing.T) {
	t.Helper()
	for i, h := range s.hosts {
		if got := h.ReadAuthorizedKeys(t); !bytes.Equal(got, s.before[i]) {
			t.Errorf("host %d: authorized_keys\n%q\nwant (byte for byte)\n%q", i+1, got, s.before[i])
		}
	}
}

// TestSSHApplyOnRealHosts: Apply leaves exactly the new key of ours, the foreign lines byte for
// byte and in order; the old key no longer logs in. Apply(new, new) changes nothing.
func TestSSHApplyOnRealHosts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newApplySetup(t, nil)
	if err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new); err != nil {
		t.Fatal(err)
	}
	s.checkLogins(t, false, true)
	// Applying the live key over itself changes nothing (step 3 would remove it otherwise).
	s.before = [][]byte{s.hosts[0].ReadAuthorizedKeys(t), s.hosts[1].ReadAuthorizedKeys(t)}
	if err := s.tg.Apply(ctx, rotators.Env{}, s.new, s.new); err != nil {
		t.Fatal(err)
	}
	s.checkUnchanged(t)
	newLine := keyLine("", mustKey(t, s.new), mustKey(t, s.old))
	want := [][]byte{
		[]byte(strings.Join(s.foreignLines, "") + newLine + "\n"),
		// The old line (with its CRLF) goes; the new one follows the last line, which gets the newline.
		[]byte(strings.Join(s.foreignLines, "") + "# last line, no newline\n" + newLine),
	}
	for i, h := range s.hosts {
		if got := h.ReadAuthorizedKeys(t); !bytes.Equal(got, want[i]) {
			t.Errorf("host %d:\n%q\nwant\n%q", i+1, got, want[i])
		}
	}
}

// TestSSHApplyNotApplied: Apply's error wraps rotators.ErrNotApplied exactly when every host
// holds what it held before (README, "What a rotation does on the hosts").
func TestSSHApplyNotApplied(t *testing.T) {
	t.Parallel()
	bigForeign := "# " + strings.Repeat("a", 40<<10) + "\n" // makes the write script > 80 KB

	t.Run("a host down before any change", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		s := newApplySetup(t, nil)
		s.hosts[1].Stop(t)
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+s.hosts[1].Addr+": log in with the current key") {
			t.Fatalf("got %v", err)
		}
		s.hosts[1].Start(t)
		s.checkUnchanged(t)
	})

	t.Run("host 2 refuses the write: host 1 put back", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		s := newApplySetup(t, nil)
		// A symlinked authorized_keys lets the key in, but the write script refuses it.
		b := s.hosts[1]
		real := filepath.Join(filepath.Dir(b.AuthorizedKeysPath), "real_keys")
		if err := os.Rename(b.AuthorizedKeysPath, real); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("real_keys", b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+b.Addr+": add the new key") ||
			!strings.Contains(err.Error(), "put back") {
			t.Fatalf("got %v", err)
		}
		if err := os.Remove(b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(real, b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		s.checkUnchanged(t)
		s.checkLogins(t, true, false)
	})

	t.Run("host 2 unreachable for the new key: both put back", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		var px *proxy
		s := newApplySetup(t, func(i int, h *testenv.SSHHost) (string, string) {
			if i != 1 {
				return "", ""
			}
			p, known := startProxy(t, h)
			px = p
			return p.addr, known
		})
		px.setRefuse(func(n int) bool { return n >= 2 }) // step 0's connection only
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+px.addr+": log in with the new key") {
			t.Fatalf("got %v", err)
		}
		s.checkUnchanged(t)
		px.setRefuse(nil)
		s.checkLogins(t, true, false)
	})

	// Host 2 behind a proxy; its authorized_keys is big enough that a write script is > 80 KB.
	proxied := func(t *testing.T) (*applySetup, *proxy) {
		var px *proxy
		s := newApplySetup(t, func(i int, h *testenv.SSHHost) (string, string) {
			if i != 1 {
				return "", ""
			}
			p, known := startProxy(t, h)
			px = p
			return p.addr, known
		})
		s.before[1] = append([]byte(bigForeign), s.before[1]...)
		s.hosts[1].WriteAuthorizedKeys(t, s.before[1])
		s.tg.cmdTimeout = 3 * time.Second
		return s, px
	}

	t.Run("a write cut before its confirmation changed nothing", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		s, px := proxied(t)
		px.upLimit.Store(60 << 10)                       // the login and the read pass, the write script does not
		px.setRefuse(func(n int) bool { return n >= 2 }) // and host 2 cannot be asked again
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+px.addr+": add the new key to authorized_keys: ") ||
			!strings.Contains(err.Error(), "no answer within 3s") {
			t.Fatalf("got %v", err)
		}
		s.checkUnchanged(t)
	})

	t.Run("a confirmed write's answer lost: outcome unknown", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		s, px := proxied(t)
		var once sync.Once
		s.tg.confirmHook = func(addr string) {
			if addr == px.addr {
				once.Do(px.freezeDownAll) // host 2 gets the confirmation; its answer is lost
			}
		}
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+px.addr+": add the new key to authorized_keys: ") ||
			!strings.Contains(err.Error(), "a confirmed write on "+px.addr+" got no answer") {
			t.Fatalf("got %v", err)
		}
		// Host 1 was put back; whatever host 2 holds, the old key still logs in everywhere.
		if got := s.hosts[0].ReadAuthorizedKeys(t); !bytes.Equal(got, s.before[0]) {
			t.Fatalf("host 1 not put back: %q", got)
		}
		s.checkLogins(t, true, false)
	})

	t.Run("a host that cannot be put back: outcome unknown", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		s, px := proxied(t)
		// From host 2's second connection (step 2's login) on, it neither answers nor lets in.
		px.setRefuse(func(n int) bool {
			if n < 2 {
				return false
			}
			px.freezeAll()
			return true
		})
		err := s.tg.Apply(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "host "+px.addr+": log in with the new key") ||
			!strings.Contains(err.Error(), "could not put back the original authorized_keys on "+px.addr) {
			t.Fatalf("got %v", err)
		}
		if got := s.hosts[0].ReadAuthorizedKeys(t); !bytes.Equal(got, s.before[0]) {
			t.Fatalf("host 1 not put back: %q", got)
		}
		// Host 2 still has both keys (the next rotation from the old key removes the new one).
		px.setRefuse(nil)
		for i, h := range s.hosts {
			if err := h.CanLogin(s.user, s.old[PartPrivateKey]); err != nil {
				t.Errorf("host %d: old key: %v", i+1, err)
			}
		}
		if err := s.hosts[1].CanLogin(s.user, s.new[PartPrivateKey]); err != nil {
			t.Errorf("host 2: new key: %v", err)
		}
	})
}

func mustKey(t *testing.T, s rotators.Secret) gossh.PublicKey {
	t.Helper()
	signer, err := signerOf(s)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}
