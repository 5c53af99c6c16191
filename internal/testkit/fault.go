package testkit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// FaultKindName is the type name of the fake kind.
const FaultKindName = "fault-test"

func init() { rotators.Register(FaultKind{}) }

// Field names of the fault-test kind.
const (
	FieldTarget     = "target"      // name of the FaultTarget (see NewFaultTarget)
	FieldValue      = "value"       // write-only current value to import
	FieldAdmin      = "admin_role"  // link to another fault-test role
	FieldNeedsValue = "needs_value" // true: cannot be created without a value
	FieldMode       = "mode"        // has Allowed values and a Default
	FieldTags       = "labels"      // a list field
	FieldGrace      = "grace"       // a duration field
	FieldSize       = "size"        // an int field
	FieldAccount    = "account"     // claimed: no two roles may hold the same (rotators.Claimer)
	FieldGrants     = "grants"      // on an admin: the accounts its dependents may claim (rotators.Grantor)
	FieldLocation   = "location"    // a change is proven with the current value (rotators.Locator)
)

// FaultUser is the username part of every fault-test secret.
const FaultUser = "svc-user"

// FaultSecret is the fault-test secret with password pw.
func FaultSecret(pw string) rotators.Secret {
	return rotators.Secret{"username": FaultUser, "password": pw}
}

// FaultKind is the FAKE kind; it is registered as FaultKindName when the package is initialized.
type FaultKind struct{}

var (
	_ rotators.Kind     = FaultKind{}
	_ rotators.Claimer  = FaultKind{}
	_ rotators.Grantor  = FaultKind{}
	_ rotators.Locator  = FaultKind{}
	_ rotators.Target   = (*FaultTarget)(nil)
	_ rotators.Finisher = (*FaultTarget)(nil)
	_ rotators.Settler  = (*FaultTarget)(nil)
)

func (FaultKind) Name() string { return FaultKindName }

func (FaultKind) Fields() []rotators.Field {
	return []rotators.Field{
		{Name: FieldTarget, Kind: rotators.FieldString, Description: "fake target name"},
		{Name: FieldValue, Kind: rotators.FieldSecret, Description: "current value (import)"},
		{Name: FieldAdmin, Kind: rotators.FieldRoleRef, RefKind: FaultKindName, Description: "admin role"},
		{Name: FieldNeedsValue, Kind: rotators.FieldBool, Description: "needs an imported value"},
		{Name: FieldMode, Kind: rotators.FieldString, Default: "normal", Allowed: []string{"normal", "strict"}, Description: "mode"},
		{Name: FieldTags, Kind: rotators.FieldList, Description: "labels"},
		{Name: FieldGrace, Kind: rotators.FieldDuration, Description: "grace"},
		{Name: FieldSize, Kind: rotators.FieldInt, Description: "size"},
		{Name: FieldAccount, Kind: rotators.FieldString, Description: "claimed account"},
		{Name: FieldGrants, Kind: rotators.FieldList, Description: "accounts an admin grants"},
		{Name: FieldLocation, Kind: rotators.FieldString, Description: "where values are sent"},
	}
}

// Bind returns the FaultTarget named by the target field.
func (FaultKind) Bind(s rotators.Settings) (rotators.Target, error) {
	name := s.String(FieldTarget)
	if name == "" {
		return nil, fmt.Errorf("%s: required", FieldTarget)
	}
	targetsMu.Lock()
	defer targetsMu.Unlock()
	t, ok := targets[name]
	if !ok {
		return nil, fmt.Errorf("%s: no fake target %q", FieldTarget, name)
	}
	return t, nil
}

func (FaultKind) ImportSecret(_ rotators.Settings, supplied map[string]string) (rotators.Secret, error) {
	v, ok := supplied[FieldValue]
	if !ok {
		return nil, nil
	}
	if v == "" {
		return nil, fmt.Errorf("%s: empty", FieldValue)
	}
	return FaultSecret(v), nil
}

func (FaultKind) NeedsImport(s rotators.Settings) string {
	if s.Bool(FieldNeedsValue) {
		return "value: required for this fake role"
	}
	return ""
}

// Claims makes the kind a rotators.Claimer: a role claims its account field.
func (FaultKind) Claims(s rotators.Settings, linked map[string]rotators.Linked) []rotators.Claim {
	a := s.String(FieldAccount)
	if a == "" {
		return nil
	}
	// Like a postgres login, an account lives where its admin is now (the admin's location).
	if admin, ok := linked[FieldAdmin]; ok && admin.Settings.String(FieldLocation) != "" {
		a += " at " + admin.Settings.String(FieldLocation)
	}
	return []rotators.Claim{{Field: FieldAccount, Account: "account " + a}}
}

// CheckGrant makes the kind a rotators.Grantor: a dependent's account must be in its admin's grants; the account
// "unreachable" answers like a target that cannot be asked (rotators.ErrUnreachable). Calls are counted
// (GrantChecks) so that tests see when it ran.
func (FaultKind) CheckGrant(_ context.Context, env rotators.Env, s rotators.Settings) error {
	grantChecks.Add(1)
	admin, ok := env.Linked[FieldAdmin]
	if !ok || s.String(FieldAccount) == "" {
		return nil
	}
	if s.String(FieldAccount) == "unreachable" {
		return fmt.Errorf("%w: scripted outage (authenticated with %s)", rotators.ErrUnreachable, admin.Current["password"])
	}
	if !slices.Contains(admin.Settings.List(FieldGrants), s.String(FieldAccount)) {
		// Quotes the admin's value, as a careless driver might: the engine must redact it.
		return fmt.Errorf("%s: not granted by %q (authenticated with %s)", FieldAccount, admin.Name, admin.Current["password"])
	}
	return nil
}

// IdentityFields makes the kind a rotators.Identifier: the account names whose value a role holds.
func (FaultKind) IdentityFields() []string { return []string{FieldAccount} }

// LocationFields makes the kind a rotators.Locator.
func (FaultKind) LocationFields() []string { return []string{FieldLocation} }

var grantChecks atomic.Int64

// GrantChecks is the number of CheckGrant calls so far, in this test binary.
func GrantChecks() int64 { return grantChecks.Load() }

func (FaultKind) Describe(_ rotators.Settings, secret rotators.Secret) map[string]interface{} {
	return map[string]interface{}{"dsn": "fake://" + secret["username"] + ":" + secret["password"]}
}

var (
	targetsMu sync.Mutex
	targets   = map[string]*FaultTarget{}
	targetSeq atomic.Int64
)

// ApplyFault scripts one Apply call (FaultTarget.ScriptApply).
type ApplyFault int

const (
	ApplyOK          ApplyFault = iota // change the live value
	ApplyFailBefore                    // the target refuses the change (rotators.NotApplied), unchanged
	ApplyFailAfter                     // the live value changed, then the answer is lost (unknown)
	ApplyLostBefore                    // the answer is lost and the change never landed (unknown)
	ApplyUnreachable                   // cannot connect (rotators.NotApplied), unchanged
)

// VerifyFault scripts one Verify call (FaultTarget.ScriptVerify).
type VerifyFault int

const (
	VerifyNormal      VerifyFault = iota // compare with the live value
	VerifyReject                         // rotators.ErrRejected whatever the value
	VerifyUnreachable                    // not an ErrRejected error
)

// Gauge counts calls in flight (Cur) and the most seen at once (Max), across one or more targets or any other code
// that calls Enter and Leave.
type Gauge struct{ Cur, Max atomic.Int32 }

// Enter counts one more call in flight.
func (g *Gauge) Enter() {
	n := g.Cur.Add(1)
	for {
		m := g.Max.Load()
		if n <= m || g.Max.CompareAndSwap(m, n) {
			return
		}
	}
}

// Leave counts one call less in flight.
func (g *Gauge) Leave() { g.Cur.Add(-1) }

// FaultTarget is the fake target: live is the one value it accepts. Its methods are safe for concurrent use.
type FaultTarget struct {
	mu           sync.Mutex
	live         rotators.Secret
	applyScript  []ApplyFault  // consumed one per Apply; empty = ApplyOK
	verifyScript []VerifyFault // consumed one per Verify; empty = VerifyNormal
	down         bool          // every Apply and Verify fails like an unreachable host
	genErr       error
	gate         <-chan struct{} // when set, Apply waits for it (or ctx)
	inApply      *Gauge          // when set, counts Apply calls in flight
	applies      [][2]rotators.Secret
	verifies     int
	lastLinked   map[string]rotators.Linked
	settle       time.Duration   // SettleTime
	verifyGate   <-chan struct{} // when set, Verify waits for it (or ctx)
	finishes     [][2]rotators.Secret
}

// NewFaultTarget registers a fresh fake target holding live (nil: no value yet) under a new name, for the life of the
// test, and returns it with its name (the value of the role's target field).
func NewFaultTarget(tb testing.TB, live rotators.Secret) (*FaultTarget, string) {
	tb.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name()) + fmt.Sprintf("-%d", targetSeq.Add(1))
	return AddFaultTarget(tb, name, live), name
}

// AddFaultTarget registers a fresh fake target holding live under name, for the life of the test. The name must not be
// in use.
func AddFaultTarget(tb testing.TB, name string, live rotators.Secret) *FaultTarget {
	tb.Helper()
	ft := &FaultTarget{live: live.Clone()}
	targetsMu.Lock()
	_, dup := targets[name]
	if !dup {
		targets[name] = ft
	}
	targetsMu.Unlock()
	if dup {
		tb.Fatalf("fake target %q already registered", name)
	}
	tb.Cleanup(func() {
		targetsMu.Lock()
		delete(targets, name)
		targetsMu.Unlock()
	})
	return ft
}

// Live is the value the target accepts now (nil: none).
func (f *FaultTarget) Live() rotators.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live.Clone()
}

// SetLive changes the live value behind the engine's back.
func (f *FaultTarget) SetLive(s rotators.Secret) {
	f.mu.Lock()
	f.live = s.Clone()
	f.mu.Unlock()
}

// ScriptApply queues the outcomes of the next Apply calls; once they are used up, Apply succeeds.
func (f *FaultTarget) ScriptApply(a ...ApplyFault) {
	f.mu.Lock()
	f.applyScript = append(f.applyScript, a...)
	f.mu.Unlock()
}

// ScriptVerify queues the outcomes of the next Verify calls; once they are used up, Verify compares with the live value.
func (f *FaultTarget) ScriptVerify(v ...VerifyFault) {
	f.mu.Lock()
	f.verifyScript = append(f.verifyScript, v...)
	f.mu.Unlock()
}

// SetDown makes every Apply and Verify fail like an unreachable host (true) or stops it (false).
func (f *FaultTarget) SetDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// SetGenerateError makes Generate fail with err (nil: succeed).
func (f *FaultTarget) SetGenerateError(err error) {
	f.mu.Lock()
	f.genErr = err
	f.mu.Unlock()
}

// SetApplyGate makes Apply wait until gate is closed (or its context ends) before it does anything; nil: no wait.
// When inApply is not nil, it counts the Apply calls in flight, waiting ones included.
func (f *FaultTarget) SetApplyGate(gate <-chan struct{}, inApply *Gauge) {
	f.mu.Lock()
	f.gate, f.inApply = gate, inApply
	f.mu.Unlock()
}

// SetVerifyGate makes Verify wait until gate is closed (or its context ends); nil: no wait.
func (f *FaultTarget) SetVerifyGate(gate <-chan struct{}) {
	f.mu.Lock()
	f.verifyGate = gate
	f.mu.Unlock()
}

// SetSettleTime sets what SettleTime returns.
func (f *FaultTarget) SetSettleTime(d time.Duration) {
	f.mu.Lock()
	f.settle = d
	f.mu.Unlock()
}

// Applies is the number of Apply calls that passed the gate.
func (f *FaultTarget) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applies)
}

// ApplyCalls is the (from, to) of every Apply call that passed the gate, in order.
func (f *FaultTarget) ApplyCalls() [][2]rotators.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clonePairs(f.applies)
}

// Verifies is the number of Verify calls that passed the gate.
func (f *FaultTarget) Verifies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.verifies
}

// Finishes is the (old, new) of every Finish call, in order.
func (f *FaultTarget) Finishes() [][2]rotators.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clonePairs(f.finishes)
}

// LastLinked is the Env.Linked of the last Apply call.
func (f *FaultTarget) LastLinked() map[string]rotators.Linked {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastLinked
}

func clonePairs(p [][2]rotators.Secret) [][2]rotators.Secret {
	out := make([][2]rotators.Secret, len(p))
	for i, s := range p {
		out[i] = [2]rotators.Secret{s[0].Clone(), s[1].Clone()}
	}
	return out
}

// Finish makes the fake a rotators.Finisher: it records the call.
func (f *FaultTarget) Finish(_ context.Context, _ rotators.Env, old, next rotators.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finishes = append(f.finishes, [2]rotators.Secret{old.Clone(), next.Clone()})
	return nil
}

// SettleTime makes the fake a rotators.Settler (see SetSettleTime).
func (f *FaultTarget) SettleTime() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settle
}

func (f *FaultTarget) Generate(ctx context.Context, env rotators.Env, _ rotators.Secret) (rotators.Secret, error) {
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
	return FaultSecret(pw), nil
}

func (f *FaultTarget) Apply(ctx context.Context, env rotators.Env, from, to rotators.Secret) error {
	f.mu.Lock()
	gate, g := f.gate, f.inApply
	f.mu.Unlock()
	if g != nil {
		g.Enter()
		defer g.Leave()
	}
	if err := waitGate(ctx, gate); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, [2]rotators.Secret{from.Clone(), to.Clone()})
	f.lastLinked = env.Linked
	if f.down {
		return rotators.NotApplied(fmt.Errorf("dial fake target: connection refused (setting password %s)", to["password"]))
	}
	step := ApplyOK
	if len(f.applyScript) > 0 {
		step, f.applyScript = f.applyScript[0], f.applyScript[1:]
	}
	switch step {
	case ApplyFailBefore:
		return rotators.NotApplied(fmt.Errorf("fake ALTER refused for password %s (old %s)", to["password"], from["password"]))
	case ApplyFailAfter:
		f.live = to.Clone()
		return fmt.Errorf("fake connection lost after setting password %s", to["password"])
	case ApplyLostBefore:
		return fmt.Errorf("fake connection lost before the server got password %s", to["password"])
	case ApplyUnreachable:
		return rotators.NotApplied(fmt.Errorf("dial fake target: i/o timeout (password %s)", to["password"]))
	}
	f.live = to.Clone()
	return nil
}

func (f *FaultTarget) Verify(ctx context.Context, _ rotators.Env, s rotators.Secret) error {
	f.mu.Lock()
	gate := f.verifyGate
	f.mu.Unlock()
	if err := waitGate(ctx, gate); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	if f.down {
		return fmt.Errorf("dial fake target: connection refused (login with password %s)", s["password"])
	}
	step := VerifyNormal
	if len(f.verifyScript) > 0 {
		step, f.verifyScript = f.verifyScript[0], f.verifyScript[1:]
	}
	switch step {
	case VerifyReject:
		return fmt.Errorf("%w: scripted rejection of password %s", rotators.ErrRejected, s["password"])
	case VerifyUnreachable:
		return fmt.Errorf("dial fake target: i/o timeout (login with password %s)", s["password"])
	}
	if f.live == nil || !f.live.Equal(s) {
		return fmt.Errorf("%w: password %q is not the live one", rotators.ErrRejected, s["password"])
	}
	return nil
}

// waitGate waits until gate is closed (nil: no wait) or ctx ends.
func waitGate(ctx context.Context, gate <-chan struct{}) error {
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
