package token

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func settings(kv map[string]interface{}) rotators.Settings {
	var s rotators.Settings
	for _, f := range (Kind{}).Fields() {
		if v, ok := kv[f.Name]; ok {
			s.Set(f, v)
		}
	}
	return s
}

func generate(t *testing.T, kv map[string]interface{}) string {
	t.Helper()
	tgt, err := Kind{}.Bind(settings(kv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := tgt.Generate(context.Background(), rotators.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.Verify(context.Background(), rotators.Env{}, s); err != nil {
		t.Fatal(err)
	}
	return s[PartValue]
}

func TestGenerateFormats(t *testing.T) {
	if v := generate(t, nil); len(v) != 64 || !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(v) {
		t.Fatalf("default (hex, 32 bytes): %q", v)
	}
	if v := generate(t, map[string]interface{}{"format": "base64", "bytes": 48}); len(v) != 64 {
		t.Fatalf("base64 48 bytes: %d chars", len(v))
	} else if raw, err := base64.StdEncoding.DecodeString(v); err != nil || len(raw) != 48 {
		t.Fatalf("base64 does not decode to 48 bytes: %v", err)
	}
	if v := generate(t, map[string]interface{}{"format": "base64url", "prefix": "svc_"}); !strings.HasPrefix(v, "svc_") || strings.ContainsAny(v, "+/=") {
		t.Fatalf("base64url with prefix: %q", v)
	}
	v := generate(t, map[string]interface{}{"format": "alphanumeric", "bytes": 32})
	// 256 bits at log2(62) bits a character: 43 characters.
	if len(v) != 43 || !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(v) {
		t.Fatalf("alphanumeric: %q (%d)", v, len(v))
	}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		v := generate(t, map[string]interface{}{"bytes": 16})
		if seen[v] {
			t.Fatal("a generated token repeated")
		}
		seen[v] = true
		if _, err := hex.DecodeString(v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPolicyIsUsedWhenSet(t *testing.T) {
	tgt, _ := Kind{}.Bind(settings(map[string]interface{}{"prefix": "p-"}))
	env := rotators.Env{HasPolicy: true, Password: func(context.Context) (string, error) { return "from-policy", nil }}
	s, err := tgt.Generate(context.Background(), env, nil)
	if err != nil || s[PartValue] != "p-from-policy" {
		t.Fatalf("%v %v", s, err)
	}
}

func TestValidation(t *testing.T) {
	for kv, want := range map[*map[string]interface{}]string{
		{"format": "base32"}:    "format",
		{"bytes": 8}:            "bytes",
		{"bytes": 4096}:         "bytes",
		{"prefix": "has space"}: "prefix",
	} {
		if _, err := (Kind{}).Bind(settings(*kv)); err == nil || !strings.HasPrefix(err.Error(), want+":") {
			t.Errorf("%v: error %v, want one naming %s", *kv, err, want)
		}
	}
	if _, err := (Kind{}).SuppliedSecret(rotators.Settings{}, "", nil); err == nil {
		t.Fatal("accepted an empty value")
	}
	if _, err := (Kind{}).SuppliedSecret(rotators.Settings{}, "a b", nil); err == nil {
		t.Fatal("accepted a value with white space")
	}
	if s, err := (Kind{}).ImportSecret(rotators.Settings{}, map[string]string{"value": "123:ABC"}); err != nil || s[PartValue] != "123:ABC" {
		t.Fatalf("import: %v %v", s, err)
	}
	if s, err := (Kind{}).ImportSecret(rotators.Settings{}, nil); err != nil || s != nil {
		t.Fatalf("import without value: %v %v", s, err)
	}
}
