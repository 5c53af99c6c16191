package integration

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// jwtCreds reads the current value of a jwt role as its string parts and remembers its secrets.
func (s *stack) jwtCreds(t *testing.T, role string) map[string]string {
	t.Helper()
	sec := s.Read(t, "creds/"+role)
	if sec == nil {
		t.Fatalf("creds/%s: not found", role)
	}
	out := map[string]string{}
	for k, v := range sec.Data {
		if str, ok := v.(string); ok {
			out[k] = str
		}
	}
	out["version"] = fmt.Sprint(testenv.IntOf(t, sec.Data["version"]))
	s.Remember(out["private_key"], out["secret"])
	return out
}

// fetchJWKS GETs /v1/rotation/jwks/NAME over plain HTTP without a Vault token, as any relying
// party would.
func (s *stack) fetchJWKS(t *testing.T, role string) (status int, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.Vault.Addr+"/v1/"+mount+"/jwks/"+role, nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("X-Vault-Token") != "" || req.Header.Get("Authorization") != "" {
		t.Fatal("the JWKS request carries a token")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET jwks/%s: %v", role, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// jwks fetches a role's key set and checks that it is a bare RFC 7517 JWK Set served as JSON with
// only public members.
func (s *stack) jwks(t *testing.T, role string) []byte {
	t.Helper()
	status, ct, body := s.fetchJWKS(t, role)
	if status != http.StatusOK {
		t.Fatalf("GET jwks/%s without a token: %d %s", role, status, body)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		t.Fatalf("jwks Content-Type %q is not JSON", ct)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("jwks body is not JSON: %v: %s", err, body)
	}
	if len(top) != 1 || top["keys"] == nil {
		t.Fatalf("jwks body is not a bare JWK Set (top-level members other than keys): %s", body)
	}
	var keys []map[string]interface{}
	if err := json.Unmarshal(top["keys"], &keys); err != nil {
		t.Fatalf("jwks keys: %v", err)
	}
	for _, k := range keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("jwks key %v has the private member %q", k["kid"], private)
			}
		}
		if k["use"] != "sig" || k["kid"] == nil || k["alg"] == nil {
			t.Fatalf("jwks key lacks use=sig, kid or alg: %v", k)
		}
	}
	s.AssertNoSecretIn(t, "the JWKS", string(body))
	return body
}

// signJWT signs a token with a jwt role's value using go-jose, as a service reading creds does.
func signJWT(t *testing.T, c map[string]string, subject string) string {
	t.Helper()
	var key interface{}
	if c["secret"] != "" {
		b, err := base64.RawURLEncoding.DecodeString(c["secret"])
		if err != nil {
			t.Fatalf("creds secret is not base64url: %v", err)
		}
		key = b
	} else {
		block, _ := pem.Decode([]byte(c["private_key"]))
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Fatal("creds private_key is not PEM PKCS#8")
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(c["algorithm"]), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", c["kid"]))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer: "integration", Subject: subject, IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// verifyJWT verifies a token against a JWK Set document with go-jose, as a relying party does:
// find the key by kid, check the signature and the claims.
func verifyJWT(set []byte, tok, subject string) error {
	var ks jose.JSONWebKeySet
	if err := json.Unmarshal(set, &ks); err != nil {
		return err
	}
	parsed, err := josejwt.ParseSigned(tok, asymmetricAlgs)
	if err != nil {
		return err
	}
	kid := parsed.Headers[0].KeyID
	keys := ks.Key(kid)
	if len(keys) == 0 {
		return fmt.Errorf("no key with kid %q in the JWKS", kid)
	}
	if !keys[0].IsPublic() {
		return errors.New("the JWKS holds a non-public key")
	}
	var c josejwt.Claims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		return err
	}
	return c.ValidateWithLeeway(josejwt.Expected{Issuer: "integration", Subject: subject, Time: time.Now()}, time.Minute)
}

func jwkKids(t *testing.T, set []byte) []string {
	t.Helper()
	var ks jose.JSONWebKeySet
	if err := json.Unmarshal(set, &ks); err != nil {
		t.Fatal(err)
	}
	kids := []string{}
	for _, k := range ks.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// assertRoleHidesSecrets reads the role and fails when it shows a secret field or value.
func (s *stack) assertRoleHidesSecrets(t *testing.T, role string) {
	t.Helper()
	r := s.Read(t, "roles/"+role)
	if r == nil {
		t.Fatalf("roles/%s: not found", role)
	}
	for _, k := range []string{"private_key", "secret", "public_key", "value"} {
		if _, ok := r.Data[k]; ok {
			t.Fatalf("role read returns %s", k)
		}
	}
	s.AssertNoSecretIn(t, "the role read", testenv.JSONOf(t, r.Data))
}

// TestJWTRotation covers the jwt kind against a real Vault: keys from creds sign tokens that a
// JOSE library verifies against the unauthenticated JWKS, across rotations and verification_ttl.
func TestJWTRotation(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)

	t.Run("ES256: unauthenticated JWKS, previous key kept for verification_ttl", func(t *testing.T) {
		const ttl = 6 * time.Second
		created := s.Write(t, "roles/es", map[string]interface{}{
			"type": "jwt", "algorithm": "ES256", "rotation_period": "720h", "verification_ttl": "6s",
		})
		if created == nil || testenv.IntOf(t, created.Data["version"]) != 1 {
			t.Fatalf("create did not generate a key at once: %#v", created)
		}
		c1 := s.jwtCreds(t, "es")
		if c1["algorithm"] != "ES256" || c1["kid"] == "" || !strings.HasPrefix(c1["public_key"], "-----BEGIN PUBLIC KEY-----") || c1["secret"] != "" {
			t.Fatalf("creds parts: algorithm %q kid %q", c1["algorithm"], c1["kid"])
		}
		s.assertRoleHidesSecrets(t, "es")
		role := s.Read(t, "roles/es")
		if role.Data["algorithm"] != "ES256" || testenv.IntOf(t, role.Data["verification_ttl"]) != 6 || role.Data["type"] != "jwt" {
			t.Fatalf("role read: %#v", role.Data)
		}

		// The same client without a token is refused elsewhere: the JWKS path alone is open.
		if status, _, _ := s.fetchJWKSPath(t, "creds/es"); status != http.StatusForbidden {
			t.Fatalf("creds without a token: %d, want 403", status)
		}

		tok1 := signJWT(t, c1, "one")
		set := s.jwks(t, "es")
		if _, ct, _ := s.fetchJWKS(t, "es"); ct != "application/jwk-set+json" {
			t.Fatalf("jwks Content-Type %q, want application/jwk-set+json (RFC 7517 §8.5)", ct)
		}
		if kids := jwkKids(t, set); len(kids) != 1 || kids[0] != c1["kid"] {
			t.Fatalf("jwks kids %v, want [%s]", kids, c1["kid"])
		}
		if err := verifyJWT(set, tok1, "one"); err != nil {
			t.Fatalf("token signed with the current key does not verify against the JWKS: %v", err)
		}

		rot := s.Write(t, "rotate/es", nil)
		if testenv.IntOf(t, rot.Data["version"]) != 2 {
			t.Fatalf("rotate: %#v", rot.Data)
		}
		c2 := s.jwtCreds(t, "es")
		if c2["kid"] == c1["kid"] || c2["private_key"] == c1["private_key"] {
			t.Fatal("rotation did not change the key")
		}
		// created is RFC 3339 in whole seconds, so at most one second before the real retirement.
		retired, err := time.Parse(time.RFC3339, c2["created"])
		if err != nil {
			t.Fatalf("creds created %q: %v", c2["created"], err)
		}
		tok2 := signJWT(t, c2, "two")
		set = s.jwks(t, "es")
		if kids := jwkKids(t, set); strings.Join(kids, ",") != c2["kid"]+","+c1["kid"] {
			t.Fatalf("jwks after rotate: kids %v, want new then previous", kids)
		}
		if err := verifyJWT(set, tok2, "two"); err != nil {
			t.Fatalf("token signed with the new key does not verify at once: %v", err)
		}

		// Until verification_ttl has passed the previous key's tokens verify; then they stop.
		for time.Now().Before(retired.Add(ttl - 500*time.Millisecond)) {
			if err := verifyJWT(s.jwks(t, "es"), tok1, "one"); err != nil {
				t.Fatalf("token of the previous key stopped verifying %s after the rotation, before verification_ttl %s: %v",
					time.Since(retired).Round(time.Millisecond), ttl, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		testenv.Eventually(t, "the previous key leaves the JWKS", 20*time.Second, func() error {
			if verifyJWT(s.jwks(t, "es"), tok1, "one") == nil {
				return errors.New("the previous key's token still verifies")
			}
			return nil
		})
		if gone := time.Since(retired); gone < ttl-time.Second {
			t.Fatalf("previous key left after %s, before verification_ttl %s", gone, ttl)
		}
		set = s.jwks(t, "es")
		if kids := jwkKids(t, set); len(kids) != 1 || kids[0] != c2["kid"] {
			t.Fatalf("jwks after verification_ttl: %v", kids)
		}
		if err := verifyJWT(set, tok2, "two"); err != nil {
			t.Fatalf("the current key's token stopped verifying: %v", err)
		}

		// A jwt role takes no supplied value.
		_, re := s.WriteErr("rotate/es", map[string]interface{}{"value": "my-own-key"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "value: a jwt role does not take a supplied value")
		if c := s.jwtCreds(t, "es"); c["version"] != "2" {
			t.Fatalf("a refused rotate changed the version to %s", c["version"])
		}
		s.assertRoleHidesSecrets(t, "es")
	})

	t.Run("RS256 by default and EdDSA", func(t *testing.T) {
		for _, c := range []struct{ role, alg string }{{"rs", ""}, {"ed", "EdDSA"}} {
			data := map[string]interface{}{"type": "jwt", "rotation_period": "720h"}
			if c.alg != "" {
				data["algorithm"] = c.alg
			}
			s.Write(t, "roles/"+c.role, data)
			creds := s.jwtCreds(t, c.role)
			want := c.alg
			if want == "" {
				want = "RS256"
				block, _ := pem.Decode([]byte(creds["public_key"]))
				pub, err := x509.ParsePKIXPublicKey(block.Bytes)
				if err != nil || pub.(*rsa.PublicKey).N.BitLen() != 2048 {
					t.Fatalf("default RSA key: %v", err)
				}
			}
			if creds["algorithm"] != want {
				t.Fatalf("%s: algorithm %q, want %q", c.role, creds["algorithm"], want)
			}
			if got := s.Read(t, "roles/"+c.role).Data["algorithm"]; got != want {
				t.Fatalf("%s: role algorithm %v", c.role, got)
			}
			set := s.jwks(t, c.role)
			var ks jose.JSONWebKeySet
			if err := json.Unmarshal(set, &ks); err != nil || len(ks.Keys) != 1 || ks.Keys[0].Algorithm != want {
				t.Fatalf("%s: jwks %s", c.role, set)
			}
			if err := verifyJWT(set, signJWT(t, creds, c.role), c.role); err != nil {
				t.Fatalf("%s: %v", c.role, err)
			}
			s.assertRoleHidesSecrets(t, c.role)
		}
	})

	t.Run("import of a PEM key keeps its thumbprint kid", func(t *testing.T) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(k)
		sec1 := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		s.Remember(sec1)
		res := s.Write(t, "roles/imported", map[string]interface{}{
			"type": "jwt", "algorithm": "ES256", "rotation_period": "720h", "private_key": sec1,
		})
		if res != nil && res.Data["version"] != nil {
			t.Fatalf("import rotated instead of importing: %#v", res.Data)
		}
		creds := s.jwtCreds(t, "imported")
		thumb, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if creds["version"] != "1" || creds["kid"] != base64.RawURLEncoding.EncodeToString(thumb) {
			t.Fatalf("imported: version %s kid %q", creds["version"], creds["kid"])
		}
		if err := verifyJWT(s.jwks(t, "imported"), signJWT(t, creds, "imp"), "imp"); err != nil {
			t.Fatal(err)
		}
		s.assertRoleHidesSecrets(t, "imported")
	})

	t.Run("HS256: the JWKS never has the secret", func(t *testing.T) {
		s.Write(t, "roles/hs", map[string]interface{}{"type": "jwt", "algorithm": "HS256", "rotation_period": "720h"})
		creds := s.jwtCreds(t, "hs")
		key, err := base64.RawURLEncoding.DecodeString(creds["secret"])
		if err != nil || len(key) != 32 {
			t.Fatalf("HS256 secret: %d bytes, %v", len(key), err)
		}
		if creds["private_key"] != "" || creds["public_key"] != "" || creds["kid"] == "" {
			t.Fatalf("HS256 creds parts: %v", keysOf(creds))
		}
		tok := signJWT(t, creds, "hs")
		parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.HS256})
		if err != nil {
			t.Fatal(err)
		}
		var claims josejwt.Claims
		if err := parsed.Claims(key, &claims); err != nil || claims.Subject != "hs" {
			t.Fatalf("HS256 token does not verify with the creds secret: %v", err)
		}
		set := s.jwks(t, "hs")
		if string(set) != `{"keys":[]}` {
			t.Fatalf("HS256 jwks = %s, want an empty set", set)
		}
		s.Write(t, "rotate/hs", nil)
		s.jwtCreds(t, "hs")
		if set := s.jwks(t, "hs"); string(set) != `{"keys":[]}` {
			t.Fatalf("HS256 jwks after a rotation = %s", set)
		}
		s.assertRoleHidesSecrets(t, "hs")
	})

	t.Run("missing role, and a role that publishes nothing, answer alike", func(t *testing.T) {
		status, _, missing := s.fetchJWKS(t, "no-such-role")
		if status != http.StatusNotFound {
			t.Fatalf("jwks of a missing role: %d, want 404", status)
		}
		// A token role exists but publishes no key set: a stranger must not learn that it exists
		// nor its type.
		s.Write(t, "roles/no-keys", map[string]interface{}{"type": "token", "rotation_period": "2160h"})
		status, _, other := s.fetchJWKS(t, "no-keys")
		if status != http.StatusNotFound {
			t.Fatalf("jwks of a role that publishes nothing: %d, want 404", status)
		}
		if got, want := strings.ReplaceAll(string(other), "no-keys", "NAME"), strings.ReplaceAll(string(missing), "no-such-role", "NAME"); got != want {
			t.Fatalf("the answers differ: %q for an existing token role, %q for a missing role", got, want)
		}
	})

	t.Run("bad input is a 400 naming the field", func(t *testing.T) {
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
		p384PEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}))
		_, edKey, _ := ed25519.GenerateKey(rand.Reader)
		edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
		edPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}))
		s.Remember(p384PEM, edPEM)
		base := func(kv ...interface{}) map[string]interface{} {
			m := map[string]interface{}{"type": "jwt", "rotation_period": "720h"}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		}
		cases := []struct {
			name string
			data map[string]interface{}
			want string
		}{
			{"unsupported algorithm", base("algorithm", "ES512"), `algorithm: "ES512" is not one of`},
			{"none algorithm", base("algorithm", "none"), `algorithm: "none" is not one of`},
			{"key size not allowed", base("key_bits", 1024), "key_bits: 1024 is not one of 2048, 3072, 4096"},
			{"key_bits on ES256", base("algorithm", "ES256", "key_bits", 2048), "key_bits: only for RSA algorithms"},
			{"key_bits on HS512", base("algorithm", "HS512", "key_bits", 4096), "key_bits: only for RSA algorithms"},
			{"negative verification_ttl", base("verification_ttl", "-5s"), `field "verification_ttl": cannot provide negative value`},
			{"private_key that does not parse", base("algorithm", "ES256", "private_key", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"), "private_key: "},
			{"private_key not PEM", base("private_key", "hello"), "private_key: not a PEM private key"},
			{"private_key of another curve", base("algorithm", "ES256", "private_key", p384PEM), "private_key: an ECDSA P-384 key does not fit algorithm=ES256"},
			{"private_key of another algorithm", base("private_key", edPEM), "private_key: an Ed25519 key does not fit algorithm=RS256"},
			{"short HS256 secret", base("algorithm", "HS256", "private_key", base64.RawURLEncoding.EncodeToString([]byte("short"))), "private_key: for HS256 give a secret of at least 32 bytes"},
			{"field of another type", base("connection_url", "postgres://x"), "connection_url: not a field of a jwt role"},
		}
		for i, c := range cases {
			role := fmt.Sprintf("bad-%d", i)
			_, re := s.WriteErr("roles/"+role, c.data)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, c.want)
			s.AssertNoSecretIn(t, "the error of "+c.name, strings.Join(re.Errors, " "))
			if s.Read(t, "roles/"+role) != nil {
				t.Fatalf("%s: the role was created", c.name)
			}
		}
		// The same checks on update, and key_bits=0 unsets it so that an RSA role can change algorithm.
		s.Write(t, "roles/upd", map[string]interface{}{"type": "jwt", "rotation_period": "720h", "key_bits": 3072})
		_, re := s.WriteErr("roles/upd", map[string]interface{}{"algorithm": "ES256"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "key_bits: only for RSA algorithms")
		_, re = s.WriteErr("roles/upd", map[string]interface{}{"verification_ttl": -1})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, `field "verification_ttl": cannot provide negative value`)
		s.Write(t, "roles/upd", map[string]interface{}{"algorithm": "ES256", "key_bits": 0, "verification_ttl": 0})
		s.Write(t, "rotate/upd", nil)
		creds := s.jwtCreds(t, "upd")
		if creds["algorithm"] != "ES256" {
			t.Fatalf("after the algorithm change: %s", creds["algorithm"])
		}
		// verification_ttl=0: the retired RSA key left at once.
		set := s.jwks(t, "upd")
		if kids := jwkKids(t, set); len(kids) != 1 || kids[0] != creds["kid"] {
			t.Fatalf("jwks with verification_ttl=0: %v", kids)
		}
	})
}

// fetchJWKSPath GETs any rotation/ path without a token (to contrast with the JWKS).
func (s *stack) fetchJWKSPath(t *testing.T, path string) (int, string, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.Vault.Addr + "/v1/" + mount + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func keysOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		if v != "" {
			out = append(out, k)
		}
	}
	return out
}
