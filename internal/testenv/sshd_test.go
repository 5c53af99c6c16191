package testenv

import (
	"bytes"
	"strings"
	"testing"
)

// TestSSHHosts: two sshd for one user, each with its own authorized_keys; a key logs in where it
// is authorized only; Stop refuses connections and Start brings the host back.
func TestSSHHosts(t *testing.T) {
	t.Parallel()
	u := NewSSHUser(t)
	a := StartSSHHost(t, u)
	b := StartSSHHost(t, u)
	if a.Addr == b.Addr || a.AuthorizedKeysPath == b.AuthorizedKeysPath || a.KnownHostsLine == b.KnownHostsLine {
		t.Fatal("hosts share an address, a file or a host key")
	}
	if !strings.HasPrefix(a.KnownHostsLine, "[127.0.0.1]:") || !strings.Contains(a.KnownHostsLine, " ssh-ed25519 ") {
		t.Fatalf("known_hosts line %q", a.KnownHostsLine)
	}
	keyA, lineA := NewSSHKey(t, "key-a")
	keyB, lineB := NewSSHKey(t, "key-b")
	a.AuthorizeKey(t, lineA)
	b.WriteAuthorizedKeys(t, []byte(lineB)) // no final newline
	if err := a.CanLogin(u, keyA); err != nil {
		t.Fatalf("key A on host A: %v\n%s", err, a.Log(t))
	}
	if err := b.CanLogin(u, keyB); err != nil {
		t.Fatalf("key B on host B: %v\n%s", err, b.Log(t))
	}
	if err := a.CanLogin(u, keyB); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("key B on host A: %v", err)
	}
	if err := b.CanLogin(u, keyA); err == nil {
		t.Fatal("key A logs in on host B: the hosts share authorized_keys")
	}
	if !bytes.Equal(b.ReadAuthorizedKeys(t), []byte(lineB)) {
		t.Fatal("read back differs")
	}
	b.Stop(t)
	if err := b.CanLogin(u, keyB); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("login on a stopped host: %v", err)
	}
	b.Start(t)
	if err := b.CanLogin(u, keyB); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if !strings.Contains(a.Log(t), "Accepted publickey for "+u) {
		t.Fatalf("sshd log:\n%s", a.Log(t))
	}
}
