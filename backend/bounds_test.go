package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
	// The real token kind: it takes a supplied value (rotate/NAME value=...).
	_ "github.com/vault-plugin-rotation/vault-plugin-rotation/rotators/token"
)

// Every input of a role write is bounded: a value out of bounds is a user error that names the
// field, never quotes a secret, and leaves nothing stored and nothing sent to the target.
func TestWriteRoleBounds(t *testing.T) {
	te := newEnv(t, func(s *logical.StaticSystemView) {
		s.SetPasswordPolicy("huge", func() (string, error) { return strings.Repeat("p", MaxPasswordBytes+1), nil })
	})
	many := func(n int, item string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", item, i)
		}
		return out
	}
	secretValue := "s3cret-" + strings.Repeat("x", 9000)
	cases := []struct {
		name    string
		mod     func(*RoleInput)
		mention string
	}{
		{"rotation_period above 5 years", func(in *RoleInput) { in.RotationPeriod = ptr(MaxRotationPeriod + time.Second) }, "rotation_period: must be at most 43800h"},
		{"rotation_window above a year", func(in *RoleInput) {
			in.RotationPeriod, in.RotationSchedule = nil, ptr("0 0 1 * *")
			in.RotationWindow = ptr(MaxRotationWindow + time.Second)
		}, "rotation_window: must be at most 8760h"},
		{"health_timeout above 1h", func(in *RoleInput) { in.HealthTimeout = ptr(MaxHealthTimeout + time.Second) }, "health_timeout: must be between 1s and 1h"},
		{"rotation_schedule too long", func(in *RoleInput) {
			minutes := many(60, "")
			in.RotationPeriod, in.RotationSchedule = nil, ptr(strings.Join(minutes, ",")+" 0 1 * *") // valid cron, 176 bytes
		}, "rotation_schedule: longer than 128 bytes"},
		{"password_policy too long", func(in *RoleInput) { in.PasswordPolicy = ptr(strings.Repeat("p", maxPolicyNameLen+1)) }, "password_policy: longer than 128 bytes"},
		{"password_policy makes huge passwords", func(in *RoleInput) { in.PasswordPolicy = ptr("huge") }, `password_policy "huge": makes passwords of 513 bytes, more than 512`},
		{"too many consumers", func(in *RoleInput) { in.Consumers = ptr(many(MaxConsumers+1, "docker:c")) }, "consumers: more than 16 items"},
		{"consumer too long", func(in *RoleInput) { in.Consumers = ptr([]string{"docker:" + strings.Repeat("c", maxConsumerLen)}) }, "consumers: item 1 is longer than 256 bytes"},
		{"too many health checks", func(in *RoleInput) { in.HealthChecks = ptr(many(MaxHealthChecks+1, "tcp://127.0.0.1:")) }, "health_checks: more than 16 items"},
		{"health check too long", func(in *RoleInput) {
			in.HealthChecks = ptr([]string{"http://127.0.0.1/" + strings.Repeat("h", maxHealthCheckLen)})
		}, "health_checks: item 1 is longer than 512 bytes"},
		{"string setting too long", func(in *RoleInput) { in.Settings[fFaultMode] = strings.Repeat("m", rotators.DefaultMaxLen+1) }, "mode: longer than 1024 bytes"},
		{"role reference too long", func(in *RoleInput) { in.Settings[fFaultAdmin] = strings.Repeat("r", rotators.MaxRoleRefLen+1) }, "admin_role: longer than 128 bytes"},
		{"list with too many items", func(in *RoleInput) { in.Settings[fFaultTags] = many(rotators.DefaultMaxItems+1, "t") }, "labels: more than 32 items"},
		{"list item too long", func(in *RoleInput) {
			in.Settings[fFaultTags] = []string{"a", strings.Repeat("t", rotators.DefaultMaxLen+1)}
		}, "labels: item 2 is longer than 1024 bytes"},
		{"int above its range", func(in *RoleInput) { in.Settings[fFaultSize] = rotators.DefaultMaxInt + 1 }, "size: must be between 0 and 1048576"},
		{"int below its range", func(in *RoleInput) { in.Settings[fFaultSize] = int64(-1) }, "size: must be between 0 and 1048576"},
		{"duration above its range", func(in *RoleInput) { in.Settings[fFaultGrace] = int(rotators.DefaultMaxDuration/time.Second) + 1 }, "grace: must be between 0s and 8760h"},
		{"write-only value too long", func(in *RoleInput) { in.Secrets[fFaultValue] = secretValue }, "value: longer than 8192 bytes"},
		{"imported value too large to keep", func(in *RoleInput) { in.Secrets[fFaultValue] = "s3cret-" + strings.Repeat("x", rotators.MaxValueBytes) }, "value: the value takes"},
		// Short, but JSON escapes each '<' to six bytes in storage.
		{"imported value too large once escaped", func(in *RoleInput) { in.Secrets[fFaultValue] = "s3cret-" + strings.Repeat("<", 1000) }, "value: the value takes"},
		{"role too large as a whole", func(in *RoleInput) {
			in.Settings[fFaultTags] = many(rotators.DefaultMaxItems, strings.Repeat("t", rotators.DefaultMaxLen-4))
		}, "labels: the role would take"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ft, target := newFault(t, secretOf("pw-bounds"))
			in := faultRole(target)
			in.Secrets[fFaultValue] = "pw-bounds"
			tc.mod(&in)
			_, err := te.e.WriteRole(context.Background(), "b", in)
			wantUserError(t, err, tc.mention)
			if strings.Contains(err.Error(), "s3cret-") {
				t.Fatalf("error quotes the supplied value: %.200s", err)
			}
			if v, _ := te.e.ReadRole(context.Background(), "b"); v != nil {
				t.Fatal("a role was stored")
			}
			sent := ft.Applies() + ft.Verifies()
			if sent != 0 {
				t.Fatalf("the target was asked %d times", sent)
			}
		})
	}

	// Every bound admits its limit: the cases above fail for being one past it.
	_, target := newFault(t, secretOf("pw-bounds"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-bounds"
	in.RotationPeriod = ptr(MaxRotationPeriod)
	in.HealthTimeout = ptr(MaxHealthTimeout)
	in.PasswordPolicy = ptr(strings.Repeat("p", maxPolicyNameLen))
	in.Consumers = ptr(many(MaxConsumers, "docker:c"))
	in.HealthChecks = ptr(many(MaxHealthChecks, "tcp://127.0.0.1:1"))
	in.Settings[fFaultTags] = many(rotators.DefaultMaxItems, "t")
	te.allowConsumers(t, "docker:c*")
	in.Settings[fFaultSize] = rotators.DefaultMaxInt
	in.Settings[fFaultGrace] = int(rotators.DefaultMaxDuration / time.Second)
	te.sys.SetPasswordPolicy(*in.PasswordPolicy, func() (string, error) { return strings.Repeat("p", MaxPasswordBytes), nil })
	if _, err := te.e.WriteRole(context.Background(), "b", in); err != nil {
		t.Fatalf("a role at every bound: %v", err)
	}
	long := rotators.Secret{"username": faultUser, "password": strings.Repeat("x", rotators.MaxValueBytes-40)}
	if n := rotators.ValueSize(long); n > rotators.MaxValueBytes || n < rotators.MaxValueBytes-10 {
		t.Fatalf("test value takes %d bytes", n)
	}
	ft, target := newFault(t, long)
	in = faultRole(target)
	in.Secrets[fFaultValue] = long["password"]
	if _, err := te.e.WriteRole(context.Background(), "c", in); err != nil {
		t.Fatalf("a value just inside the bound: %v", err)
	}
	if ft.Applies() != 0 {
		t.Fatal("import changed the target")
	}
}

// The value an operator supplies (rotate/NAME value=...) is bounded as it will be stored, before
// the rotation starts: nothing is stored, no failure is counted, the role keeps its value.
func TestRotateToBounds(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	_, err := te.e.WriteRole(ctx, "tok", RoleInput{Type: "token", RotationPeriod: ptr(time.Hour), AutoRotate: ptr(false),
		Settings: map[string]interface{}{}, Secrets: map[string]string{"value": "current-token-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ value, mention string }{
		{"s3cret-" + strings.Repeat("x", rotators.MaxValueBytes), "value: longer than 4352 bytes"},
		{"s3cret-" + strings.Repeat("x", 4090), "value: longer than 4096 bytes"},
		{"s3cret-" + strings.Repeat("<", 1000), "value: the value takes"},
	} {
		_, err := te.e.RotateTo(ctx, "tok", tc.value)
		wantUserError(t, err, tc.mention)
		if strings.Contains(err.Error(), "s3cret-") {
			t.Fatalf("error quotes the supplied value: %.200s", err)
		}
	}
	st := te.state(t, "tok")
	if len(st.Versions) != 1 || st.Versions[0].Secret["value"] != "current-token-1" || st.ConsecutiveFailures != 0 || st.LastOutcome != "" {
		t.Fatalf("state after refused values: %+v", st)
	}
	if p := te.pendingRec(t, "tok"); p != nil {
		t.Fatal("a pending record was stored")
	}
	if h := te.history(t, "tok"); len(h) != 0 {
		t.Fatalf("refused values were recorded as rotations: %+v", h)
	}
	// A value just inside the bounds rotates.
	if out, err := te.e.RotateTo(ctx, "tok", strings.Repeat("v", 4096)); err != nil || !out.Success {
		t.Fatalf("rotate to a 4096-byte token: %+v %v", out, err)
	}
}

func TestConfigBounds(t *testing.T) {
	good := DefaultConfig()
	for _, tc := range []struct {
		mod     func(*Config)
		mention string
	}{
		{func(c *Config) { c.RetryBase, c.RetryMax = MaxRetry+time.Second, MaxRetry+time.Second }, "retry_base: must be at most 24h"},
		{func(c *Config) { c.RetryMax = MaxRetry + time.Second }, "retry_max: must be at most 24h"},
		{func(c *Config) { c.RetryBase = -time.Second }, "retry_base:"},
		{func(c *Config) { c.MaxFailures = MaxMaxFailures + 1 }, "max_failures: must be between 1 and 1000"},
		{func(c *Config) { c.NotifyURL = "https://hooks.example/" + strings.Repeat("n", maxNotifyURLLen) }, "notify_url: longer than 2048 bytes"},
		{func(c *Config) { c.DockerHost = "unix:///" + strings.Repeat("d", maxDockerHostLen) }, "docker_host: longer than 1024 bytes"},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.mention) {
			t.Errorf("Validate(%+v) = %v, want %q", c, err, tc.mention)
		}
	}
	at := good
	at.RetryBase, at.RetryMax, at.MaxFailures = MaxRetry, MaxRetry, MaxMaxFailures
	if err := at.Validate(); err != nil {
		t.Fatalf("a config at its bounds: %v", err)
	}
}

// The bounds keep a role's storage entries far inside Vault's: the largest possible state (100
// kept versions, each value at its bound, the longest error text the state holds aside) and the
// largest role take less than 480 KiB together, under the 512 KiB this engine aims at and half
// of integrated storage's default max_entry_size of 1 MiB (docs/decisions.md, "Every input is
// bounded").
func TestStorageBudget(t *testing.T) {
	value := rotators.Secret{"private_key": "", "kid": "k"}
	value["private_key"] = strings.Repeat("k", rotators.MaxValueBytes-rotators.ValueSize(value))
	if n := rotators.ValueSize(value); n != rotators.MaxValueBytes {
		t.Fatalf("value takes %d bytes", n)
	}
	st := State{LastRotated: t0, RetryAt: t0, RemindedAt: t0, LastOutcome: OutcomeUnresolved, ConsecutiveFailures: math.MaxInt32}
	for i := 0; i < MaxVersionsKept; i++ {
		st.Versions = append(st.Versions, Version{Number: math.MaxInt32 - i, Created: t0.Add(time.Duration(i) * time.Nanosecond), Trigger: TriggerRecovery, Secret: value})
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 440<<10 {
		t.Fatalf("the largest state takes %d bytes, more than 440 KiB", len(b))
	}
	if total := len(b) + MaxRoleBytes; total > 480<<10 {
		t.Fatalf("the largest state and role take %d bytes together, more than 480 KiB", total)
	}
	// A pending record holds at most three values (old, new, displaced).
	p, _ := json.Marshal(Pending{Old: value, New: value, Displaced: value, OldVersion: math.MaxInt32, NewVersion: math.MaxInt32,
		Trigger: TriggerRecovery, Phase: PhaseRedeploying, Started: t0, SettleAt: t0, RetryAt: t0, Attempts: math.MaxInt32, Deployed: true})
	if len(p) > 4*rotators.MaxValueBytes {
		t.Fatalf("the largest pending record takes %d bytes", len(p))
	}
}
