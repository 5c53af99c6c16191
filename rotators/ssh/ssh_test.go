package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func newKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authLine(k gossh.PublicKey, comment string) string {
	return strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(k)), "\n") + comment
}

// TestSSHAuthorizedKeysAddRemoveRoundTrip: adding our line and removing it gives back the original
// bytes, whatever the file holds (options, comments, CRLF, blank lines, no final newline).
func TestSSHAuthorizedKeysAddRemoveRoundTrip(t *testing.T) {
	other, mine := newKey(t), newKey(t)
	originals := map[string]string{
		"empty":              "",
		"one line":           authLine(other, " alice@laptop") + "\n",
		"no final newline":   authLine(other, " alice@laptop"),
		"options and ~":      `from="10.0.0.0/8",no-pty ` + authLine(other, " ops") + "\n# a comment\n\n   \n",
		"crlf":               "# header\r\n" + authLine(other, "") + "\r\n",
		"crlf no newline":    "# header\r\n" + authLine(other, ""),
		"garbage kept":       "this is not a key\n" + authLine(other, "") + "\nnor this",
		"only comment":       "# nothing here",
		"trailing blank":     authLine(other, "") + "\n\n",
		"comment-like match": authLine(other, " vault-plugin-rotation") + "\n",
	}
	for name, orig := range originals {
		t.Run(name, func(t *testing.T) {
			line := keyLine("", mine, other)
			added, changed := addLine([]byte(orig), mine, line)
			if !changed || !hasKey(added, mine) || !strings.HasPrefix(string(added), orig) {
				t.Fatalf("add: changed=%v\n%q", changed, added)
			}
			if again, changed := addLine(added, mine, line); changed || !bytes.Equal(again, added) {
				t.Fatal("adding a present key changed the file")
			}
			back, changed := removeKey(added, mine)
			if !changed || string(back) != orig {
				t.Fatalf("remove: changed=%v\n got %q\nwant %q", changed, back, orig)
			}
			if same, changed := removeKey([]byte(orig), mine); changed || string(same) != orig {
				t.Fatal("removing an absent key changed the file")
			}
		})
	}
}

// TestSSHAuthorizedKeysMatchByKey: removal matches the key blob, not the comment, and drops every
// line of that key while keeping all others in order.
func TestSSHAuthorizedKeysMatchByKey(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	content := authLine(a, " first") + "\n" +
		`command="echo hi" ` + authLine(b, " vault-plugin-rotation") + "\n" +
		authLine(c, " third") + "\n" +
		authLine(b, " same key, other comment") + "\n"
	out, changed := removeKey([]byte(content), b)
	want := authLine(a, " first") + "\n" + authLine(c, " third") + "\n"
	if !changed || string(out) != want {
		t.Fatalf("got %q\nwant %q", out, want)
	}
	if optionsOf([]byte(content), b) != `command="echo hi"` {
		t.Fatalf("options %q", optionsOf([]byte(content), b))
	}
	// Remove the last line when it has no newline: the newline before it goes too.
	out, _ = removeKey([]byte(authLine(a, "")+"\n"+authLine(b, "")), b)
	if string(out) != authLine(a, "") {
		t.Fatalf("got %q", out)
	}
	// Remove a line in the middle of a file without a final newline.
	out, _ = removeKey([]byte(authLine(a, "")+"\n"+authLine(b, "")+"\n"+authLine(c, "")), b)
	if string(out) != authLine(a, "")+"\n"+authLine(c, "") {
		t.Fatalf("got %q", out)
	}
}

// TestSSHKeyLineInheritsOptions: the new key gets the current key's options and our comment.
func TestSSHKeyLineInheritsOptions(t *testing.T) {
	from, to := newKey(t), newKey(t)
	content := []byte(`from="127.0.0.1",no-agent-forwarding ` + authLine(from, " me") + "\n")
	line := keyLine(optionsOf(content, from), to, from)
	p, ok := parseLine([]byte(line))
	if !ok || !sameKey(p.key, to) || strings.Join(p.options, ",") != `from="127.0.0.1",no-agent-forwarding` {
		t.Fatalf("line %q parsed %v %+v", line, ok, p)
	}
	if p.comment != KeyComment+" "+replacesTag+gossh.FingerprintSHA256(from) {
		t.Fatalf("comment %q", p.comment)
	}
}

// TestSSHRemoveStray: lines of ours that replaced the current key are strays of a failed rotation.
func TestSSHRemoveStray(t *testing.T) {
	from, stray, keep, foreign := newKey(t), newKey(t), newKey(t), newKey(t)
	content := authLine(from, " me") + "\n" +
		keyLine("", stray, from) + "\n" +
		keyLine("", foreign, newKey(t)) + "\n" + // ours, but replaced another key: another role's
		authLine(newKey(t), " "+replacesTag+gossh.FingerprintSHA256(from)) + "\n" // not ours
	out, changed := removeStray([]byte(content), from, keep)
	if !changed || hasKey(out, stray) || !hasKey(out, from) || !hasKey(out, foreign) || len(splitLines(out)) != 3 {
		t.Fatalf("got %q", out)
	}
	withKeep, _ := addLine([]byte(content), keep, keyLine("", keep, from))
	out, _ = removeStray(withKeep, from, keep)
	if !hasKey(out, keep) {
		t.Fatal("removeStray removed the key being added")
	}
}

// TestSSHScripts runs the read and write scripts with the local sh, HOME in a temp dir: bytes
// survive exactly, the compare-and-swap refuses a changed file, the mode is 600.
func TestSSHScripts(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	home := t.TempDir()
	run := func(script string) (string, int) {
		return runShell(t, "sh", home, script, script != readScript)
	}
	if out, code := run(readScript); code != 0 || out != "absent\n" {
		t.Fatalf("read missing: %q %d", out, code)
	}
	tricky := []byte("a 'quoted' line with %s and \\n and \"dq\"\r\n\ttab\x00nul\xffhigh $HOME `x`\nlast without newline")
	if _, code := run(writeScript(nil, false, tricky, true)); code != 0 {
		t.Fatalf("write new: %d", code)
	}
	f := filepath.Join(home, ".ssh", "authorized_keys")
	got, err := os.ReadFile(f)
	if err != nil || !bytes.Equal(got, tricky) {
		t.Fatalf("written %q, %v", got, err)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if st, _ := os.Stat(filepath.Dir(f)); st.Mode().Perm() != 0o700 {
		t.Fatalf("~/.ssh mode %v", st.Mode())
	}
	if out, code := run(readScript); code != 0 || out != "present\n"+string(tricky) {
		t.Fatalf("read: %q %d", out, code)
	}
	if _, code := run(writeScript([]byte("something else"), true, []byte("x\n"), true)); code != exitChanged {
		t.Fatalf("write over a changed file: exit %d", code)
	}
	if _, code := run(writeScript(nil, false, []byte("x\n"), true)); code != exitChanged {
		t.Fatalf("write expecting no file: exit %d", code)
	}
	if got, _ := os.ReadFile(f); !bytes.Equal(got, tricky) {
		t.Fatal("a refused write changed the file")
	}
	big := bytes.Repeat([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 comment\n"), 200)
	if _, code := run(writeScript(tricky, true, big, true)); code != 0 {
		t.Fatalf("write: %d", code)
	}
	if got, _ := os.ReadFile(f); !bytes.Equal(got, big) {
		t.Fatal("big content not written exactly")
	}
	if _, code := run(writeScript(big, true, nil, false)); code != 0 {
		t.Fatalf("remove: %d", code)
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Fatal("file not removed")
	}
	entries, _ := os.ReadDir(filepath.Join(home, ".ssh"))
	if len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := os.Symlink("/dev/null", f); err != nil {
		t.Fatal(err)
	}
	if _, code := run(readScript); code != exitRefused {
		t.Fatalf("read of a symlink: exit %d", code)
	}
}

func settings(kv map[string]interface{}) rotators.Settings {
	var s rotators.Settings
	kinds := map[string]rotators.FieldKind{}
	for _, f := range (Kind{}).Fields() {
		kinds[f.Name] = f.Kind
	}
	for k, v := range kv {
		s.Set(rotators.Field{Name: k, Kind: kinds[k]}, v)
	}
	return s
}

const hostKeyLine = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

func TestSSHFieldValidation(t *testing.T) {
	base := func() map[string]interface{} {
		return map[string]interface{}{
			FieldHosts: []string{"127.0.0.1:2222"}, FieldUsername: "deploy", FieldKeyType: KeyTypeEd25519,
			FieldHostKeys: []string{hostKeyLine},
		}
	}
	if _, err := (Kind{}).Bind(settings(base())); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
	cases := []struct {
		name   string
		change func(m map[string]interface{})
		want   string
	}{
		{"no hosts", func(m map[string]interface{}) { delete(m, FieldHosts) }, "hosts: required"},
		{"host without port", func(m map[string]interface{}) { m[FieldHosts] = []string{"127.0.0.1"} }, `hosts: "127.0.0.1" is not host:port`},
		{"bad port", func(m map[string]interface{}) { m[FieldHosts] = []string{"h:99999"} }, "hosts: \"h:99999\" has no valid port"},
		{"duplicate", func(m map[string]interface{}) { m[FieldHosts] = []string{"127.0.0.1:2222", "127.0.0.1:2222"} }, "listed twice"},
		{"no username", func(m map[string]interface{}) { delete(m, FieldUsername) }, "username: required"},
		{"bad key_type", func(m map[string]interface{}) { m[FieldKeyType] = "dsa" }, "key_type:"},
		{"key_bits on ed25519", func(m map[string]interface{}) { m[FieldKeyBits] = 4096 }, "key_bits: only used with key_type=rsa"},
		{"rsa bits", func(m map[string]interface{}) { m[FieldKeyType] = KeyTypeRSA; m[FieldKeyBits] = 1024 }, "key_bits: 1024 is not one of"},
		{"no host_keys", func(m map[string]interface{}) { delete(m, FieldHostKeys) }, "host_keys: required"},
		{"host_keys garbage", func(m map[string]interface{}) { m[FieldHostKeys] = []string{"nonsense"} }, "host_keys:"},
		{"host not in host_keys", func(m map[string]interface{}) { m[FieldHosts] = []string{"127.0.0.1:2223"} }, "host_keys: no line for host 127.0.0.1:2223"},
	}
	for _, c := range cases {
		m := base()
		c.change(m)
		_, err := (Kind{}).Bind(settings(m))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	m := base()
	delete(m, FieldHostKeys)
	m[FieldInsecureIgnoreHostKey] = true
	if _, err := (Kind{}).Bind(settings(m)); err != nil {
		t.Fatalf("insecure without host_keys: %v", err)
	}
	m = base()
	m[FieldKeyType] = KeyTypeRSA
	tg, err := (Kind{}).Bind(settings(m))
	if err != nil || tg.(*target).cfg.keyBits != DefaultRSABits {
		t.Fatalf("rsa default bits: %v", err)
	}
	if (Kind{}).NeedsImport(settings(base())) == "" {
		t.Fatal("ssh must need an import")
	}
}

// TestSSHKnownHostsFromCommaList: a multi-host known_hosts line split by Vault's comma list, or a
// whole file with newlines, comes back as lines.
func TestSSHKnownHostsFromCommaList(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	got, err := normalizeKnownHosts([]string{"host-a", "[10.0.0.1]:2222 " + key, "# comment\nhost-b " + key + " with, comma\n\nhost-c " + key})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"host-a,[10.0.0.1]:2222 " + key, "host-b " + key + " with, comma", "host-c " + key}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
	c, err := newHostKeyChecker(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"host-a:22", "10.0.0.1:2222", "host-c:22"} {
		if !c.knows(h) {
			t.Errorf("%s not known", h)
		}
	}
	if c.knows("10.0.0.1:22") {
		t.Error("port 22 of a [host]:port line is known")
	}
	if a := c.algorithms("host-a:22"); strings.Join(a, ",") != gossh.KeyAlgoED25519 {
		t.Errorf("algorithms %v", a)
	}
}

// TestSSHKeysGenerateAndImport: generated keys marshal to OpenSSH PEM that parses back, with the
// matching public line and fingerprint; imports accept OpenSSH and PEM and refuse the rest.
func TestSSHKeysGenerateAndImport(t *testing.T) {
	for _, typ := range []struct {
		settings map[string]interface{}
		algo     string
		bits     int
	}{
		{map[string]interface{}{FieldKeyType: KeyTypeEd25519}, gossh.KeyAlgoED25519, 0},
		{map[string]interface{}{FieldKeyType: KeyTypeRSA, FieldKeyBits: 2048}, gossh.KeyAlgoRSA, 2048},
	} {
		m := map[string]interface{}{FieldHosts: []string{"h:22"}, FieldUsername: "u", FieldInsecureIgnoreHostKey: true}
		for k, v := range typ.settings {
			m[k] = v
		}
		tg, err := (Kind{}).Bind(settings(m))
		if err != nil {
			t.Fatal(err)
		}
		s, err := tg.Generate(context.Background(), rotators.Env{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s[PartPrivateKey], "-----BEGIN OPENSSH PRIVATE KEY-----\n") {
			t.Fatalf("private key format: %.40q", s[PartPrivateKey])
		}
		signer, err := gossh.ParsePrivateKey([]byte(s[PartPrivateKey]))
		if err != nil {
			t.Fatal(err)
		}
		pub := signer.PublicKey()
		if pub.Type() != typ.algo || s[PartFingerprint] != gossh.FingerprintSHA256(pub) || !strings.HasPrefix(s[PartFingerprint], "SHA256:") {
			t.Fatalf("type %s fingerprint %s", pub.Type(), s[PartFingerprint])
		}
		lineKey, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(s[PartPublicKey]))
		if err != nil || !sameKey(lineKey, pub) || comment != KeyComment {
			t.Fatalf("public_key %q: %v", s[PartPublicKey], err)
		}
		if typ.bits != 0 {
			if n := pub.(gossh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey).N.BitLen(); n != typ.bits {
				t.Fatalf("rsa bits %d", n)
			}
		}
		// Importing the generated key gives the same secret back.
		imp, err := (Kind{}).ImportSecret(settings(m), map[string]string{FieldPrivateKey: s[PartPrivateKey]})
		if err != nil || imp[PartPublicKey] != s[PartPublicKey] || imp[PartFingerprint] != s[PartFingerprint] {
			t.Fatalf("re-import: %v", err)
		}
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	imp, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPrivateKey: string(pkcs1)})
	if err != nil || !strings.HasPrefix(imp[PartPrivateKey], "-----BEGIN OPENSSH PRIVATE KEY-----") || !strings.HasPrefix(imp[PartPublicKey], "ssh-rsa ") {
		t.Fatalf("PEM import: %v %v", err, imp[PartPublicKey])
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	enc, err := gossh.MarshalPrivateKeyWithPassphrase(edPriv, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{"garbage": "not a key", "empty": " ", "encrypted": string(pem.EncodeToMemory(enc))} {
		_, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPrivateKey: bad})
		if err == nil || !strings.HasPrefix(err.Error(), "private_key: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{}); s != nil || err != nil {
		t.Fatal("no private_key must import nothing")
	}
}
