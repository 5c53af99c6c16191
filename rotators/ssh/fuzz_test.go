package ssh

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// fuzzKeys are one private key of each type the parser knows.
func fuzzKeys(f *testing.F) []interface{} {
	f.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	return []interface{}{ed, ec, rk}
}

// privateKeyForms are the encodings of key that an import may arrive in.
func privateKeyForms(f *testing.F, key interface{}) []string {
	f.Helper()
	var out []string
	block, err := gossh.MarshalPrivateKey(key, "c")
	if err != nil {
		f.Fatal(err)
	}
	out = append(out, string(pem.EncodeToMemory(block)))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	switch k := key.(type) {
	case *rsa.PrivateKey:
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
	case *ecdsa.PrivateKey:
		der, _ := x509.MarshalECPrivateKey(k)
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	}
	return out
}

// FuzzImportPrivateKey: an imported key round-trips (the stored OpenSSH key imports again as the
// same key), and no error quotes a line of the input.
func FuzzImportPrivateKey(f *testing.F) {
	for _, key := range fuzzKeys(f) {
		for _, form := range privateKeyForms(f, key) {
			f.Add(form)
			f.Add(strings.Replace(form, "\n", "\r\n", -1))
			f.Add(form[:len(form)/2])
		}
	}
	for _, s := range []string{"", " ", "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
		"-oProxyCommand=x", "--", "\x00", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sec, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPrivateKey: in})
		if err != nil {
			for _, line := range strings.Split(in, "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && strings.Contains(err.Error(), line) {
					t.Fatalf("the error quotes the input's line %q: %v", line, err)
				}
			}
			return
		}
		again, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{FieldPrivateKey: sec[PartPrivateKey]})
		if err != nil || again[PartFingerprint] != sec[PartFingerprint] || again[PartPublicKey] != sec[PartPublicKey] {
			t.Fatalf("the stored key does not import as itself: %v", err)
		}
		pub, err := publicKeyOf(rotators.Secret{PartPublicKey: sec[PartPublicKey]})
		if err != nil || gossh.FingerprintSHA256(pub) != sec[PartFingerprint] {
			t.Fatalf("the public key line is not the key's: %v", err)
		}
	})
}

// FuzzHostKeys: host_keys as Vault hands them over (split at commas); what is accepted is
// known_hosts lines that normalize to themselves and build a checker without panicking.
func FuzzHostKeys(f *testing.F) {
	var lines []string
	for _, key := range fuzzKeys(f) {
		signer, err := gossh.NewSignerFromKey(key)
		if err != nil {
			f.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))))
	}
	for _, s := range []string{
		"10.0.0.5 " + lines[0],
		"10.0.0.5,host.example " + lines[1] + " a comment, with commas",
		"[10.0.0.5]:2222 " + lines[2] + "\n# comment\n\n10.0.0.6 " + lines[0],
		"@cert-authority *.example " + lines[0],
		"@revoked * " + lines[1],
		"|1|c2FsdA==|aGFzaA== " + lines[0],
		"-oProxyCommand=x " + lines[0],
		"-- " + lines[0],
		"host\x00 " + lines[0],
		"!*.bad,* " + lines[0],
		"host ssh-ed25519 AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		got, err := normalizeKnownHosts(strings.Split(field, ","))
		if err != nil || len(got) == 0 {
			return
		}
		for _, l := range got {
			if !parsesAsKnownHost(l) || strings.Contains(l, "\n") {
				t.Fatalf("accepted %q", l)
			}
		}
		again, err := normalizeKnownHosts(strings.Split(strings.Join(got, "\n"), ","))
		if err != nil || strings.Join(again, "\n") != strings.Join(got, "\n") {
			t.Fatalf("normalized lines %q normalize to %q, %v", got, again, err)
		}
		if _, err := newHostKeyChecker(got); err != nil && strings.Contains(err.Error(), "known-hosts-") {
			t.Fatalf("the error names the temporary file: %v", err)
		}
	})
}
