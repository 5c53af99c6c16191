// Package jwt rotates JWT signing keys: asymmetric key pairs (RSA, RSA-PSS, ECDSA, Ed25519)
// whose public halves are published as a JWK Set, and HMAC shared secrets.
//
// A jwt role has no target: Apply does nothing, and Verify proves that a value is well formed
// and signs and verifies a token. What rotation changes for the services that check tokens is
// the published key set (the kind implements rotators.KeySetPublisher): the current public key
// plus each retired one until its verification_ttl has passed, so that tokens signed just
// before a rotation keep verifying until they expire.
package jwt

import (
	"context"
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
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Field names.
const (
	FieldAlgorithm       = "algorithm"
	FieldKeyBits         = "key_bits"
	FieldVerificationTTL = "verification_ttl"
	FieldPrivateKey      = "private_key"
)

// Secret parts.
const (
	PartPrivateKey = "private_key" // PEM PKCS#8 (asymmetric algorithms)
	PartPublicKey  = "public_key"  // PEM PKIX (asymmetric algorithms)
	PartSecret     = "secret"      // base64url without padding (HS*)
	PartKID        = "kid"
	PartAlgorithm  = "algorithm"
)

// Defaults.
const (
	DefaultAlgorithm = "RS256"
	DefaultKeyBits   = 2048
	// DefaultVerificationTTL is how long a retired public key stays published. It is Vault's own
	// default for the same setting of identity token keys (identity/oidc/key verification_ttl):
	// longer than the lifetime of typical access and ID tokens plus a verifier's JWKS cache.
	DefaultVerificationTTL = 24 * time.Hour
	// MaxVerificationTTL bounds verification_ttl: a year is longer than any token a rotated key
	// should still vouch for.
	MaxVerificationTTL = 365 * 24 * time.Hour

	// kidBytes is the entropy of an HMAC key's random kid.
	kidBytes = 16
)

// family is how an algorithm's keys are made and checked.
type family int

const (
	familyRSA family = iota // RS* and PS*
	familyEC
	familyEd25519
	familyHMAC
)

// algorithm is one supported JWS algorithm.
type algorithm struct {
	name   string
	jose   jose.SignatureAlgorithm
	family family
	curve  elliptic.Curve // familyEC
	// secretBytes is the generated HMAC secret's length and the least accepted at import: the
	// hash output size (RFC 7518 §3.2).
	secretBytes int
}

var algorithms = []algorithm{
	{name: "RS256", jose: jose.RS256, family: familyRSA},
	{name: "RS384", jose: jose.RS384, family: familyRSA},
	{name: "RS512", jose: jose.RS512, family: familyRSA},
	{name: "PS256", jose: jose.PS256, family: familyRSA},
	{name: "ES256", jose: jose.ES256, family: familyEC, curve: elliptic.P256()},
	{name: "ES384", jose: jose.ES384, family: familyEC, curve: elliptic.P384()},
	{name: "EdDSA", jose: jose.EdDSA, family: familyEd25519},
	{name: "HS256", jose: jose.HS256, family: familyHMAC, secretBytes: 32},
	{name: "HS512", jose: jose.HS512, family: familyHMAC, secretBytes: 64},
}

// AllowedKeyBits are the RSA sizes a role may generate.
var AllowedKeyBits = []int64{2048, 3072, 4096}

// minImportRSABits is the least RSA size accepted at import (RFC 7518 §3.3, §3.5).
const minImportRSABits = 2048

func algorithmNames() []string {
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		names[i] = a.name
	}
	return names
}

func lookupAlgorithm(name string) (algorithm, bool) {
	for _, a := range algorithms {
		if a.name == name {
			return a, true
		}
	}
	return algorithm{}, false
}

func (a algorithm) describe() string {
	switch a.family {
	case familyRSA:
		return fmt.Sprintf("an RSA key of at least %d bits", minImportRSABits)
	case familyEC:
		return "an ECDSA " + a.curve.Params().Name + " key"
	case familyEd25519:
		return "an Ed25519 key"
	default:
		return fmt.Sprintf("a secret of at least %d bytes, base64url", a.secretBytes)
	}
}

func init() { rotators.Register(Kind{}) }

// Kind is the jwt secret kind.
type Kind struct{}

// Interface guards.
var (
	_ rotators.Kind            = Kind{}
	_ rotators.KeySetPublisher = Kind{}
	_ rotators.Retainer        = Kind{}
	_ rotators.Target          = (*target)(nil)
)

func (Kind) Name() string { return "jwt" }

func (Kind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: FieldAlgorithm, Kind: rotators.FieldString, Default: DefaultAlgorithm, Allowed: algorithmNames(),
			Description: "JWS algorithm of the signing key: RS256, RS384, RS512, PS256, ES256, ES384, EdDSA (key pairs, public keys published at jwks/NAME) or HS256, HS512 (shared secrets, never published). A change applies from the next rotation."},
		{Name: FieldKeyBits, Kind: rotators.FieldInt, Max: 4096,
			Description: "RSA modulus size of generated keys: 2048 (default), 3072 or 4096. Only for RS* and PS*; 0 = unset."},
		{Name: FieldVerificationTTL, Kind: rotators.FieldDuration, Default: int64(DefaultVerificationTTL / time.Second), Max: int64(MaxVerificationTTL / time.Second),
			Description: "How long a retired public key stays in the key set after the rotation that replaced it, so that tokens it signed keep verifying (default 24h, at most 8760h; 0 = retired keys drop out at once). Set it to at least the longest token lifetime plus the verifiers' key set cache time. A retired key is kept until then even when versions_kept would drop it."},
		{Name: FieldPrivateKey, Kind: rotators.FieldSecret,
			Description: "The current signing key, to import it as version 1: a PEM private key (PKCS#8, PKCS#1 or SEC1) that fits algorithm, or for HS256/HS512 the secret as base64url. Write-only."},
	}
}

// config is a role's jwt settings after validation.
type config struct {
	alg     algorithm
	keyBits int // RSA only
	ttl     time.Duration
}

func parseConfig(s rotators.Settings) (config, error) {
	var c config
	name := s.String(FieldAlgorithm)
	if name == "" {
		name = DefaultAlgorithm
	}
	alg, ok := lookupAlgorithm(name)
	if !ok {
		return c, fmt.Errorf("%s: %q is not one of %s", FieldAlgorithm, name, strings.Join(algorithmNames(), ", "))
	}
	c.alg = alg

	bits := s.Int(FieldKeyBits)
	switch {
	case bits != 0 && alg.family != familyRSA:
		return c, fmt.Errorf("%s: only for RSA algorithms (RS256, RS384, RS512, PS256), not %s; unset it with %s=0", FieldKeyBits, alg.name, FieldKeyBits)
	case bits == 0 && alg.family == familyRSA:
		c.keyBits = DefaultKeyBits
	case bits != 0:
		if !containsInt(AllowedKeyBits, bits) {
			return c, fmt.Errorf("%s: %d is not one of 2048, 3072, 4096", FieldKeyBits, bits)
		}
		c.keyBits = int(bits)
	}

	c.ttl = verificationTTL(s)
	if c.ttl < 0 || c.ttl > MaxVerificationTTL {
		return c, fmt.Errorf("%s: must be between 0s and %dh", FieldVerificationTTL, MaxVerificationTTL/time.Hour)
	}
	return c, nil
}

func verificationTTL(s rotators.Settings) time.Duration {
	if s.Has(FieldVerificationTTL) {
		return s.Duration(FieldVerificationTTL)
	}
	return DefaultVerificationTTL
}

func containsInt(list []int64, n int64) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func (Kind) Bind(s rotators.Settings) (rotators.Target, error) {
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	return &target{cfg: c}, nil
}

func (Kind) ImportSecret(s rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	raw, ok := supplied[FieldPrivateKey]
	if !ok {
		return nil, nil
	}
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%s: empty", FieldPrivateKey)
	}
	if c.alg.family == familyHMAC {
		key, err := decodeHMACSecret(raw)
		if err != nil || len(key) < c.alg.secretBytes {
			return nil, fmt.Errorf("%s: for %s give %s", FieldPrivateKey, c.alg.name, c.alg.describe())
		}
		return hmacSecret(c.alg, key)
	}
	priv, err := parsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FieldPrivateKey, err)
	}
	if err := fits(c.alg, priv); err != nil {
		return nil, fmt.Errorf("%s: %w", FieldPrivateKey, err)
	}
	if rk, isRSA := priv.(*rsa.PrivateKey); isRSA && s.Int(FieldKeyBits) != 0 && int64(rk.N.BitLen()) != s.Int(FieldKeyBits) {
		return nil, fmt.Errorf("%s: a %d-bit RSA key, but %s is %d", FieldPrivateKey, rk.N.BitLen(), FieldKeyBits, s.Int(FieldKeyBits))
	}
	return keyPairSecret(c.alg, priv)
}

// NeedsImport: a jwt role can always generate its first key.
func (Kind) NeedsImport(rotators.Settings) string { return "" }

// Describe adds nothing: the secret's parts are the whole credential.
func (Kind) Describe(rotators.Settings, rotators.Secret) map[string]interface{} { return nil }

// KeySet is the RFC 7517 JWK Set of the values' public keys: the current one and each retired one
// whose Retired+verification_ttl is after now, newest first, one entry per kid. HMAC values have
// no public part and are left out, so an HS256/HS512 role publishes {"keys":[]}.
func (Kind) KeySet(s rotators.Settings, values []rotators.Published, now time.Time) ([]byte, error) {
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	seen := map[string]bool{}
	for _, v := range values {
		if !v.Retired.IsZero() && !v.Retired.Add(c.ttl).After(now) {
			continue
		}
		jwk, err := publicJWK(v.Secret)
		if err != nil {
			return nil, fmt.Errorf("key set: a kept value: %w", err)
		}
		if jwk == nil || seen[jwk.KeyID] {
			continue
		}
		seen[jwk.KeyID] = true
		set.Keys = append(set.Keys, *jwk)
	}
	return json.Marshal(set)
}

// KeySetChanges is when the first retired key still in the set leaves it: the earliest
// Retired+verification_ttl after now. HMAC values count too (they never show): at worst the
// engine rebuilds an unchanged document once more.
func (Kind) KeySetChanges(s rotators.Settings, values []rotators.Published, now time.Time) time.Time {
	ttl := verificationTTL(s)
	var first time.Time
	for _, v := range values {
		if v.Retired.IsZero() {
			continue
		}
		if end := v.Retired.Add(ttl); end.After(now) && (first.IsZero() || end.Before(first)) {
			first = end
		}
	}
	return first
}

// StillNeeded keeps a retired value until verification_ttl has passed since it was retired: a
// key pair's public key is in the key set until then, and an HMAC secret may still be read by
// version from creds to verify the tokens it signed.
func (Kind) StillNeeded(s rotators.Settings, v rotators.Published, now time.Time) bool {
	return v.Retired.IsZero() || v.Retired.Add(verificationTTL(s)).After(now)
}

type target struct{ cfg config }

func (t *target) Generate(_ context.Context, _ rotators.Env, _ rotators.Secret) (rotators.Secret, error) {
	alg := t.cfg.alg
	var (
		priv crypto.Signer
		err  error
	)
	switch alg.family {
	case familyHMAC:
		key := make([]byte, alg.secretBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate secret: %w", err)
		}
		return hmacSecret(alg, key)
	case familyRSA:
		priv, err = rsa.GenerateKey(rand.Reader, t.cfg.keyBits)
	case familyEC:
		priv, err = ecdsa.GenerateKey(alg.curve, rand.Reader)
	case familyEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg.name, err)
	}
	return keyPairSecret(alg, priv)
}

// Apply does nothing: a signing key has no target; the key set follows the kept versions.
func (t *target) Apply(context.Context, rotators.Env, rotators.Secret, rotators.Secret) error {
	return nil
}

// Verify checks that s is a well-formed value of its own algorithm (which may predate a change
// of the role's algorithm) and that a token signed with it verifies. No network.
func (t *target) Verify(_ context.Context, _ rotators.Env, s rotators.Secret) error {
	k, err := decodeSecret(s)
	if err != nil {
		return err
	}
	return k.roundTrip()
}

// key is a decoded value.
type key struct {
	alg    algorithm
	kid    string
	signer interface{} // crypto.Signer, or []byte for HMAC
	public crypto.PublicKey
}

// decodeSecret parses and checks a stored value. Its errors never quote key material.
func decodeSecret(s rotators.Secret) (*key, error) {
	alg, ok := lookupAlgorithm(s[PartAlgorithm])
	if !ok {
		return nil, fmt.Errorf("value has no known %s", PartAlgorithm)
	}
	k := &key{alg: alg, kid: s[PartKID]}
	if k.kid == "" {
		return nil, fmt.Errorf("value has no %s", PartKID)
	}
	if alg.family == familyHMAC {
		secret, err := base64.RawURLEncoding.DecodeString(s[PartSecret])
		if err != nil || len(secret) < alg.secretBytes {
			return nil, fmt.Errorf("value's %s is not %s", PartSecret, alg.describe())
		}
		k.signer = secret
		return k, nil
	}
	priv, err := parsePrivateKeyPEM(s[PartPrivateKey])
	if err != nil {
		return nil, fmt.Errorf("value's %s: %w", PartPrivateKey, err)
	}
	if err := fits(alg, priv); err != nil {
		return nil, fmt.Errorf("value's %s: %w", PartPrivateKey, err)
	}
	pub, err := parsePublicKeyPEM(s[PartPublicKey])
	if err != nil {
		return nil, fmt.Errorf("value's %s: %w", PartPublicKey, err)
	}
	if !publicEqual(priv.Public(), pub) {
		return nil, fmt.Errorf("value's %s is not the public half of its %s", PartPublicKey, PartPrivateKey)
	}
	if kid, err := thumbprint(pub); err != nil {
		return nil, err
	} else if kid != k.kid {
		return nil, fmt.Errorf("value's %s is not the key's RFC 7638 thumbprint", PartKID)
	}
	k.signer, k.public = priv, pub
	return k, nil
}

// publicJWK is the published form of a value: its public key with kid, alg and use, or nil for
// an HMAC value. It reads only the public parts, so the unauthenticated key set path never
// decodes private material.
func publicJWK(s rotators.Secret) (*jose.JSONWebKey, error) {
	alg, ok := lookupAlgorithm(s[PartAlgorithm])
	if !ok {
		return nil, fmt.Errorf("value has no known %s", PartAlgorithm)
	}
	if alg.family == familyHMAC {
		return nil, nil
	}
	pub, err := parsePublicKeyPEM(s[PartPublicKey])
	if err != nil {
		return nil, fmt.Errorf("value's %s: %w", PartPublicKey, err)
	}
	if !publicFits(alg, pub) {
		return nil, fmt.Errorf("value's %s does not fit its %s %s", PartPublicKey, PartAlgorithm, alg.name)
	}
	if kid, err := thumbprint(pub); err != nil {
		return nil, err
	} else if kid != s[PartKID] {
		return nil, fmt.Errorf("value's %s is not the key's RFC 7638 thumbprint", PartKID)
	}
	return &jose.JSONWebKey{Key: pub, KeyID: s[PartKID], Algorithm: alg.name, Use: "sig"}, nil
}

func publicFits(alg algorithm, pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return alg.family == familyRSA
	case *ecdsa.PublicKey:
		return alg.family == familyEC && k.Curve == alg.curve
	case ed25519.PublicKey:
		return alg.family == familyEd25519
	}
	return false
}

// roundTrip signs a payload with the key and verifies it with the public key (or the secret).
func (k *key) roundTrip() error {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg.jose, Key: k.signer},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.kid))
	if err != nil {
		return fmt.Errorf("%s signer: %w", k.alg.name, err)
	}
	payload := []byte(`{"probe":"vault-plugin-rotation"}`)
	jws, err := signer.Sign(payload)
	if err != nil {
		return fmt.Errorf("sign with the %s key: %w", k.alg.name, err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return fmt.Errorf("serialize the test token: %w", err)
	}
	parsed, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{k.alg.jose})
	if err != nil {
		return fmt.Errorf("parse the test token: %w", err)
	}
	verifyKey := k.public
	if k.alg.family == familyHMAC {
		verifyKey = k.signer
	}
	got, err := parsed.Verify(verifyKey)
	if err != nil {
		return fmt.Errorf("%w: a token signed with the %s key does not verify: %v", rotators.ErrRejected, k.alg.name, err)
	}
	if string(got) != string(payload) {
		return fmt.Errorf("%w: the test token's payload changed", rotators.ErrRejected)
	}
	return nil
}

func hmacSecret(alg algorithm, secret []byte) (rotators.Secret, error) {
	id := make([]byte, kidBytes)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("generate kid: %w", err)
	}
	return rotators.Secret{
		PartSecret:    base64.RawURLEncoding.EncodeToString(secret),
		PartKID:       base64.RawURLEncoding.EncodeToString(id),
		PartAlgorithm: alg.name,
	}, nil
}

func keyPairSecret(alg algorithm, priv crypto.Signer) (rotators.Secret, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return rotators.Secret{
		PartPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		PartPublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
		PartKID:        kid,
		PartAlgorithm:  alg.name,
	}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// decodeHMACSecret reads base64url (the form creds returns) or standard base64, padded or not.
func decodeHMACSecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	return base64.RawURLEncoding.DecodeString(s)
}

// parsePrivateKeyPEM reads one PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
// KEY") or SEC1 ("EC PRIVATE KEY", optionally after the "EC PARAMETERS" block that
// `openssl ecparam -genkey` writes). Errors name the problem, never the key.
func parsePrivateKeyPEM(s string) (crypto.Signer, error) {
	rest := []byte(strings.TrimSpace(s))
	var block *pem.Block
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("not a PEM private key (PKCS#8, PKCS#1 or SEC1)")
		}
		if block.Type != "EC PARAMETERS" {
			break
		}
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("more than one PEM block; give the private key alone")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("an encrypted private key; give it unencrypted (the role's storage is encrypted and seal-wrapped)")
	}
	var (
		parsed interface{}
		err    error
	)
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("a PEM %q block, not a private key", block.Type)
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("an OpenSSH private key; convert it to PKCS#8 PEM (ssh-keygen -p -m PKCS8)")
	default:
		return nil, fmt.Errorf("a PEM %q block, not PKCS#8, PKCS#1 or SEC1", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("a PEM %q block that does not parse", block.Type)
	}
	switch k := parsed.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("a %T key, not RSA, ECDSA or Ed25519", parsed)
	}
}

func parsePublicKeyPEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM PKIX public key")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, errors.New("a PEM PKIX public key that does not parse")
	}
	return pub, nil
}

// fits checks that a private key is of the kind and size the algorithm needs.
func fits(alg algorithm, priv crypto.Signer) error {
	ok := false
	have := keyDescription(priv)
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		ok = alg.family == familyRSA && k.N.BitLen() >= minImportRSABits
		if ok {
			if err := k.Validate(); err != nil {
				return errors.New("an RSA key that fails validation")
			}
		}
	case *ecdsa.PrivateKey:
		ok = alg.family == familyEC && k.Curve == alg.curve
	case ed25519.PrivateKey:
		ok = alg.family == familyEd25519
	}
	if !ok {
		return fmt.Errorf("%s does not fit %s=%s, which needs %s", have, FieldAlgorithm, alg.name, alg.describe())
	}
	return nil
}

func keyDescription(priv crypto.Signer) string {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("a %d-bit RSA key", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case ed25519.PrivateKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a %T key", priv)
}

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
