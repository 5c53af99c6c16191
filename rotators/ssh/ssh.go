// Package ssh rotates the key pair of one login on a set of SSH hosts.
//
// A rotation logs in to every host with the current key (host keys checked against host_keys),
// adds the new public key to ~/.ssh/authorized_keys, logs in with the new key on every host, and
// only then removes the old key. Every change of authorized_keys is a compare-and-swap of the
// whole file (temp file in ~/.ssh, mode 600, then rename) done by a small POSIX sh script: no
// private key ever reaches a host, and every line that is not ours is kept byte for byte. When
// any host fails, the hosts already changed are put back before the error (naming the host) is
// returned, so that a failed Apply leaves the old key live everywhere; the error wraps
// rotators.ErrNotApplied only when that is certain. Finish completes the removal of the old key
// when recovery rolls an interrupted rotation forward (README, "SSH keys").
package ssh

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Field names.
const (
	FieldHosts                 = "hosts"
	FieldUsername              = "username"
	FieldKeyType               = "key_type"
	FieldKeyBits               = "key_bits"
	FieldPrivateKey            = "private_key"
	FieldHostKeys              = "host_keys"
	FieldInsecureIgnoreHostKey = "insecure_ignore_host_key"

	KeyTypeEd25519 = "ed25519"
	KeyTypeRSA     = "rsa"

	// DefaultRSABits is the RSA modulus size when key_bits is not given: ssh-keygen's default.
	DefaultRSABits = 3072

	// Secret parts.
	PartPrivateKey  = "private_key" // OpenSSH PEM ("-----BEGIN OPENSSH PRIVATE KEY-----")
	PartPublicKey   = "public_key"  // authorized_keys line: "ssh-ed25519 AAAA... vault-plugin-rotation"
	PartFingerprint = "fingerprint" // "SHA256:..."

	// KeyComment marks the authorized_keys lines this plugin writes (and the key's own comment).
	KeyComment = "vault-plugin-rotation"
)

var allowedRSABits = []int64{2048, 3072, 4096}

// Bounds of the list fields: a host:port is at most a DNS name and a port; host_keys elements
// are known_hosts lines, or a whole known_hosts file given as host_keys=@file (the role as a
// whole stays within the engine's bound on a stored role).
const (
	maxHosts        = 64
	maxHostLen      = 262 // 253-byte DNS name, brackets, colon and port
	maxHostKeyItems = 256
	maxHostKeysLen  = 16 << 10
)

func init() { rotators.Register(Kind{}) }

// Kind is the ssh secret kind.
type Kind struct{}

// Interface guards.
var (
	_ rotators.Kind     = Kind{}
	_ rotators.Target   = (*target)(nil)
	_ rotators.Settler  = (*target)(nil)
	_ rotators.Bounded  = (*target)(nil)
	_ rotators.Finisher = (*target)(nil)
)

func (Kind) Name() string { return "ssh" }

func (Kind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: FieldHosts, Kind: rotators.FieldList, MaxItems: maxHosts, MaxLen: maxHostLen, Description: fmt.Sprintf("The SSH hosts, each host:port (e.g. 10.0.0.5:22), at most %d. The key is rotated on all of them or on none.", maxHosts)},
		{Name: FieldUsername, Kind: rotators.FieldString, Description: "The login whose ~/.ssh/authorized_keys is rotated on every host."},
		{Name: FieldKeyType, Kind: rotators.FieldString, Default: KeyTypeEd25519, Allowed: []string{KeyTypeEd25519, KeyTypeRSA},
			Description: "Type of the generated keys: ed25519 (default) or rsa."},
		{Name: FieldKeyBits, Kind: rotators.FieldInt, Max: 4096,
			Description: fmt.Sprintf("(key_type=rsa only) RSA modulus size: 2048, 3072 or 4096; default %d.", DefaultRSABits)},
		{Name: FieldPrivateKey, Kind: rotators.FieldSecret,
			Description: "The login's current private key (OpenSSH or PEM, unencrypted), imported as version 1 without changing any host. Required: the plugin logs in with it to install the next key. Write-only."},
		{Name: FieldHostKeys, Kind: rotators.FieldList, MaxItems: maxHostKeyItems, MaxLen: maxHostKeysLen,
			Description: "known_hosts lines for the hosts (ssh-keyscan -p PORT HOST output), e.g. '[10.0.0.5]:2222 ssh-ed25519 AAAA...'. Required unless insecure_ignore_host_key=true."},
		{Name: FieldInsecureIgnoreHostKey, Kind: rotators.FieldBool,
			Description: "Do not check the hosts' keys (tests only: a man in the middle could take the key change)."},
	}
}

// config is a role's ssh settings after validation.
type config struct {
	hosts      []string
	username   string
	keyType    string
	keyBits    int
	hostKeys   []string // known_hosts lines
	insecure   bool
	hostKeyCfg hostKeyChecker
}

func (Kind) Bind(s rotators.Settings) (rotators.Target, error) {
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	return &target{cfg: c, cmdTimeout: commandTimeout}, nil
}

func parseConfig(s rotators.Settings) (config, error) {
	c := config{username: s.String(FieldUsername), keyType: s.String(FieldKeyType), insecure: s.Bool(FieldInsecureIgnoreHostKey)}
	hosts, err := parseHosts(s.List(FieldHosts))
	if err != nil {
		return c, err
	}
	c.hosts = hosts
	if err := validateUsername(c.username); err != nil {
		return c, err
	}
	switch c.keyType {
	case "", KeyTypeEd25519:
		c.keyType = KeyTypeEd25519
		if s.Int(FieldKeyBits) != 0 {
			return c, fmt.Errorf("%s: only used with %s=%s (ed25519 keys have one size)", FieldKeyBits, FieldKeyType, KeyTypeRSA)
		}
	case KeyTypeRSA:
		c.keyBits = DefaultRSABits
		if b := s.Int(FieldKeyBits); b != 0 {
			if !containsInt(allowedRSABits, b) {
				return c, fmt.Errorf("%s: %d is not one of 2048, 3072, 4096", FieldKeyBits, b)
			}
			c.keyBits = int(b)
		}
	default:
		return c, fmt.Errorf("%s: %q is not one of %s, %s", FieldKeyType, c.keyType, KeyTypeEd25519, KeyTypeRSA)
	}
	c.hostKeys, err = normalizeKnownHosts(s.List(FieldHostKeys))
	if err != nil {
		return c, err
	}
	switch {
	case c.insecure:
		// host_keys, if given, are ignored; the operator asked for it.
	case len(c.hostKeys) == 0:
		return c, fmt.Errorf("%s: required (known_hosts lines, e.g. from ssh-keyscan), unless %s=true", FieldHostKeys, FieldInsecureIgnoreHostKey)
	default:
		if c.hostKeyCfg, err = newHostKeyChecker(c.hostKeys); err != nil {
			return c, fmt.Errorf("%s: %w", FieldHostKeys, err)
		}
		for _, h := range c.hosts {
			if !c.hostKeyCfg.knows(h) {
				return c, fmt.Errorf("%s: no line for host %s (a non-22 port is written [host]:port)", FieldHostKeys, h)
			}
		}
	}
	return c, nil
}

// parseHosts checks that every host is host:port with a valid port, and that none repeats.
func parseHosts(list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: required (a list of host:port)", FieldHosts)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(list))
	for _, h := range list {
		h = strings.TrimSpace(h)
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
			return nil, fmt.Errorf("%s: %q is not host:port", FieldHosts, h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s: %q has no valid port (1-65535)", FieldHosts, h)
		}
		if seen[h] {
			return nil, fmt.Errorf("%s: %s is listed twice", FieldHosts, h)
		}
		seen[h] = true
		out = append(out, h)
	}
	return out, nil
}

func validateUsername(u string) error {
	if u == "" {
		return fmt.Errorf("%s: required", FieldUsername)
	}
	for _, r := range u {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%s: %q contains whitespace or a control character", FieldUsername, u)
		}
	}
	return nil
}

func containsInt(list []int64, n int64) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func (Kind) ImportSecret(_ rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	pemText, ok := supplied[FieldPrivateKey]
	if !ok {
		return nil, nil
	}
	if strings.TrimSpace(pemText) == "" {
		return nil, fmt.Errorf("%s: empty", FieldPrivateKey)
	}
	key, err := gossh.ParseRawPrivateKey([]byte(pemText))
	if err != nil {
		var missing *gossh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("%s: the key is passphrase-protected; import it without a passphrase (ssh-keygen -p -N '' -f KEYFILE on a copy)", FieldPrivateKey)
		}
		// The parser's message names the format problem, never key material.
		return nil, fmt.Errorf("%s: not an OpenSSH or PEM private key: %v", FieldPrivateKey, err)
	}
	sec, err := secretOf(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FieldPrivateKey, err)
	}
	return sec, nil
}

func (Kind) NeedsImport(rotators.Settings) string {
	return "private_key: required: an ssh role logs in to every host with the current key to install the next one, so the current private key must be imported"
}

// Describe adds what a consumer needs beside the key: where and as whom to log in.
func (Kind) Describe(s rotators.Settings, _ rotators.Secret) map[string]interface{} {
	return map[string]interface{}{
		FieldUsername: s.String(FieldUsername),
		FieldHosts:    s.List(FieldHosts),
	}
}

// generateKey makes a new private key of the configured type.
func generateKey(c config) (crypto.PrivateKey, error) {
	switch c.keyType {
	case KeyTypeRSA:
		return rsa.GenerateKey(rand.Reader, c.keyBits)
	default:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
}

// secretOf marshals a private key into the secret's parts: the private key in OpenSSH format,
// its authorized_keys line with our comment, and its SHA256 fingerprint.
func secretOf(key crypto.PrivateKey) (rotators.Secret, error) {
	if p, ok := key.(*ed25519.PrivateKey); ok {
		key = *p // the OpenSSH parser returns a pointer; the marshaler wants the value
	}
	signer, err := gossh.NewSignerFromKey(key)
	if err != nil {
		return nil, fmt.Errorf("unsupported key: %v", err)
	}
	block, err := gossh.MarshalPrivateKey(key, KeyComment)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %v", err)
	}
	pub := signer.PublicKey()
	return rotators.Secret{
		PartPrivateKey:  string(pem.EncodeToMemory(block)),
		PartPublicKey:   publicKeyLine(pub),
		PartFingerprint: gossh.FingerprintSHA256(pub),
	}, nil
}

// publicKeyLine is the authorized_keys line of a key with our comment (no newline).
func publicKeyLine(pub gossh.PublicKey) string {
	return strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(pub)), "\n") + " " + KeyComment
}

// signerOf parses the private key of a secret.
func signerOf(s rotators.Secret) (gossh.Signer, error) {
	if s == nil || s[PartPrivateKey] == "" {
		return nil, errors.New("no private key")
	}
	signer, err := gossh.ParsePrivateKey([]byte(s[PartPrivateKey]))
	if err != nil {
		return nil, errors.New("the stored private key does not parse")
	}
	return signer, nil
}

// publicKeyOf returns the public key of a secret: of its private key, else its public_key line.
func publicKeyOf(s rotators.Secret) (gossh.PublicKey, error) {
	if s[PartPrivateKey] != "" {
		signer, err := signerOf(s)
		if err != nil {
			return nil, err
		}
		return signer.PublicKey(), nil
	}
	key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(s[PartPublicKey]))
	if err != nil {
		return nil, errors.New("the stored public key does not parse")
	}
	return key, nil
}

type target struct {
	cfg        config
	cmdTimeout time.Duration // of each remote script: commandTimeout (tests shorten it)
	// confirmHook (tests only) is called with the host's address right before a write's
	// confirmation is sent.
	confirmHook func(addr string)
}

func (t *target) Generate(context.Context, rotators.Env, rotators.Secret) (rotators.Secret, error) {
	key, err := generateKey(t.cfg)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", t.cfg.keyType, err)
	}
	return secretOf(key)
}
