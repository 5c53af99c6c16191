package token

import (
	"context"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// The largest token the kind generates (1024 bytes as hex behind the longest prefix, in characters
// JSON escapes) and the largest it accepts fit the engine's bound on one kept value.
func TestLargestValuesFitStorageBound(t *testing.T) {
	tg, err := Kind{}.Bind(settings(map[string]interface{}{FieldBytes: maxBytes, FieldPrefix: strings.Repeat("<", maxPrefix)}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := tg.Generate(context.Background(), rotators.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rotators.CheckValueSize("value", s); err != nil {
		t.Fatal(err)
	}
	supplied, err := Kind{}.SuppliedSecret(rotators.Settings{}, strings.Repeat("v", maxValue), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rotators.CheckValueSize("value", supplied); err != nil {
		t.Fatal(err)
	}
	if _, err := (Kind{}).SuppliedSecret(rotators.Settings{}, strings.Repeat("v", maxValue+1), nil); err == nil || !strings.Contains(err.Error(), "value: longer than 4096 bytes") {
		t.Fatalf("error %v, want one naming value", err)
	}
}
