package integration

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestSSHRotation covers the ssh kind against two real OpenSSH servers for one user, each with
// its own authorized_keys.
func TestSSHRotation(t *testing.T) {
	t.Parallel()
	s := &stack{testenv.NewStack(t, testenv.StackOptions{Postgres: true, PostgresOpts: []string{"log_statement=all"}, SSHHosts: 2})}
	user, a, b := s.SSHUser, s.SSH[0], s.SSH[1]

	key0, line0 := testenv.NewSSHKey(t, "operator@laptop")
	s.Remember(key0)
	_, otherLine := testenv.NewSSHKey(t, "someone else")
	// Lines that are not ours, with options, a comment, CRLF and no final newline.
	foreignA := "# managed by hand\r\n" + `from="127.0.0.1",no-agent-forwarding ` + otherLine + "\n\n"
	a.WriteAuthorizedKeys(t, []byte(foreignA+line0)) // the current key is the last line, without newline
	b.WriteAuthorizedKeys(t, []byte(line0+"\n"+otherLine))

	role := func(extra map[string]interface{}) map[string]interface{} {
		m := map[string]interface{}{
			"type": "ssh", "hosts": a.Addr + "," + b.Addr, "username": user,
			"host_keys": []string{a.KnownHostsLine, b.KnownHostsLine}, "rotation_period": "8760h",
		}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}

	t.Run("bad input is a 400 naming the field", func(t *testing.T) {
		for _, c := range []struct {
			extra map[string]interface{}
			want  string
		}{
			{map[string]interface{}{"private_key": key0, "hosts": ""}, "hosts: required"},
			{map[string]interface{}{"private_key": key0, "hosts": "127.0.0.1"}, `hosts: "127.0.0.1" is not host:port`},
			{map[string]interface{}{"private_key": "not a key"}, "private_key: "},
			{map[string]interface{}{"private_key": key0, "key_type": "dsa"}, "key_type: "},
			{map[string]interface{}{"private_key": key0, "key_bits": 4096}, "key_bits: only used with key_type=rsa"},
			{map[string]interface{}{"private_key": key0, "host_keys": nil}, "host_keys: required"},
			{map[string]interface{}{}, "private_key: required"},
		} {
			_, re := s.WriteErr("roles/bad", role(c.extra))
			testenv.ExpectStatus(t, re, http.StatusBadRequest, c.want)
		}
		if s.Read(t, "roles/bad") != nil {
			t.Fatal("a refused role was created")
		}
	})

	t.Run("import, rotate on both hosts, creds, versions, rollback", func(t *testing.T) {
		s.Write(t, "roles/deploy", role(map[string]interface{}{"private_key": key0}))
		if !bytes.Equal(a.ReadAuthorizedKeys(t), []byte(foreignA+line0)) {
			t.Fatal("import changed host A")
		}
		read := s.Read(t, "roles/deploy")
		if _, ok := read.Data["private_key"]; ok || strings.Contains(testenv.JSONOf(t, read.Data), "PRIVATE KEY") {
			t.Fatal("role read returns the private key")
		}

		rot := s.Write(t, "rotate/deploy", nil)
		if testenv.IntOf(t, rot.Data["version"]) != 2 {
			t.Fatalf("rotate: %#v", rot.Data)
		}
		cr := s.Read(t, "creds/deploy")
		key1, _ := cr.Data["private_key"].(string)
		pub1, _ := cr.Data["public_key"].(string)
		fp1, _ := cr.Data["fingerprint"].(string)
		s.Remember(key1)
		if !strings.HasPrefix(key1, "-----BEGIN OPENSSH PRIVATE KEY-----") || !strings.HasPrefix(pub1, "ssh-ed25519 ") ||
			!strings.HasSuffix(pub1, " vault-plugin-rotation") || !strings.HasPrefix(fp1, "SHA256:") || cr.Data["username"] != user {
			t.Fatalf("creds: %v %v %v", pub1, fp1, cr.Data["username"])
		}
		for _, h := range []*testenv.SSHHost{a, b} {
			if err := h.CanLogin(user, key1); err != nil {
				t.Fatalf("new key on %s: %v", h.Addr, err)
			}
			if err := h.CanLogin(user, key0); err == nil {
				t.Fatalf("old key still logs in on %s", h.Addr)
			}
		}
		// Host A: the foreign lines are byte-identical; the new key inherited the old key's
		// options (none) and sits where the old one was appended.
		gotA := string(a.ReadAuthorizedKeys(t))
		blob1 := strings.Fields(pub1)[1]
		if !strings.HasPrefix(gotA, foreignA) || strings.Contains(gotA, strings.Fields(line0)[1]) || !strings.Contains(gotA, blob1) {
			t.Fatalf("host A authorized_keys:\n%q", gotA)
		}
		if gotB := string(b.ReadAuthorizedKeys(t)); !strings.HasPrefix(gotB, otherLine+"\n") || !strings.Contains(gotB, blob1) {
			t.Fatalf("host B authorized_keys:\n%q", gotB)
		}
		if k, _ := s.Read(t, "creds/deploy", "version", "1").Data["private_key"].(string); !strings.Contains(k, "OPENSSH PRIVATE KEY") {
			t.Fatal("creds version=1 has no key")
		}
		versions := s.Read(t, "versions/deploy")
		if strings.Contains(testenv.JSONOf(t, versions.Data), "PRIVATE KEY") || len(versions.Data["versions"].([]interface{})) != 2 {
			t.Fatalf("versions: %s", testenv.JSONOf(t, versions.Data))
		}

		rb := s.Write(t, "rollback/deploy", nil)
		if testenv.IntOf(t, rb.Data["version"]) != 3 {
			t.Fatalf("rollback: %#v", rb.Data)
		}
		for _, h := range []*testenv.SSHHost{a, b} {
			if err := h.CanLogin(user, key0); err != nil {
				t.Fatalf("rolled-back key on %s: %v", h.Addr, err)
			}
			if err := h.CanLogin(user, key1); err == nil {
				t.Fatalf("key 2 still logs in on %s after rollback", h.Addr)
			}
		}
		// Back on key 0 (re-added as our line): the foreign lines are still byte-identical.
		if got := string(a.ReadAuthorizedKeys(t)); !strings.HasPrefix(got, foreignA) {
			t.Fatalf("host A after rollback:\n%q", got)
		}
		s.Write(t, "rotate/deploy", nil)
		_, _ = s.Read(t, "creds/deploy").Data["private_key"].(string)
	})

	current := func(t *testing.T) string {
		k, _ := s.Read(t, "creds/deploy").Data["private_key"].(string)
		s.Remember(k)
		return k
	}

	t.Run("second host fails: first host put back byte for byte", func(t *testing.T) {
		key := current(t)
		beforeA, beforeB := a.ReadAuthorizedKeys(t), b.ReadAuthorizedKeys(t)
		// Host B's authorized_keys becomes a symlink (to an identical file): it still lets the
		// key in, but the plugin refuses to replace a symlink, after host A was changed.
		real := filepath.Join(filepath.Dir(b.AuthorizedKeysPath), "real_keys")
		if err := os.Rename(b.AuthorizedKeysPath, real); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("real_keys", b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		if err := b.CanLogin(user, key); err != nil {
			t.Fatalf("symlinked authorized_keys refuses the key: %v", err)
		}
		_, re := s.WriteErr("rotate/deploy", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "host "+b.Addr)
		if !bytes.Equal(a.ReadAuthorizedKeys(t), beforeA) {
			t.Fatalf("host A not put back:\n%q\nwant\n%q", a.ReadAuthorizedKeys(t), beforeA)
		}
		if err := a.CanLogin(user, key); err != nil {
			t.Fatalf("old key on A: %v", err)
		}
		if current(t) != key {
			t.Fatal("creds changed after a failed rotation")
		}
		if err := os.Remove(b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(real, b.AuthorizedKeysPath); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.ReadAuthorizedKeys(t), beforeB) {
			t.Fatal("host B changed")
		}
	})

	t.Run("second host down: nothing changes", func(t *testing.T) {
		key := current(t)
		beforeA := a.ReadAuthorizedKeys(t)
		b.Stop(t)
		_, re := s.WriteErr("rotate/deploy", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "host "+b.Addr)
		if !bytes.Equal(a.ReadAuthorizedKeys(t), beforeA) {
			t.Fatal("host A changed although host B was down")
		}
		if err := a.CanLogin(user, key); err != nil {
			t.Fatalf("old key on A: %v", err)
		}
		b.Start(t)
	})

	t.Run("wrong host key: refused before any change", func(t *testing.T) {
		beforeA, beforeB := a.ReadAuthorizedKeys(t), b.ReadAuthorizedKeys(t)
		// Host B's line carries host A's key.
		wrongB := strings.Replace(a.KnownHostsLine, strings.Fields(a.KnownHostsLine)[0], strings.Fields(b.KnownHostsLine)[0], 1)
		s.Write(t, "roles/deploy", map[string]interface{}{"host_keys": []string{a.KnownHostsLine, wrongB}})
		_, re := s.WriteErr("rotate/deploy", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "host key does not match")
		if !bytes.Equal(a.ReadAuthorizedKeys(t), beforeA) || !bytes.Equal(b.ReadAuthorizedKeys(t), beforeB) {
			t.Fatal("a host changed although host B's key was wrong")
		}
		s.Write(t, "roles/deploy", map[string]interface{}{"host_keys": []string{a.KnownHostsLine, b.KnownHostsLine}})
		s.Write(t, "rotate/deploy", nil)
		key := current(t)
		for _, h := range []*testenv.SSHHost{a, b} {
			if err := h.CanLogin(user, key); err != nil {
				t.Fatalf("after fixing host_keys, %s: %v", h.Addr, err)
			}
		}
		if got := string(a.ReadAuthorizedKeys(t)); !strings.HasPrefix(got, foreignA) || strings.Count(got, "vault-plugin-rotation") != 1 {
			t.Fatalf("host A after several rotations:\n%q", got)
		}
	})

	t.Run("no secret in role reads, versions or history", func(t *testing.T) {
		for _, p := range []string{"roles/deploy", "versions/deploy", "history/deploy"} {
			s.AssertNoSecretIn(t, p, testenv.JSONOf(t, s.Read(t, p).Data))
		}
	})
}
