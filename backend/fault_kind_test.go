package backend

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testkit"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// The FAKE rotator kind "fault-test" and the fake clock live in internal/testkit (shared with the paths tests); these
// short names keep the engine tests readable.
const faultType = testkit.FaultKindName

// Field names of the fault-test kind.
const (
	fFaultTarget     = testkit.FieldTarget
	fFaultValue      = testkit.FieldValue
	fFaultAdmin      = testkit.FieldAdmin
	fFaultNeedsValue = testkit.FieldNeedsValue
	fFaultMode       = testkit.FieldMode
	fFaultTags       = testkit.FieldTags
	fFaultGrace      = testkit.FieldGrace
	fFaultSize       = testkit.FieldSize
	fFaultAccount    = testkit.FieldAccount
	fFaultGrants     = testkit.FieldGrants
	fFaultLocation   = testkit.FieldLocation
	faultUser        = testkit.FaultUser
)

type (
	faultTarget = testkit.FaultTarget
	applyFault  = testkit.ApplyFault
	verifyFault = testkit.VerifyFault
	gauge       = testkit.Gauge
	fakeClock   = testkit.Clock
)

const (
	applyOK          = testkit.ApplyOK
	applyFailBefore  = testkit.ApplyFailBefore
	applyFailAfter   = testkit.ApplyFailAfter
	applyLostBefore  = testkit.ApplyLostBefore
	applyUnreachable = testkit.ApplyUnreachable

	verifyNormal      = testkit.VerifyNormal
	verifyReject      = testkit.VerifyReject
	verifyUnreachable = testkit.VerifyUnreachable
)

// newFault registers a fresh fake target holding live (nil: no value yet) and returns it with its name.
func newFault(t testing.TB, live rotators.Secret) (*faultTarget, string) {
	t.Helper()
	return testkit.NewFaultTarget(t, live)
}

func newClock(t time.Time) *fakeClock { return testkit.NewClock(t) }

// grantChecks counts the fake kind's CheckGrant calls.
var grantChecks grantCounter

type grantCounter struct{}

func (grantCounter) Load() int64 { return testkit.GrantChecks() }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var t0 = time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC)

// testEnv is an engine over in-memory storage with a settable clock and a captured log.
type testEnv struct {
	e       *Engine
	storage *logical.InmemStorage
	clock   *fakeClock
	logs    *syncBuffer
	sys     *logical.StaticSystemView
}

type envOption func(*logical.StaticSystemView)

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	return newEnvOn(t, &logical.InmemStorage{}, newClock(t0), opts...)
}

// newEnvOn starts an engine over existing storage (a plugin restart) and initializes it.
func newEnvOn(t *testing.T, storage *logical.InmemStorage, clock *fakeClock, opts ...envOption) *testEnv {
	t.Helper()
	logs := &syncBuffer{}
	sys := &logical.StaticSystemView{}
	for _, o := range opts {
		o(sys)
	}
	e := New(&logical.BackendConfig{
		StorageView: storage,
		Logger:      hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
		System:      sys,
	})
	e.SetClock(clock)
	if err := e.Initialize(context.Background()); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	t.Cleanup(e.Close)
	return &testEnv{e: e, storage: storage, clock: clock, logs: logs, sys: sys}
}

func ptr[T any](v T) *T { return &v }

// engineOver starts an engine over storage (a wrapper that injects storage faults) with clock,
// and imports role name holding value on a fresh fake target.
func engineOver(t *testing.T, storage logical.Storage, clock *fakeClock, name, value string) (*Engine, *faultTarget) {
	t.Helper()
	e := New(&logical.BackendConfig{StorageView: storage, System: &logical.StaticSystemView{}})
	e.SetClock(clock)
	if err := e.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ft, target := newFault(t, secretOf(value))
	in := faultRole(target)
	in.Secrets[fFaultValue] = value
	if _, err := e.WriteRole(context.Background(), name, in); err != nil {
		t.Fatal(err)
	}
	return e, ft
}

// faultRole is a RoleInput for a fault-test role on target, rotated every hour.
func faultRole(target string) RoleInput {
	return RoleInput{
		Type:           faultType,
		RotationPeriod: ptr(time.Hour),
		Settings:       map[string]interface{}{fFaultTarget: target},
		Secrets:        map[string]string{},
	}
}

// importRole creates a fault-test role importing value, with a fresh target holding it.
func (te *testEnv) importRole(t *testing.T, name, value string, mod ...func(*RoleInput)) *faultTarget {
	t.Helper()
	live := rotators.Secret{"username": faultUser, "password": value}
	ft, target := newFault(t, live)
	in := faultRole(target)
	in.Secrets[fFaultValue] = value
	for _, m := range mod {
		m(&in)
	}
	res, err := te.e.WriteRole(context.Background(), name, in)
	if err != nil {
		t.Fatalf("WriteRole(%s): %v", name, err)
	}
	if !res.Created || !res.Imported || res.Rotation != nil {
		t.Fatalf("WriteRole(%s) = %+v, want created+imported without rotation", name, res)
	}
	return ft
}

func (te *testEnv) state(t *testing.T, name string) *State {
	t.Helper()
	st, err := te.e.loadState(context.Background(), name)
	if err != nil {
		t.Fatalf("loadState: %v", err)
	}
	return st
}

func (te *testEnv) pendingRec(t *testing.T, name string) *Pending {
	t.Helper()
	p, err := te.e.loadPending(context.Background(), name)
	if err != nil {
		t.Fatalf("loadPending: %v", err)
	}
	return p
}

func (te *testEnv) history(t *testing.T, name string) []HistoryEntry {
	t.Helper()
	h, err := te.e.History(context.Background(), name)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return h
}

func (te *testEnv) putPending(t *testing.T, name string, p *Pending) {
	t.Helper()
	if err := putJSON(context.Background(), te.storage, pendingPrefix+name, p); err != nil {
		t.Fatal(err)
	}
	te.e.pending.add(name)
	te.e.keySets.drop(name) // as the engine's own write of the record does
}

// eventually polls cond every millisecond until it holds or 5 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func secretOf(pw string) rotators.Secret { return testkit.FaultSecret(pw) }

func wantUserError(t *testing.T, err error, mention string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a user error mentioning %q, got nil", mention)
	}
	if !IsUserError(err) {
		t.Fatalf("want a user error, got %T: %v", err, err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("error %q does not mention %q", err, mention)
	}
}

func stepNames(steps []StepResult) []string {
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	return names
}

var errTest = errors.New("test error")

// queued returns when name is due in the in-memory schedule (zero when not scheduled).
func (q *dueQueue) queued(name string) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.index[name]; ok {
		return it.due
	}
	return time.Time{}
}
