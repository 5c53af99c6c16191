package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// FuzzImportPrivateKey: for every algorithm, an imported private_key (PEM PKCS#8, PKCS#1,
// SEC1, or an HMAC secret) fits the algorithm, is well formed (Verify), and imports again as the
// same key from what creds returns; no error quotes a line of the input.
func FuzzImportPrivateKey(f *testing.F) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "EdDSA", "HS256"} {
		s := settings(FieldAlgorithm, alg)
		sec := generateF(f, s)
		for _, form := range keyForms(f, sec) {
			f.Add(alg, form)
			f.Add(alg, form[:len(form)/2])
		}
	}
	for _, s := range []string{"", "-oProxyCommand=x", "--", "\x00", strings.Repeat("A", 86), strings.Repeat("A", 43) + "=",
		"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"} {
		f.Add("ES256", s)
		f.Add("HS512", s)
	}
	f.Fuzz(func(t *testing.T, alg, in string) {
		s := settings(FieldAlgorithm, alg)
		if _, err := parseConfig(s); err != nil {
			return
		}
		sec, err := (Kind{}).ImportSecret(s, map[string]string{FieldPrivateKey: in})
		if err != nil {
			for _, line := range strings.Split(in, "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && strings.Contains(err.Error(), line) {
					t.Fatalf("the error quotes the input's line %q: %v", line, err)
				}
			}
			return
		}
		tg, err := (Kind{}).Bind(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Verify(t.Context(), rotators.Env{}, sec); err != nil {
			t.Fatalf("an imported %s key does not verify: %v", alg, err)
		}
		again := sec[PartPrivateKey]
		if again == "" {
			again = sec[PartSecret]
		}
		sec2, err := (Kind{}).ImportSecret(s, map[string]string{FieldPrivateKey: again})
		// A key pair's kid is its thumbprint; an HMAC secret's kid is random.
		sameKey := sec2[PartSecret] == sec[PartSecret] && (sec[PartPrivateKey] == "" || sec2[PartKID] == sec[PartKID])
		if err != nil || !sameKey {
			t.Fatalf("what creds returns does not import as the same key: %v", err)
		}
	})
}

func generateF(f *testing.F, s rotators.Settings) rotators.Secret {
	f.Helper()
	tg, err := (Kind{}).Bind(s)
	if err != nil {
		f.Fatal(err)
	}
	sec, err := tg.Generate(f.Context(), rotators.Env{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	return sec
}

// keyForms are the encodings a value may be imported in.
func keyForms(f *testing.F, sec rotators.Secret) []string {
	f.Helper()
	if sec[PartSecret] != "" {
		raw, err := base64.RawURLEncoding.DecodeString(sec[PartSecret])
		if err != nil {
			f.Fatal(err)
		}
		return []string{sec[PartSecret], base64.StdEncoding.EncodeToString(raw)}
	}
	out := []string{sec[PartPrivateKey]}
	priv, err := parsePrivateKeyPEM(sec[PartPrivateKey])
	if err != nil {
		f.Fatal(err)
	}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			f.Fatal(err)
		}
		sec1 := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		out = append(out, sec1, "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"+sec1)
	case ed25519.PrivateKey:
	}
	return out
}
