package ssh

import (
	"context"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// The largest key pair the kind generates (RSA-4096) fits the engine's bound on one kept value,
// so that 100 kept versions fit in one storage entry.
func TestLargestValueFitsStorageBound(t *testing.T) {
	tg, err := (Kind{}).Bind(settings(map[string]interface{}{
		FieldHosts: []string{"h:22"}, FieldUsername: "u", FieldInsecureIgnoreHostKey: true,
		FieldKeyType: KeyTypeRSA, FieldKeyBits: 4096,
	}))
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
	if n := rotators.ValueSize(s); n < 4000 {
		t.Fatalf("an RSA-4096 value takes %d bytes: not the largest case", n)
	}
}
