package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// listerTarget is a target that lists scripted sessions: each call answers the next list (the
// last one again once they run out), or err.
type listerTarget struct {
	rotators.Target
	lists []rotators.SessionList
	err   error
	calls int
}

func (l *listerTarget) Sessions(context.Context, rotators.Env, rotators.Secret, int) (rotators.SessionList, error) {
	l.calls++
	if l.err != nil {
		return rotators.SessionList{}, l.err
	}
	i := min(l.calls, len(l.lists)) - 1
	return l.lists[i], nil
}

// lookRun is a run whose deploy restarted one consumer, started 10 s ago by the engine's clock.
func lookRun(t *testing.T, env *testEnv, strict bool, l *listerTarget) (*run, *Pending) {
	t.Helper()
	cs, err := consumers.ParseAll([]string{"docker:api"})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pending{Started: env.e.now(), New: rotators.Secret{"username": "app", "password": "n3w-secret-value"}}
	env.clock.Advance(10 * time.Second)
	r := &run{role: &Role{Name: "app", Type: "postgres", StrictConsumers: strict}, target: l,
		deploy: &deployment{consumers: cs}, out: &Outcome{}, secrets: []rotators.Secret{p.New}}
	return r, p
}

func TestLookAgainReportsSessionsOlderThanTheRotation(t *testing.T) {
	env := newEnv(t)
	old := rotators.Session{ID: 7, Account: "app", ApplicationName: "cron n3w-secret-value", ClientAddr: "10.0.0.5", ClientPort: 5555, Age: 30 * time.Second, Started: t0}
	young := rotators.Session{ID: 8, Account: "app", ApplicationName: "api", Age: 2 * time.Second, Started: t0.Add(time.Minute)}
	gone := rotators.Session{ID: 9, Account: "app", ApplicationName: "restarted", Age: time.Minute, Started: t0}
	hidden := rotators.Session{ID: 10, Account: "app", Hidden: true}
	first := rotators.SessionList{Sessions: []rotators.Session{old, young, gone, hidden}, HiddenWhy: "grant it"}
	second := rotators.SessionList{Sessions: []rotators.Session{old, young, hidden}, HiddenWhy: "grant it"}

	l := &listerTarget{lists: []rotators.SessionList{first, second}}
	r, p := lookRun(t, env, false, l)
	if err := env.e.lookAgain(context.Background(), r, p); err != nil {
		t.Fatalf("a warning failed the deploy: %v", err)
	}
	if l.calls != 2 {
		t.Fatalf("listed %d times, want a second look before reporting", l.calls)
	}
	if len(r.out.Forgotten) != 1 || r.out.Forgotten[0].ApplicationName != "cron [redacted]" || r.out.Forgotten[0].AgeSeconds != 30 ||
		r.out.Forgotten[0].ClientAddr != "10.0.0.5" {
		t.Fatalf("forgotten: %+v (want only the old session still open at the second look, redacted)", r.out.Forgotten)
	}
	if len(r.out.Warnings) != 1 || !strings.Contains(r.out.Warnings[0], "1 session(s)") || !strings.Contains(r.out.Warnings[0], "grant it") {
		t.Fatalf("warnings: %q", r.out.Warnings)
	}

	// strict_consumers: the same finding fails the deploy, naming the session.
	l = &listerTarget{lists: []rotators.SessionList{{Sessions: []rotators.Session{old}}}}
	r, p = lookRun(t, env, true, l)
	err := env.e.lookAgain(context.Background(), r, p)
	if err == nil || !strings.Contains(err.Error(), "strict_consumers") || !strings.Contains(err.Error(), "10.0.0.5:5555") {
		t.Fatalf("strict: %v", err)
	}

	// Nothing older than the rotation: nothing to say, one look.
	l = &listerTarget{lists: []rotators.SessionList{{Sessions: []rotators.Session{young}}}}
	r, p = lookRun(t, env, true, l)
	if err := env.e.lookAgain(context.Background(), r, p); err != nil || len(r.out.Forgotten) != 0 || len(r.out.Warnings) != 0 || l.calls != 1 {
		t.Fatalf("clean look: err %v, forgotten %v, warnings %q, %d calls", err, r.out.Forgotten, r.out.Warnings, l.calls)
	}
}

func TestLookAgainThatCannotReadIsAWarningEvenStrict(t *testing.T) {
	env := newEnv(t)
	down := &listerTarget{err: errors.New("timed out")}
	r, p := lookRun(t, env, false, down)
	if err := env.e.lookAgain(context.Background(), r, p); err != nil {
		t.Fatalf("an unreadable look failed a non-strict deploy: %v", err)
	}
	if len(r.out.Warnings) != 1 || !strings.Contains(r.out.Warnings[0], "could not be read") {
		t.Fatalf("warnings: %q", r.out.Warnings)
	}
	// Strict fails on sessions found only: a look that cannot be made would roll back every
	// rotation after its consumers were healthy.
	r, p = lookRun(t, env, true, down)
	if err := env.e.lookAgain(context.Background(), r, p); err != nil || len(r.out.Warnings) != 1 {
		t.Fatalf("strict with an unreadable look: %v, warnings %q", err, r.out.Warnings)
	}

	// A deploy without consumers (health checks only) does not look.
	r, p = lookRun(t, env, true, down)
	r.deploy.consumers = nil
	calls := down.calls
	if err := env.e.lookAgain(context.Background(), r, p); err != nil || down.calls != calls {
		t.Fatalf("a deploy without consumers looked: %v", err)
	}
}

func TestSessionsOfAKindWithoutSessions(t *testing.T) {
	env := newEnv(t)
	_, target := newFault(t, secretOf("v1-value"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "v1-value"
	if _, err := env.e.WriteRole(context.Background(), "f", in); err != nil {
		t.Fatal(err)
	}
	_, err := env.e.Sessions(context.Background(), "f")
	if !IsUserError(err) || err.Error() != "a "+faultType+" role has no sessions" {
		t.Fatalf("sessions of a fault role: %v", err)
	}
	if _, err := env.e.Sessions(context.Background(), "missing"); !errors.Is(err, ErrRoleNotFound) {
		t.Fatalf("sessions of a missing role: %v", err)
	}
}
