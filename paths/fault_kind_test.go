package paths_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// faultType is a FAKE rotator kind that exists only in this test binary: an in-memory target
// whose Apply can be made to fail on demand, which no real target allows. It lets the API paths
// be tested without a database. Registered once (init): rotators.Register panics on duplicates.
const faultType = "fault-test"

func init() { rotators.Register(faultKind{}) }

type faultKind struct{}

var _ rotators.Kind = faultKind{}
var _ rotators.Target = (*faultTarget)(nil)

func (faultKind) Name() string { return faultType }

func (faultKind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: "target", Kind: rotators.FieldString, Description: "Name of the fake target."},
		{Name: "value", Kind: rotators.FieldSecret, Description: "Current value to import. Write-only."},
		{Name: "tags", Kind: rotators.FieldList, Description: "A list field."},
		{Name: "size", Kind: rotators.FieldInt, Description: "An int field."},
	}
}

func (faultKind) Bind(s rotators.Settings) (rotators.Target, error) {
	faultMu.Lock()
	defer faultMu.Unlock()
	t, ok := faultTargets[s.String("target")]
	if !ok {
		return nil, fmt.Errorf("target: no fake target %q", s.String("target"))
	}
	return t, nil
}

func (faultKind) ImportSecret(_ rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	v, ok := supplied["value"]
	if !ok {
		return nil, nil
	}
	return rotators.Secret{"username": "svc", "password": v}, nil
}

func (faultKind) NeedsImport(rotators.Settings) string { return "" }

func (faultKind) Describe(_ rotators.Settings, s rotators.Secret) map[string]interface{} {
	return map[string]interface{}{"dsn": "fake://" + s["username"] + ":" + s["password"]}
}

var (
	faultMu      sync.Mutex
	faultTargets = map[string]*faultTarget{}
	faultSeq     atomic.Int64
)

type faultTarget struct {
	mu        sync.Mutex
	live      rotators.Secret
	failApply int // the next failApply Apply calls fail without changing the value
}

func newFault(t *testing.T, livePassword string) (*faultTarget, string) {
	t.Helper()
	name := fmt.Sprintf("target-%d", faultSeq.Add(1))
	ft := &faultTarget{}
	if livePassword != "" {
		ft.live = rotators.Secret{"username": "svc", "password": livePassword}
	}
	faultMu.Lock()
	faultTargets[name] = ft
	faultMu.Unlock()
	t.Cleanup(func() {
		faultMu.Lock()
		delete(faultTargets, name)
		faultMu.Unlock()
	})
	return ft, name
}

func (f *faultTarget) Live() rotators.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live.Clone()
}

func (f *faultTarget) FailNextApply() {
	f.mu.Lock()
	f.failApply++
	f.mu.Unlock()
}

func (f *faultTarget) Generate(ctx context.Context, env rotators.Env, _ rotators.Secret) (rotators.Secret, error) {
	pw, err := env.Password(ctx)
	if err != nil {
		return nil, err
	}
	return rotators.Secret{"username": "svc", "password": pw}, nil
}

func (f *faultTarget) Apply(_ context.Context, _ rotators.Env, _, to rotators.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failApply > 0 {
		f.failApply--
		return rotators.NotApplied(fmt.Errorf("fake target refused password %s", to["password"]))
	}
	f.live = to.Clone()
	return nil
}

func (f *faultTarget) Verify(_ context.Context, _ rotators.Env, s rotators.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil || !f.live.Equal(s) {
		return fmt.Errorf("%w: password %s", rotators.ErrRejected, s["password"])
	}
	return nil
}
