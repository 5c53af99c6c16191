package testkit

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// TestNotInNonTestCode: the fake kind registers itself when the package is initialized, so no regular package (the
// plugin binary above all) may import it, with or without the failpoints build tag.
func TestNotInNonTestCode(t *testing.T) {
	const self = "github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testkit"
	for _, tags := range []string{"", "failpoints"} {
		out, err := exec.Command("go", "list", "-tags="+tags, "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`,
			"github.com/vault-plugin-rotation/vault-plugin-rotation/...").CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			pkg, deps, _ := strings.Cut(line, " ")
			if pkg != self && strings.Contains(" "+deps+" ", " "+self+" ") {
				t.Errorf("%s imports %s (tags %q)", pkg, self, tags)
			}
		}
	}
}

func TestRegistered(t *testing.T) {
	k, ok := rotators.Lookup(FaultKindName)
	if !ok {
		t.Fatal("the fault kind is not registered")
	}
	if _, ok := k.(FaultKind); !ok {
		t.Fatalf("%s is a %T", FaultKindName, k)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 2, 15, 12, 0, 0, 0, time.FixedZone("x", 3600))
	c := NewClock(t0)
	if !c.Now().Equal(t0) || c.Now().Location() != time.UTC {
		t.Fatalf("Now = %v", c.Now())
	}
	c.Advance(time.Minute)
	if !c.Now().Equal(t0.Add(time.Minute)) {
		t.Fatalf("after Advance: %v", c.Now())
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("after Set: %v", c.Now())
	}
}

// TestFaultScripts: scripted outcomes are used once each, in order, and the errors quote the values (on purpose).
func TestFaultScripts(t *testing.T) {
	ctx := context.Background()
	ft, _ := NewFaultTarget(t, FaultSecret("old"))
	ft.ScriptApply(ApplyFailBefore, ApplyFailAfter)
	err := ft.Apply(ctx, rotators.Env{}, FaultSecret("old"), FaultSecret("new1"))
	if !errors.Is(err, rotators.ErrNotApplied) || !strings.Contains(err.Error(), "new1") || !ft.Live().Equal(FaultSecret("old")) {
		t.Fatalf("fail before: %v, live %v", err, ft.Live())
	}
	err = ft.Apply(ctx, rotators.Env{}, FaultSecret("old"), FaultSecret("new2"))
	if err == nil || errors.Is(err, rotators.ErrNotApplied) || !ft.Live().Equal(FaultSecret("new2")) {
		t.Fatalf("fail after: %v, live %v", err, ft.Live())
	}
	if err := ft.Apply(ctx, rotators.Env{}, FaultSecret("new2"), FaultSecret("new3")); err != nil || ft.Applies() != 3 {
		t.Fatalf("after the script: %v, %d applies", err, ft.Applies())
	}
	ft.ScriptVerify(VerifyReject)
	if err := ft.Verify(ctx, rotators.Env{}, FaultSecret("new3")); !errors.Is(err, rotators.ErrRejected) {
		t.Fatalf("scripted rejection: %v", err)
	}
	if err := ft.Verify(ctx, rotators.Env{}, FaultSecret("new3")); err != nil || ft.Verifies() != 2 {
		t.Fatalf("after the script: %v, %d verifies", err, ft.Verifies())
	}
}

// TestNotInIntegrationTests: the integration tests compare the help and OpenAPI of the real
// plugin with the kinds registered in their own process; the fake kind must not be one of them.
func TestNotInIntegrationTests(t *testing.T) {
	const self = "github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testkit"
	out, err := exec.Command("go", "list", "-test", "-deps", "github.com/vault-plugin-rotation/vault-plugin-rotation/integration").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == self {
			t.Fatalf("the integration tests import %s, which registers the fake kind", self)
		}
	}
}
