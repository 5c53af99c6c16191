package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// faultType is a FAKE rotator kind that exists only in this test binary. Its target is an
// in-memory value with switches that inject the faults real targets cannot produce on demand:
// Apply failing before or after it changed the value, Verify rejecting a value or answering like
// an unreachable host, a restore that cannot be done. It is registered once per test binary (in
// init) because rotators.Register panics on a duplicate name. Its error messages deliberately
// carry the secret values, to prove the engine redacts them.
const faultType = "fault-test"

func init() { rotators.Register(faultKind{}) }

// Field names of the fault-test kind.
const (
	fFaultTarget     = "target"      // name of the faultTarget (see newFault)
	fFaultValue      = "value"       // write-only current value to import
	fFaultAdmin      = "admin_role"  // link to another fault-test role
	fFaultNeedsValue = "needs_value" // true: cannot be created without a value
	fFaultMode       = "mode"        // has Allowed values and a Default
	fFaultTags       = "tags"        // a list field
	fFaultGrace      = "grace"       // a duration field
	fFaultSize       = "size"        // an int field
	fFaultAccount    = "account"     // claimed: no two roles may hold the same (rotators.Claimer)
	fFaultGrants     = "grants"      // on an admin: the accounts its dependents may claim (rotators.Grantor)
	fFaultLocation   = "location"    // a change is proven with the current value (rotators.Locator)
	faultUser        = "svc-user"    // username part of every fault-test secret
)

type faultKind struct{}

var _ rotators.Kind = faultKind{}
var _ rotators.Target = (*faultTarget)(nil)

func (faultKind) Name() string { return faultType }

func (faultKind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: fFaultTarget, Kind: rotators.FieldString, Description: "fake target name"},
		{Name: fFaultValue, Kind: rotators.FieldSecret, Description: "current value (import)"},
		{Name: fFaultAdmin, Kind: rotators.FieldRoleRef, RefKind: faultType, Description: "admin role"},
		{Name: fFaultNeedsValue, Kind: rotators.FieldBool, Description: "needs an imported value"},
		{Name: fFaultMode, Kind: rotators.FieldString, Default: "normal", Allowed: []string{"normal", "strict"}, Description: "mode"},
		{Name: fFaultTags, Kind: rotators.FieldList, Description: "tags"},
		{Name: fFaultGrace, Kind: rotators.FieldDuration, Description: "grace"},
		{Name: fFaultSize, Kind: rotators.FieldInt, Description: "size"},
		{Name: fFaultAccount, Kind: rotators.FieldString, Description: "claimed account"},
		{Name: fFaultGrants, Kind: rotators.FieldList, Description: "accounts an admin grants"},
		{Name: fFaultLocation, Kind: rotators.FieldString, Description: "where values are sent"},
	}
}

func (faultKind) Bind(s rotators.Settings) (rotators.Target, error) {
	name := s.String(fFaultTarget)
	if name == "" {
		return nil, fmt.Errorf("%s: required", fFaultTarget)
	}
	faultTargetsMu.Lock()
	defer faultTargetsMu.Unlock()
	t, ok := faultTargets[name]
	if !ok {
		return nil, fmt.Errorf("%s: no fake target %q", fFaultTarget, name)
	}
	return t, nil
}

func (faultKind) ImportSecret(_ rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	v, ok := supplied[fFaultValue]
	if !ok {
		return nil, nil
	}
	if v == "" {
		return nil, fmt.Errorf("%s: empty", fFaultValue)
	}
	return rotators.Secret{"username": faultUser, "password": v}, nil
}

func (faultKind) NeedsImport(s rotators.Settings) string {
	if s.Bool(fFaultNeedsValue) {
		return "value: required for this fake role"
	}
	return ""
}

func (faultKind) Claims(s rotators.Settings, _ map[string]rotators.Linked) []rotators.Claim {
	if a := s.String(fFaultAccount); a != "" {
		return []rotators.Claim{{Field: fFaultAccount, Account: "account " + a}}
	}
	return nil
}

// CheckGrant: a dependent's account must be in its admin's grants; the grant check counts its
// calls so that tests see when it ran.
func (faultKind) CheckGrant(_ context.Context, env rotators.Env, s rotators.Settings) error {
	grantChecks.Add(1)
	admin, ok := env.Linked[fFaultAdmin]
	if !ok || s.String(fFaultAccount) == "" {
		return nil
	}
	if s.String(fFaultAccount) == "unreachable" {
		return fmt.Errorf("%w: scripted outage (authenticated with %s)", rotators.ErrUnreachable, admin.Current["password"])
	}
	if !slices.Contains(admin.Settings.List(fFaultGrants), s.String(fFaultAccount)) {
		// Quotes the admin's value, as a careless driver might: the engine must redact it.
		return fmt.Errorf("%s: not granted by %q (authenticated with %s)", fFaultAccount, admin.Name, admin.Current["password"])
	}
	return nil
}

func (faultKind) LocationFields() []string { return []string{fFaultLocation} }

var grantChecks atomic.Int64

func (faultKind) Describe(_ rotators.Settings, secret rotators.Secret) map[string]interface{} {
	return map[string]interface{}{"dsn": "fake://" + secret["username"] + ":" + secret["password"]}
}

var (
	faultTargetsMu sync.Mutex
	faultTargets   = map[string]*faultTarget{}
)

// applyFault scripts one Apply call.
type applyFault int

const (
	applyOK          applyFault = iota
	applyFailBefore             // the target refuses the change (ErrNotApplied), unchanged
	applyFailAfter              // the live value changed, then the answer is lost (unknown)
	applyLostBefore             // the answer is lost and the change never landed (unknown)
	applyUnreachable            // cannot connect (ErrNotApplied), unchanged
)

// verifyFault scripts one Verify call.
type verifyFault int

const (
	verifyNormal      verifyFault = iota // compare with the live value
	verifyReject                         // ErrRejected whatever the value
	verifyUnreachable                    // not an ErrRejected error
)

// gauge counts calls in flight, across one or more targets.
type gauge struct{ cur, max atomic.Int32 }

func (g *gauge) enter() {
	n := g.cur.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			return
		}
	}
}
func (g *gauge) leave() { g.cur.Add(-1) }

// faultTarget is the fake target: live is the one value it accepts.
type faultTarget struct {
	mu           sync.Mutex
	live         rotators.Secret
	applyScript  []applyFault  // consumed one per Apply; empty = applyOK
	verifyScript []verifyFault // consumed one per Verify; empty = verifyNormal
	down         bool          // every Apply and Verify fails like an unreachable host
	genErr       error
	gate         chan struct{} // when set, Apply waits for it (or ctx)
	inApply      *gauge        // when set, counts Apply calls in flight
	applies      [][2]rotators.Secret
	verifies     int
	lastLinked   map[string]rotators.Linked
	settle       time.Duration // SettleTime
	verifyGate   chan struct{} // when set, Verify waits for it
	finishes     [][2]rotators.Secret
}

// Finish makes the fake a rotators.Finisher: it records the call.
func (f *faultTarget) Finish(_ context.Context, _ rotators.Env, old, next rotators.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finishes = append(f.finishes, [2]rotators.Secret{old.Clone(), next.Clone()})
	return nil
}

// SettleTime makes the fake a rotators.Settler.
func (f *faultTarget) SettleTime() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settle
}

// newFault registers a fresh fake target holding live (nil: no value yet) and returns it.
func newFault(t *testing.T, live rotators.Secret) (*faultTarget, string) {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + fmt.Sprintf("-%d", faultSeq.Add(1))
	ft := &faultTarget{live: live.Clone()}
	faultTargetsMu.Lock()
	faultTargets[name] = ft
	faultTargetsMu.Unlock()
	t.Cleanup(func() {
		faultTargetsMu.Lock()
		delete(faultTargets, name)
		faultTargetsMu.Unlock()
	})
	return ft, name
}

var faultSeq atomic.Int64

func (f *faultTarget) Live() rotators.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live.Clone()
}

func (f *faultTarget) SetLive(s rotators.Secret) {
	f.mu.Lock()
	f.live = s.Clone()
	f.mu.Unlock()
}

func (f *faultTarget) ScriptApply(a ...applyFault) {
	f.mu.Lock()
	f.applyScript = append(f.applyScript, a...)
	f.mu.Unlock()
}

func (f *faultTarget) ScriptVerify(v ...verifyFault) {
	f.mu.Lock()
	f.verifyScript = append(f.verifyScript, v...)
	f.mu.Unlock()
}

func (f *faultTarget) SetDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *faultTarget) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applies)
}

func (f *faultTarget) Generate(ctx context.Context, env rotators.Env, _ rotators.Secret) (rotators.Secret, error) {
	f.mu.Lock()
	genErr := f.genErr
	f.mu.Unlock()
	if genErr != nil {
		return nil, genErr
	}
	pw, err := env.Password(ctx)
	if err != nil {
		return nil, err
	}
	return rotators.Secret{"username": faultUser, "password": pw}, nil
}

func (f *faultTarget) Apply(ctx context.Context, env rotators.Env, from, to rotators.Secret) error {
	f.mu.Lock()
	gate, g := f.gate, f.inApply
	f.mu.Unlock()
	if g != nil {
		g.enter()
		defer g.leave()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, [2]rotators.Secret{from.Clone(), to.Clone()})
	f.lastLinked = env.Linked
	if f.down {
		return rotators.NotApplied(fmt.Errorf("dial fake target: connection refused (setting password %s)", to["password"]))
	}
	step := applyOK
	if len(f.applyScript) > 0 {
		step, f.applyScript = f.applyScript[0], f.applyScript[1:]
	}
	switch step {
	case applyFailBefore:
		return rotators.NotApplied(fmt.Errorf("fake ALTER refused for password %s (old %s)", to["password"], from["password"]))
	case applyFailAfter:
		f.live = to.Clone()
		return fmt.Errorf("fake connection lost after setting password %s", to["password"])
	case applyLostBefore:
		return fmt.Errorf("fake connection lost before the server got password %s", to["password"])
	case applyUnreachable:
		return rotators.NotApplied(fmt.Errorf("dial fake target: i/o timeout (password %s)", to["password"]))
	}
	f.live = to.Clone()
	return nil
}

func (f *faultTarget) Verify(ctx context.Context, _ rotators.Env, s rotators.Secret) error {
	f.mu.Lock()
	gate := f.verifyGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	if f.down {
		return fmt.Errorf("dial fake target: connection refused (login with password %s)", s["password"])
	}
	step := verifyNormal
	if len(f.verifyScript) > 0 {
		step, f.verifyScript = f.verifyScript[0], f.verifyScript[1:]
	}
	switch step {
	case verifyReject:
		return fmt.Errorf("%w: scripted rejection of password %s", rotators.ErrRejected, s["password"])
	case verifyUnreachable:
		return fmt.Errorf("dial fake target: i/o timeout (login with password %s)", s["password"])
	}
	if f.live == nil || !f.live.Equal(s) {
		return fmt.Errorf("%w: password %q is not the live one", rotators.ErrRejected, s["password"])
	}
	return nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t.UTC()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t.UTC()
	c.mu.Unlock()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

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

func secretOf(pw string) rotators.Secret {
	return rotators.Secret{"username": faultUser, "password": pw}
}

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
