package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func settings(kv ...interface{}) rotators.Settings {
	var s rotators.Settings
	fields := map[string]rotators.Field{}
	for _, f := range (Kind{}).Fields() {
		fields[f.Name] = f
	}
	for i := 0; i+1 < len(kv); i += 2 {
		f, ok := fields[kv[i].(string)]
		if !ok {
			panic(kv[i])
		}
		s.Set(f, kv[i+1])
	}
	return s
}

func generate(t *testing.T, s rotators.Settings) rotators.Secret {
	t.Helper()
	tg, err := Kind{}.Bind(s)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	sec, err := tg.Generate(context.Background(), rotators.Env{}, nil)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if err := tg.Verify(context.Background(), rotators.Env{}, sec); err != nil {
		t.Fatalf("Verify of a generated value: %v", err)
	}
	return sec
}

// signToken signs a JWT with the value the way a service that read creds would.
func signToken(t *testing.T, sec rotators.Secret) string {
	t.Helper()
	var key interface{}
	if sec[PartSecret] != "" {
		b, err := base64.RawURLEncoding.DecodeString(sec[PartSecret])
		if err != nil {
			t.Fatal(err)
		}
		key = b
	} else {
		block, _ := pem.Decode([]byte(sec[PartPrivateKey]))
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Fatalf("private_key is not PEM PKCS#8")
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(sec[PartAlgorithm]), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", sec[PartKID]))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(signer).Claims(josejwt.Claims{Subject: "alice", Expiry: josejwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verifyWithSet verifies a token against a JWK Set document the way a relying party does.
func verifyWithSet(doc []byte, tok string) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		return err
	}
	parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA})
	if err != nil {
		return err
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) == 0 {
		return fmt.Errorf("no key with kid %q in the set", parsed.Headers[0].KeyID)
	}
	var c josejwt.Claims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		return err
	}
	if c.Subject != "alice" {
		return errors.New("wrong subject")
	}
	return nil
}

func TestEveryAlgorithmGenerateSignVerify(t *testing.T) {
	for _, alg := range algorithmNames() {
		t.Run(alg, func(t *testing.T) {
			s := settings(FieldAlgorithm, alg)
			sec := generate(t, s)
			if sec[PartAlgorithm] != alg || sec[PartKID] == "" {
				t.Fatalf("parts: algorithm %q kid %q", sec[PartAlgorithm], sec[PartKID])
			}
			tok := signToken(t, sec)
			doc, err := Kind{}.KeySet(s, []rotators.Published{{Secret: sec, Created: time.Now()}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			a, _ := lookupAlgorithm(alg)
			if a.family == familyHMAC {
				if string(doc) != `{"keys":[]}` {
					t.Fatalf("HMAC role key set = %s", doc)
				}
				if _, ok := sec[PartPrivateKey]; ok {
					t.Fatal("HMAC value has a private_key")
				}
				key, _ := base64.RawURLEncoding.DecodeString(sec[PartSecret])
				if len(key) != a.secretBytes {
					t.Fatalf("secret is %d bytes, want %d", len(key), a.secretBytes)
				}
				parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{a.jose})
				if err != nil {
					t.Fatal(err)
				}
				var c josejwt.Claims
				if err := parsed.Claims(key, &c); err != nil || c.Subject != "alice" {
					t.Fatalf("HMAC token does not verify with the secret: %v", err)
				}
				return
			}
			if err := verifyWithSet(doc, tok); err != nil {
				t.Fatalf("token does not verify against the key set: %v", err)
			}
			for _, p := range []string{PartPrivateKey, PartPublicKey} {
				if !strings.HasPrefix(sec[p], "-----BEGIN ") {
					t.Fatalf("%s is not PEM", p)
				}
			}
			if _, ok := sec[PartSecret]; ok {
				t.Fatal("key pair value has a secret part")
			}
		})
	}
}

func TestGeneratedValuesDiffer(t *testing.T) {
	for _, alg := range []string{"ES256", "HS256"} {
		s := settings(FieldAlgorithm, alg)
		a, b := generate(t, s), generate(t, s)
		if a[PartKID] == b[PartKID] || a.Equal(b) {
			t.Fatalf("%s: two generated values share a kid or are equal", alg)
		}
	}
}

func TestRSAKeyBits(t *testing.T) {
	for _, bits := range []int64{0, 2048, 3072} {
		s := settings(FieldAlgorithm, "PS256")
		if bits != 0 {
			s = settings(FieldAlgorithm, "PS256", FieldKeyBits, bits)
		}
		sec := generate(t, s)
		priv, err := parsePrivateKeyPEM(sec[PartPrivateKey])
		if err != nil {
			t.Fatal(err)
		}
		want := int(bits)
		if want == 0 {
			want = DefaultKeyBits
		}
		if got := priv.(*rsa.PrivateKey).N.BitLen(); got != want {
			t.Fatalf("key_bits %d: generated %d bits", bits, got)
		}
	}
}

func TestKIDIsRFC7638Thumbprint(t *testing.T) {
	sec := generate(t, settings(FieldAlgorithm, "ES256"))
	pub, err := parsePublicKeyPEM(sec[PartPublicKey])
	if err != nil {
		t.Fatal(err)
	}
	ec := pub.(*ecdsa.PublicKey)
	// RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
	raw, err := ec.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	input := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, enc(raw[1:33]), enc(raw[33:]))
	sum := sha256.Sum256([]byte(input))
	if want := enc(sum[:]); sec[PartKID] != want {
		t.Fatalf("kid %q, RFC 7638 thumbprint %q", sec[PartKID], want)
	}

	// Ed25519 (RFC 8037 §2): crv, kty, x.
	sec = generate(t, settings(FieldAlgorithm, "EdDSA"))
	pub, _ = parsePublicKeyPEM(sec[PartPublicKey])
	input = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, enc(pub.(ed25519.PublicKey)))
	sum = sha256.Sum256([]byte(input))
	if want := enc(sum[:]); sec[PartKID] != want {
		t.Fatalf("Ed25519 kid %q, thumbprint %q", sec[PartKID], want)
	}

	// RSA: e, kty, n.
	sec = generate(t, settings(FieldAlgorithm, "RS256"))
	pub, _ = parsePublicKeyPEM(sec[PartPublicKey])
	rk := pub.(*rsa.PublicKey)
	input = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, enc(big.NewInt(int64(rk.E)).Bytes()), enc(rk.N.Bytes()))
	sum = sha256.Sum256([]byte(input))
	if want := enc(sum[:]); sec[PartKID] != want {
		t.Fatalf("RSA kid %q, thumbprint %q", sec[PartKID], want)
	}
}

func TestKIDStableAcrossImport(t *testing.T) {
	for _, alg := range []string{"RS256", "ES384", "EdDSA"} {
		s := settings(FieldAlgorithm, alg)
		sec := generate(t, s)
		imported, err := Kind{}.ImportSecret(s, map[string]string{FieldPrivateKey: sec[PartPrivateKey]})
		if err != nil {
			t.Fatalf("%s: re-import: %v", alg, err)
		}
		if imported[PartKID] != sec[PartKID] || imported[PartPublicKey] != sec[PartPublicKey] || imported[PartPrivateKey] != sec[PartPrivateKey] {
			t.Fatalf("%s: re-import changed the value", alg)
		}
	}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func mustPKCS8(t *testing.T, k interface{}) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func mustSEC1(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

func TestImportPEMForms(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	// `openssl ecparam -genkey` writes the curve's parameters before the key.
	ecParams := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"

	cases := []struct {
		name, alg, pem string
		pub            crypto.PublicKey
	}{
		{"PKCS#8 RSA", "RS256", mustPKCS8(t, rsaKey), rsaKey.Public()},
		{"PKCS#1 RSA", "RS512", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey.Public()},
		{"PKCS#1 RSA for PS256", "PS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey.Public()},
		{"PKCS#8 P-256", "ES256", mustPKCS8(t, p256), p256.Public()},
		{"SEC1 P-256", "ES256", mustSEC1(t, p256), p256.Public()},
		{"SEC1 P-256 after EC PARAMETERS", "ES256", ecParams + mustSEC1(t, p256), p256.Public()},
		{"SEC1 P-384", "ES384", mustSEC1(t, p384), p384.Public()},
		{"PKCS#8 Ed25519", "EdDSA", mustPKCS8(t, edKey), edKey.Public()},
		{"surrounding whitespace", "ES384", "\n  " + mustPKCS8(t, p384) + "\n\n", p384.Public()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := settings(FieldAlgorithm, c.alg)
			sec, err := Kind{}.ImportSecret(s, map[string]string{FieldPrivateKey: c.pem})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if sec[PartAlgorithm] != c.alg || !strings.HasPrefix(sec[PartPrivateKey], "-----BEGIN PRIVATE KEY-----") {
				t.Fatalf("imported value: algorithm %q, private key not stored as PKCS#8", sec[PartAlgorithm])
			}
			kid, _ := thumbprint(c.pub)
			if sec[PartKID] != kid {
				t.Fatal("imported kid is not the key's thumbprint")
			}
			tg, _ := Kind{}.Bind(s)
			if err := tg.Verify(context.Background(), rotators.Env{}, sec); err != nil {
				t.Fatalf("Verify of an imported value: %v", err)
			}
			doc, _ := Kind{}.KeySet(s, []rotators.Published{{Secret: sec}}, time.Now())
			if err := verifyWithSet(doc, signToken(t, sec)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestImportRejects(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(p256.Public())
	enc := base64.RawURLEncoding.EncodeToString

	cases := []struct {
		name, alg, value, want string
		extra                  []interface{}
	}{
		{"garbage", "RS256", "not a key at all", "not a PEM private key", nil},
		{"empty", "RS256", "  ", "empty", nil},
		{"public key", "ES256", pemOf("PUBLIC KEY", pubDER), `"PUBLIC KEY" block, not a private key`, nil},
		{"broken DER", "ES256", pemOf("EC PRIVATE KEY", []byte("junk")), "does not parse", nil},
		{"two keys", "ES256", mustPKCS8(t, p256) + mustPKCS8(t, p256), "more than one PEM block", nil},
		{"encrypted", "RS256", pemOf("ENCRYPTED PRIVATE KEY", []byte("x")), "encrypted", nil},
		{"EC for RS256", "RS256", mustPKCS8(t, p256), "an ECDSA P-256 key does not fit algorithm=RS256", nil},
		{"P-384 for ES256", "ES256", mustSEC1(t, p384), "an ECDSA P-384 key does not fit algorithm=ES256, which needs an ECDSA P-256 key", nil},
		{"RSA for EdDSA", "EdDSA", mustPKCS8(t, rsaKey), "a 2048-bit RSA key does not fit algorithm=EdDSA", nil},
		{"Ed25519 for ES384", "ES384", mustPKCS8(t, edKey), "an Ed25519 key does not fit", nil},
		{"RSA 1024", "RS256", mustPKCS8(t, rsa1024), "a 1024-bit RSA key does not fit algorithm=RS256, which needs an RSA key of at least 2048 bits", nil},
		{"RSA size differs from key_bits", "RS256", mustPKCS8(t, rsaKey), "a 2048-bit RSA key, but key_bits is 4096", []interface{}{FieldKeyBits, int64(4096)}},
		{"PEM for HS256", "HS256", mustPKCS8(t, p256), "for HS256 give a secret of at least 32 bytes, base64url", nil},
		{"short HS256 secret", "HS256", enc(make([]byte, 31)), "at least 32 bytes", nil},
		{"short HS512 secret", "HS512", enc(make([]byte, 32)), "at least 64 bytes", nil},
		{"HS256 secret not base64", "HS256", "this is not base64 at all!!", "base64url", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := settings(append([]interface{}{FieldAlgorithm, c.alg}, c.extra...)...)
			_, err := Kind{}.ImportSecret(s, map[string]string{FieldPrivateKey: c.value})
			if err == nil {
				t.Fatal("import accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "private_key: ") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want private_key: ...%s", msg, c.want)
			}
			if v := strings.TrimSpace(c.value); len(v) > 60 && strings.Contains(msg, v[30:60]) {
				t.Fatal("error quotes the supplied key")
			}
		})
	}
}

func TestImportHMAC(t *testing.T) {
	raw := make([]byte, 48)
	rand.Read(raw)
	for _, form := range []string{
		base64.RawURLEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw),
		base64.StdEncoding.EncodeToString(raw),
	} {
		s := settings(FieldAlgorithm, "HS256")
		sec, err := Kind{}.ImportSecret(s, map[string]string{FieldPrivateKey: form})
		if err != nil {
			t.Fatal(err)
		}
		if sec[PartSecret] != base64.RawURLEncoding.EncodeToString(raw) {
			t.Fatal("imported secret changed")
		}
		if len(sec[PartKID]) != 22 {
			t.Fatalf("HMAC kid %q is not 16 bytes of base64url", sec[PartKID])
		}
		tg, _ := Kind{}.Bind(s)
		if err := tg.Verify(context.Background(), rotators.Env{}, sec); err != nil {
			t.Fatal(err)
		}
	}
	if sec, err := (Kind{}).ImportSecret(settings(), map[string]string{}); sec != nil || err != nil {
		t.Fatalf("no private_key supplied: %v %v", sec, err)
	}
}

func TestBindRejects(t *testing.T) {
	cases := []struct {
		s    rotators.Settings
		want string
	}{
		{settings(FieldAlgorithm, "HS384"), `algorithm: "HS384" is not one of RS256, RS384, RS512, PS256, ES256, ES384, EdDSA, HS256, HS512`},
		{settings(FieldAlgorithm, "none"), `algorithm: "none" is not one of`},
		{settings(FieldKeyBits, int64(1024)), "key_bits: 1024 is not one of 2048, 3072, 4096"},
		{settings(FieldAlgorithm, "RS256", FieldKeyBits, int64(8192)), "key_bits: 8192 is not one of"},
		{settings(FieldAlgorithm, "ES256", FieldKeyBits, int64(2048)), "key_bits: only for RSA algorithms (RS256, RS384, RS512, PS256), not ES256"},
		{settings(FieldAlgorithm, "HS256", FieldKeyBits, int64(4096)), "key_bits: only for RSA algorithms"},
		{settings(FieldVerificationTTL, int64(-5)), "verification_ttl: must be between 0s and 8760h"},
		{settings(FieldVerificationTTL, int64(MaxVerificationTTL/time.Second)+1), "verification_ttl: must be between 0s and 8760h"},
	}
	for _, c := range cases {
		_, err := Kind{}.Bind(c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Bind(%+v) = %v, want %q", c.s, err, c.want)
		}
	}
	for _, ok := range []rotators.Settings{
		settings(),
		settings(FieldAlgorithm, "ES256", FieldKeyBits, int64(0)), // 0 = unset, so a role can leave RSA
		settings(FieldAlgorithm, "RS384", FieldKeyBits, int64(4096), FieldVerificationTTL, int64(0)),
	} {
		if _, err := (Kind{}).Bind(ok); err != nil {
			t.Errorf("Bind(%+v) = %v", ok, err)
		}
	}
}

func TestFieldsMatchAlgorithms(t *testing.T) {
	for _, f := range (Kind{}).Fields() {
		if f.Name == FieldAlgorithm {
			if strings.Join(f.Allowed, ",") != "RS256,RS384,RS512,PS256,ES256,ES384,EdDSA,HS256,HS512" || f.Default != DefaultAlgorithm {
				t.Fatalf("algorithm field: %+v", f)
			}
		}
		if f.Name == FieldKeyBits && f.Default != nil {
			t.Fatal("key_bits must have no Field default: it would be set on non-RSA roles at create")
		}
	}
	if (Kind{}).NeedsImport(settings()) != "" {
		t.Fatal("jwt can always generate")
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	good := generate(t, settings(FieldAlgorithm, "ES256"))
	other := generate(t, settings(FieldAlgorithm, "ES256"))
	hs := generate(t, settings(FieldAlgorithm, "HS256"))
	tg, _ := Kind{}.Bind(settings(FieldAlgorithm, "ES256"))
	mutate := func(base rotators.Secret, k, v string) rotators.Secret {
		c := base.Clone()
		if v == "" {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	cases := map[string]rotators.Secret{
		"no algorithm":             mutate(good, PartAlgorithm, ""),
		"unknown algorithm":        mutate(good, PartAlgorithm, "none"),
		"wrong algorithm for key":  mutate(good, PartAlgorithm, "ES384"),
		"no kid":                   mutate(good, PartKID, ""),
		"wrong kid":                mutate(good, PartKID, other[PartKID]),
		"public key of other pair": mutate(good, PartPublicKey, other[PartPublicKey]),
		"no private key":           mutate(good, PartPrivateKey, ""),
		"HMAC secret not base64":   mutate(hs, PartSecret, "!!!"),
		"HMAC secret too short":    mutate(hs, PartSecret, base64.RawURLEncoding.EncodeToString(make([]byte, 8))),
	}
	for name, sec := range cases {
		if err := tg.Verify(context.Background(), rotators.Env{}, sec); err == nil {
			t.Errorf("%s: Verify accepted", name)
		} else if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), good[PartPrivateKey][40:70]) {
			t.Errorf("%s: error quotes key material: %v", name, err)
		}
	}
	// Verify follows the value's own algorithm, so a value kept from before an algorithm change
	// (e.g. a rollback target) still verifies.
	if err := tg.Verify(context.Background(), rotators.Env{}, hs); err != nil {
		t.Fatalf("HS256 value under an ES256 role: %v", err)
	}
}

func TestApplyIsNoOp(t *testing.T) {
	tg, _ := Kind{}.Bind(settings())
	if err := tg.Apply(context.Background(), rotators.Env{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if d := (Kind{}).Describe(settings(), nil); len(d) != 0 {
		t.Fatalf("Describe = %v", d)
	}
}

// kids returns the kids of a key set document in order.
func kids(t *testing.T, doc []byte) []string {
	t.Helper()
	var set struct {
		Keys []map[string]interface{} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, k := range set.Keys {
		out = append(out, k["kid"].(string))
	}
	return out
}

func TestKeySetFiltersByVerificationTTL(t *testing.T) {
	s := settings(FieldAlgorithm, "ES256", FieldVerificationTTL, int64(24*3600))
	v1, v2, v3 := generate(t, s), generate(t, s), generate(t, s)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// Newest first, Retired = when the next value was created (as Engine.KeySet builds it).
	values := []rotators.Published{
		{Secret: v3, Created: t0.Add(2 * day)},
		{Secret: v2, Created: t0.Add(day), Retired: t0.Add(2 * day)},
		{Secret: v1, Created: t0, Retired: t0.Add(day)},
	}
	cases := []struct {
		name string
		s    rotators.Settings
		now  time.Time
		want []string
	}{
		{"both retired inside ttl", s, t0.Add(day + time.Hour), []string{v3[PartKID], v2[PartKID], v1[PartKID]}},
		{"oldest just before its end", s, t0.Add(2*day - time.Nanosecond), []string{v3[PartKID], v2[PartKID], v1[PartKID]}},
		{"oldest exactly at its end is out", s, t0.Add(2 * day), []string{v3[PartKID], v2[PartKID]}},
		{"one retired inside ttl", s, t0.Add(2*day + time.Hour), []string{v3[PartKID], v2[PartKID]}},
		{"all retired past ttl", s, t0.Add(3*day + time.Second), []string{v3[PartKID]}},
		{"current never expires", s, t0.Add(365 * day), []string{v3[PartKID]}},
		{"ttl 0 drops retired at once", settings(FieldAlgorithm, "ES256", FieldVerificationTTL, int64(0)), t0.Add(2 * day), []string{v3[PartKID]}},
		{"default ttl is 24h", settings(FieldAlgorithm, "ES256"), t0.Add(2*day + 23*time.Hour), []string{v3[PartKID], v2[PartKID]}},
	}
	for _, c := range cases {
		doc, err := Kind{}.KeySet(c.s, values, c.now)
		if err != nil {
			t.Fatal(err)
		}
		got := kids(t, doc)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: kids %v, want %v", c.name, got, c.want)
		}
		// The engine keeps exactly the values the key set still publishes (rotators.Retainer).
		for i, v := range values {
			published := strings.Contains(strings.Join(got, ","), v.Secret[PartKID])
			if needed := (Kind{}).StillNeeded(c.s, v, c.now); needed != published {
				t.Errorf("%s: value %d StillNeeded = %v, but published = %v", c.name, i, needed, published)
			}
		}
		checkKeySetChanges(t, c.name, c.s, values, c.now, doc)
	}
}

// checkKeySetChanges: the document built at now stays the same until KeySetChanges says, and is
// another one from then on (the engine caches it until then).
func checkKeySetChanges(t *testing.T, name string, s rotators.Settings, values []rotators.Published, now time.Time, doc []byte) {
	t.Helper()
	until := (Kind{}).KeySetChanges(s, values, now)
	last := now.Add(1000 * 24 * time.Hour) // beyond every window: stands for "never"
	if !until.IsZero() {
		if !until.After(now) {
			t.Fatalf("%s: KeySetChanges %v is not after now %v", name, until, now)
		}
		last = until.Add(-time.Nanosecond)
		if after, _ := (Kind{}).KeySet(s, values, until); string(after) == string(doc) {
			t.Errorf("%s: the document at KeySetChanges (%v) is unchanged", name, until)
		}
	}
	if same, _ := (Kind{}).KeySet(s, values, last); string(same) != string(doc) {
		t.Errorf("%s: the document changed before KeySetChanges (%v)", name, until)
	}
}

// The largest value the kind generates (an RSA-4096 key pair) fits the engine's bound on one kept
// value, so that 100 kept versions fit in one storage entry.
func TestLargestValueFitsStorageBound(t *testing.T) {
	sec := generate(t, settings(FieldAlgorithm, "PS256", FieldKeyBits, int64(4096)))
	if err := rotators.CheckValueSize("value", sec); err != nil {
		t.Fatal(err)
	}
	if n := rotators.ValueSize(sec); n < 4000 {
		t.Fatalf("an RSA-4096 value takes %d bytes: not the largest case", n)
	}
}

func TestKeySetDeduplicatesAndMixesAlgorithms(t *testing.T) {
	es := generate(t, settings(FieldAlgorithm, "ES256"))
	ed := generate(t, settings(FieldAlgorithm, "EdDSA"))
	hs := generate(t, settings(FieldAlgorithm, "HS512"))
	now := time.Now()
	// A rollback re-promotes an old value: the same kid twice. An algorithm change leaves
	// values of another algorithm; the HMAC one is never published.
	values := []rotators.Published{
		{Secret: es, Created: now},
		{Secret: hs, Created: now.Add(-time.Minute), Retired: now},
		{Secret: ed, Created: now.Add(-2 * time.Minute), Retired: now.Add(-time.Minute)},
		{Secret: es, Created: now.Add(-3 * time.Minute), Retired: now.Add(-2 * time.Minute)},
	}
	doc, err := Kind{}.KeySet(settings(FieldAlgorithm, "ES256"), values, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(t, doc); strings.Join(got, ",") != es[PartKID]+","+ed[PartKID] {
		t.Fatalf("kids %v", got)
	}
	if strings.Contains(string(doc), hs[PartKID]) || strings.Contains(string(doc), hs[PartSecret]) {
		t.Fatal("the HMAC value appears in the key set")
	}
	if err := verifyWithSet(doc, signToken(t, ed)); err != nil {
		t.Fatalf("retired EdDSA key: %v", err)
	}
}

func TestKeySetHasOnlyPublicMembers(t *testing.T) {
	now := time.Now()
	var values []rotators.Published
	for i, alg := range algorithmNames() {
		p := rotators.Published{Secret: generate(t, settings(FieldAlgorithm, alg)), Created: now.Add(-time.Duration(i) * time.Minute)}
		if i > 0 {
			p.Retired = values[i-1].Created
		}
		values = append(values, p)
	}
	doc, err := Kind{}.KeySet(settings(), values, now)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top["keys"] == nil {
		t.Fatalf("not a bare JWK Set: %s", doc)
	}
	var keys []map[string]interface{}
	if err := json.Unmarshal(top["keys"], &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 7 {
		t.Fatalf("%d keys, want the 7 asymmetric ones", len(keys))
	}
	allowed := map[string]bool{"kty": true, "kid": true, "alg": true, "use": true, "n": true, "e": true, "crv": true, "x": true, "y": true}
	for i, k := range keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[private]; ok {
				t.Fatalf("key %d has private member %q", i, private)
			}
		}
		for m := range k {
			if !allowed[m] {
				t.Fatalf("key %d has unexpected member %q", i, m)
			}
		}
		if k["use"] != "sig" || k["alg"] != algorithmNames()[i] || k["kid"] != values[i].Secret[PartKID] {
			t.Fatalf("key %d: use %v alg %v kid %v", i, k["use"], k["alg"], k["kid"])
		}
	}
	for _, v := range values {
		for _, p := range []string{PartPrivateKey, PartSecret} {
			if v.Secret[p] != "" && strings.Contains(string(doc), v.Secret[p]) {
				t.Fatalf("%s appears in the key set", p)
			}
		}
	}
}

func TestKeySetEmptyForHMACRole(t *testing.T) {
	s := settings(FieldAlgorithm, "HS256")
	sec := generate(t, s)
	doc, err := Kind{}.KeySet(s, []rotators.Published{{Secret: sec, Created: time.Now()}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != `{"keys":[]}` {
		t.Fatalf("HS256 key set = %s", doc)
	}
	doc, _ = Kind{}.KeySet(s, nil, time.Now())
	if string(doc) != `{"keys":[]}` {
		t.Fatalf("key set of a role without values = %s", doc)
	}
}

func TestKeySetRejectsCorruptValue(t *testing.T) {
	good := generate(t, settings(FieldAlgorithm, "ES256"))
	other := generate(t, settings(FieldAlgorithm, "EdDSA"))
	for name, sec := range map[string]rotators.Secret{
		"no public key":        {PartAlgorithm: "ES256", PartKID: "x", PartPrivateKey: "junk"},
		"unknown algorithm":    {PartAlgorithm: "none", PartKID: good[PartKID], PartPublicKey: good[PartPublicKey]},
		"key of another alg":   {PartAlgorithm: "ES384", PartKID: good[PartKID], PartPublicKey: good[PartPublicKey]},
		"kid not a thumbprint": {PartAlgorithm: "ES256", PartKID: other[PartKID], PartPublicKey: good[PartPublicKey]},
	} {
		_, err := Kind{}.KeySet(settings(), []rotators.Published{{Secret: sec}}, time.Now())
		if err == nil || strings.Contains(err.Error(), "junk") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The key set needs only the public parts.
	pubOnly := rotators.Secret{PartAlgorithm: "ES256", PartKID: good[PartKID], PartPublicKey: good[PartPublicKey]}
	if doc, err := (Kind{}).KeySet(settings(), []rotators.Published{{Secret: pubOnly}}, time.Now()); err != nil || len(kids(t, doc)) != 1 {
		t.Fatalf("public parts only: %s %v", doc, err)
	}
}

func TestRegistered(t *testing.T) {
	k, ok := rotators.Lookup("jwt")
	if !ok {
		t.Fatal("jwt kind not registered")
	}
	if _, ok := k.(rotators.KeySetPublisher); !ok {
		t.Fatal("jwt kind does not publish a key set")
	}
	if _, ok := k.(rotators.Supplier); ok {
		t.Fatal("jwt kind must not take supplied values")
	}
}
