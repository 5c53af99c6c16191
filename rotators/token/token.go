// Package token rotates opaque tokens: internal service tokens and session secrets generated
// here, and third-party tokens (a Telegram bot token, a GitHub token) that only their provider
// can issue and an operator supplies with `rotate/NAME value=...`. A token has no target: the
// services that use it follow through the role's consumers.
package token

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"unicode"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Field names and secret parts.
const (
	FieldFormat = "format"
	FieldBytes  = "bytes"
	FieldPrefix = "prefix"
	FieldValue  = "value"

	PartValue = "value"

	FormatHex          = "hex"
	FormatBase64       = "base64"
	FormatBase64URL    = "base64url"
	FormatAlphanumeric = "alphanumeric"

	defaultBytes = 32
	minBytes     = 16 // 128 bits: below that a token is guessable
	maxBytes     = 1024
	maxPrefix    = 64
	// maxValue bounds a supplied token (import or rotate value=): provider tokens, even JWTs,
	// are far shorter, and the value must fit rotators.MaxValueBytes as stored.
	maxValue = 4096
)

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func init() { rotators.Register(Kind{}) }

// Kind is the token secret kind.
type Kind struct{}

var (
	_ rotators.Kind     = Kind{}
	_ rotators.Supplier = Kind{}
	_ rotators.Target   = target{}
)

func (Kind) Name() string { return "token" }

func (Kind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: FieldFormat, Kind: rotators.FieldString, Default: FormatHex,
			Allowed:     []string{FormatHex, FormatBase64, FormatBase64URL, FormatAlphanumeric},
			Description: "Encoding of a generated token: hex, base64, base64url or alphanumeric."},
		{Name: FieldBytes, Kind: rotators.FieldInt, Default: defaultBytes, Min: minBytes, Max: maxBytes,
			Description: fmt.Sprintf("Entropy of a generated token in bytes (%d to %d).", minBytes, maxBytes)},
		{Name: FieldPrefix, Kind: rotators.FieldString, MaxLen: maxPrefix, Description: fmt.Sprintf("Text put before a generated token (e.g. svc_), at most %d characters.", maxPrefix)},
		{Name: FieldValue, Kind: rotators.FieldSecret, MaxLen: maxValue, Description: fmt.Sprintf("The current token, to import it as version 1, at most %d bytes. Write-only.", maxValue)},
	}
}

type config struct {
	format string
	bytes  int
	prefix string
}

func parseConfig(s rotators.Settings) (config, error) {
	c := config{format: s.String(FieldFormat), bytes: int(s.Int(FieldBytes)), prefix: s.String(FieldPrefix)}
	if c.format == "" {
		c.format = FormatHex
	}
	if !s.Has(FieldBytes) {
		c.bytes = defaultBytes
	}
	switch c.format {
	case FormatHex, FormatBase64, FormatBase64URL, FormatAlphanumeric:
	default:
		return c, fmt.Errorf("%s: %q is not one of hex, base64, base64url, alphanumeric", FieldFormat, c.format)
	}
	if c.bytes < minBytes || c.bytes > maxBytes {
		return c, fmt.Errorf("%s: must be between %d and %d", FieldBytes, minBytes, maxBytes)
	}
	if len(c.prefix) > maxPrefix || strings.IndexFunc(c.prefix, unicode.IsSpace) >= 0 {
		return c, fmt.Errorf("%s: at most %d characters, no white space", FieldPrefix, maxPrefix)
	}
	return c, nil
}

func (Kind) Bind(s rotators.Settings) (rotators.Target, error) {
	c, err := parseConfig(s)
	if err != nil {
		return nil, err
	}
	return target{cfg: c}, nil
}

func (Kind) ImportSecret(_ rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	v, ok := supplied[FieldValue]
	if !ok {
		return nil, nil
	}
	return secretOf(FieldValue, v)
}

func (Kind) SuppliedSecret(_ rotators.Settings, value string, _ rotators.Secret) (rotators.Secret, error) {
	if len(value) > maxValue {
		return nil, fmt.Errorf("value: longer than %d bytes", maxValue)
	}
	return secretOf("value", value)
}

// secretOf checks a supplied token: something a header or an env var can carry.
func secretOf(field, v string) (rotators.Secret, error) {
	switch {
	case v == "":
		return nil, fmt.Errorf("%s: empty", field)
	case strings.IndexFunc(v, unicode.IsSpace) >= 0:
		return nil, fmt.Errorf("%s: contains white space", field)
	}
	return rotators.Secret{PartValue: v}, nil
}

func (Kind) NeedsImport(rotators.Settings) string { return "" }

func (Kind) Describe(rotators.Settings, rotators.Secret) map[string]interface{} { return nil }

type target struct{ cfg config }

func (t target) Generate(ctx context.Context, env rotators.Env, _ rotators.Secret) (rotators.Secret, error) {
	if env.HasPolicy {
		v, err := env.Password(ctx)
		if err != nil {
			return nil, err
		}
		return rotators.Secret{PartValue: t.cfg.prefix + v}, nil
	}
	v, err := randomToken(t.cfg.format, t.cfg.bytes)
	if err != nil {
		return nil, err
	}
	return rotators.Secret{PartValue: t.cfg.prefix + v}, nil
}

// randomToken encodes n random bytes, or for alphanumeric draws as many characters as carry
// at least n bytes of entropy.
func randomToken(format string, n int) (string, error) {
	if format == FormatAlphanumeric {
		length := (n*8*1000 + 5953) / 5954 // log2(62) ≈ 5.954 bits a character
		var b strings.Builder
		max := big.NewInt(int64(len(alphanumeric)))
		for i := 0; i < length; i++ {
			k, err := rand.Int(rand.Reader, max)
			if err != nil {
				return "", fmt.Errorf("random: %w", err)
			}
			b.WriteByte(alphanumeric[k.Int64()])
		}
		return b.String(), nil
	}
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	switch format {
	case FormatBase64:
		return base64.StdEncoding.EncodeToString(raw), nil
	case FormatBase64URL:
		return base64.RawURLEncoding.EncodeToString(raw), nil
	default:
		return hex.EncodeToString(raw), nil
	}
}

// Apply has no target to change: consumers pick the token up through creds.
func (target) Apply(context.Context, rotators.Env, rotators.Secret, rotators.Secret) error {
	return nil
}

// Verify checks the value is a usable token; there is no target to ask.
func (target) Verify(_ context.Context, _ rotators.Env, s rotators.Secret) error {
	if s[PartValue] == "" {
		return errors.New("empty token")
	}
	return nil
}
