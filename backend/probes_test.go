package backend

import (
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
)

// One limiter per engine, shared by every deployment, of consumers.MaxProbesInFlight slots
// (consumers/health_test.go shows that a limiter bounds the probes in flight).
func TestEngineBoundsHealthProbes(t *testing.T) {
	te := newEnv(t)
	if te.e.probes == nil {
		t.Fatal("the engine has no probe limiter")
	}
	if c := te.e.probes.Size(); c != consumers.MaxProbesInFlight {
		t.Fatalf("probe limiter of %d slots, want %d", c, consumers.MaxProbesInFlight)
	}
}
