package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testspy"
)

// allowConsumers sets the mount's allowed_consumers.
func (te *testEnv) allowConsumers(t *testing.T, globs ...string) {
	t.Helper()
	c := te.e.Config()
	c.AllowedConsumers = globs
	if err := te.e.SetConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// allowHealthTargets sets the mount's allowed_health_targets.
func (te *testEnv) allowHealthTargets(t *testing.T, items ...string) {
	t.Helper()
	c := te.e.Config()
	c.AllowedHealthTargets = items
	if err := te.e.SetConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// A role write naming a consumer or a health target outside the allow-lists is the caller's
// mistake: refused naming the field, nothing stored, the target and Docker never asked.
func TestRoleWriteOutsideAllowLists(t *testing.T) {
	te := newEnv(t)
	host, accepted := testspy.UnixSpy(t)
	c := te.e.Config()
	c.DockerHost = host
	c.AllowedConsumers = []string{"docker:api-*", "compose:cockpit/*"}
	c.AllowedHealthTargets = []string{"127.0.0.1/32", "*.internal:443"}
	if err := te.e.SetConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		consumers []string
		checks    []string
		mention   string
	}{
		{"default none", []string{"docker:db"}, nil, `consumers: "docker:db" is not in rotation/config allowed_consumers`},
		{"second of two", []string{"docker:api-1", "docker:vault"}, nil, `consumers: "docker:vault"`},
		{"another project", []string{"compose:cockpit-evil/x"}, nil, `consumers: "compose:cockpit-evil/x"`},
		{"a glob is not a prefix of the kind", []string{"compose:api-1/x"}, nil, `consumers: "compose:api-1/x"`},
		{"path tricks", []string{"docker:api-1/../x"}, nil, "consumers:"},
		{"another loopback address", nil, []string{"http://127.0.0.2:8080/health"}, `health_checks: "http://127.0.0.2:8080/health" (127.0.0.2:8080) is not in rotation/config allowed_health_targets`},
		{"a name that resolves into the CIDR", nil, []string{"http://localhost:8080/health"}, `health_checks: "http://localhost:8080/health" (localhost:8080)`},
		{"the allowed name on another port", nil, []string{"https://db.internal:8443/"}, "health_checks:"},
		{"a name that only ends like one", nil, []string{"https://db.internal.evil.com/"}, "health_checks:"},
		{"a mapped address outside", nil, []string{"http://[::ffff:10.0.0.1]/"}, "(10.0.0.1:80)"},
		{"a name read as a number", nil, []string{"http://127.1/"}, "health_checks:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft, target := newFault(t, secretOf("pw-allow"))
			in := faultRole(target)
			in.Consumers, in.HealthChecks = ptr(tc.consumers), ptr(tc.checks)
			_, err := te.e.WriteRole(context.Background(), "a", in)
			wantUserError(t, err, tc.mention)
			if r, _ := te.e.ReadRole(context.Background(), "a"); r != nil {
				t.Fatal("a role was stored")
			}
			if n := ft.Applies(); n != 0 {
				t.Fatalf("the target was changed %d times", n)
			}
			if n := accepted.Load(); n != 0 {
				t.Fatalf("Docker was asked (%d connections)", n)
			}
		})
	}
	// Inside the lists: options are not part of what is matched.
	_, target := newFault(t, secretOf("pw-allow"))
	in := faultRole(target)
	in.Secrets[fFaultValue] = "pw-allow"
	in.Consumers = ptr([]string{"docker:api-1?stop_timeout=30s", "compose:cockpit/worker"})
	in.HealthChecks = ptr([]string{"http://127.0.0.1:8080/health", "https://DB.internal/health", "tcp://127.0.0.1:5432"})
	if _, err := te.e.WriteRole(context.Background(), "ok", in); err != nil {
		t.Fatalf("a role inside the lists: %v", err)
	}
}

// Defaults: no consumer at all, health targets on loopback only (any port, IPv4 and IPv6).
func TestAllowListDefaults(t *testing.T) {
	te := newEnv(t)
	c := te.e.Config()
	if len(c.AllowedConsumers) != 0 || strings.Join(c.AllowedHealthTargets, ",") != "127.0.0.0/8,::1" {
		t.Fatalf("defaults = %q, %q", c.AllowedConsumers, c.AllowedHealthTargets)
	}
	role := &Role{HealthChecks: []string{"http://127.0.0.1/", "tcp://127.9.9.9:1", "http://[::1]:8200/v1/sys/health"}}
	if err := c.checkDeploy(role); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*Role{
		{Consumers: []string{"docker:anything"}},
		{HealthChecks: []string{"http://10.0.0.1/"}},
		{HealthChecks: []string{"http://169.254.169.254/latest/meta-data/"}},
		{HealthChecks: []string{"http://[::2]/"}},
		{HealthChecks: []string{"http://localhost/"}},
	} {
		if err := c.checkDeploy(bad); err == nil {
			t.Errorf("%+v allowed by default", bad)
		}
	}
}

// Glob semantics are Vault's (strutil.StrListContainsGlob): '*' matches any run of characters,
// '/' and ':' included; anything else is literal.
func TestAllowListGlobs(t *testing.T) {
	for _, tc := range []struct {
		globs []string
		spec  string
		want  bool
	}{
		{[]string{"docker:api-*"}, "docker:api-1", true},
		{[]string{"docker:api-*"}, "docker:api-1?stop_timeout=5s", true},
		{[]string{"docker:api-*"}, "docker:api", false},
		{[]string{"docker:api-*"}, "docker:xapi-1", false},
		{[]string{"compose:cockpit/*"}, "compose:cockpit/api", true},
		{[]string{"compose:cockpit/*"}, "compose:cockpit2/api", false},
		{[]string{"compose:*"}, "compose:a/b", true},
		{[]string{"compose:*"}, "docker:a", false},
		{[]string{"*"}, "docker:a", true},
		{[]string{"*:api"}, "docker:api", true},
		{[]string{"docker:a.b"}, "docker:aXb", false}, // '.' is literal
		{[]string{"docker:api-[12]"}, "docker:api-1", false},
	} {
		c := Config{AllowedConsumers: tc.globs}
		err := c.checkDeploy(&Role{Consumers: []string{tc.spec}})
		if (err == nil) != tc.want {
			t.Errorf("%q over %s: %v, want allowed=%v", tc.globs, tc.spec, err, tc.want)
		}
	}
	for _, tc := range []struct {
		items []string
		check string
		want  bool
	}{
		{[]string{"10.1.2.3:8080"}, "http://10.1.2.3:8080/", true},
		{[]string{"10.1.2.3:8080"}, "http://10.1.2.3/", false},
		{[]string{"10.1.2.3"}, "tcp://10.1.2.3:1", true},
		{[]string{"10.0.0.0/8"}, "http://10.200.0.1/", true},
		{[]string{"10.0.0.0/8"}, "http://ten.internal/", false}, // a CIDR never allows a name
		{[]string{"*.internal:443"}, "https://a.b.internal/", true},
		{[]string{"*.internal:443"}, "http://a.internal/", false},
		{[]string{"*.internal:443"}, "https://internal/", false},
		{[]string{"*.Internal:*"}, "http://A.INTERNAL:81/", true},
		{[]string{"*:*"}, "http://[::2]:1/", true},
		{[]string{"fd00::/8"}, "http://[fd12::1]/", true},
		{[]string{"[fd12::1]:80"}, "http://[fd12:0::1]/", true},
	} {
		c := Config{AllowedHealthTargets: tc.items}
		if err := c.Validate(); err != nil && !strings.Contains(err.Error(), "max_parallel") {
			t.Fatalf("%q: %v", tc.items, err)
		}
		err := c.checkDeploy(&Role{HealthChecks: []string{tc.check}})
		if (err == nil) != tc.want {
			t.Errorf("%q over %s: %v, want allowed=%v", tc.items, tc.check, err, tc.want)
		}
	}
}

// The lists are bounded and every item is checked when the config is written: the error names
// the field and the item.
func TestAllowListBounds(t *testing.T) {
	te := newEnv(t)
	many := make([]string, maxAllowItems+1)
	for i := range many {
		many[i] = fmt.Sprintf("docker:c%d", i)
	}
	for _, tc := range []struct {
		mod     func(*Config)
		mention string
	}{
		{func(c *Config) { c.AllowedConsumers = many }, "allowed_consumers: more than 64 items"},
		{func(c *Config) { c.AllowedConsumers = []string{"docker:" + strings.Repeat("a", 251)} }, "allowed_consumers: item 1 is longer than 256 bytes"},
		{func(c *Config) { c.AllowedConsumers = []string{"docker:a", ""} }, "allowed_consumers: item 2: empty"},
		{func(c *Config) { c.AllowedConsumers = []string{"dokcer:a"} }, "allowed_consumers: item 1:"},
		{func(c *Config) { c.AllowedConsumers = []string{"docker:a?stop_timeout=1s"} }, "allowed_consumers: item 1:"},
		{func(c *Config) { c.AllowedConsumers = []string{"docker:"} }, "allowed_consumers: item 1:"},
		{func(c *Config) { c.AllowedConsumers = []string{"docker:a b"} }, "allowed_consumers: item 1:"},
		{func(c *Config) { c.AllowedHealthTargets = many }, "allowed_health_targets: more than 64 items"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"127.0.0.1/32", strings.Repeat("a", 255) + ":1"} }, "allowed_health_targets: item 2 is longer than 256 bytes"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"10.0.0.0/33"} }, "allowed_health_targets: item 1:"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"10.0.0.1/8"} }, "allowed_health_targets: item 1:"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"::1", "999.1.1.1/8"} }, "allowed_health_targets: item 2:"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"*.internal"} }, "allowed_health_targets: item 1:"},
		{func(c *Config) { c.AllowedHealthTargets = []string{"fe80::1%eth0"} }, "allowed_health_targets: item 1:"},
		{func(c *Config) { c.AllowedHealthTargets = []string{""} }, "allowed_health_targets: item 1: empty"},
	} {
		c := te.e.Config()
		before := te.e.Config()
		tc.mod(&c)
		wantUserError(t, te.e.SetConfig(context.Background(), c), tc.mention)
		if got := te.e.Config(); strings.Join(got.AllowedConsumers, ",") != strings.Join(before.AllowedConsumers, ",") ||
			strings.Join(got.AllowedHealthTargets, ",") != strings.Join(before.AllowedHealthTargets, ",") {
			t.Fatalf("a refused config was applied: %+v", got)
		}
	}
	// At the bounds, and empty lists survive a restart as empty (not as their defaults).
	c := te.e.Config()
	c.AllowedConsumers = many[:maxAllowItems]
	c.AllowedHealthTargets = []string{}
	if err := te.e.SetConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	te2 := newEnvOn(t, te.storage, te.clock)
	if got := te2.e.Config(); len(got.AllowedConsumers) != maxAllowItems || got.AllowedHealthTargets == nil || len(got.AllowedHealthTargets) != 0 {
		t.Fatalf("reloaded %q, %q", got.AllowedConsumers, got.AllowedHealthTargets)
	}
}

// Narrowing the lists after a role was written: the next rotation is refused in prepare, before
// the target is touched, with an error that says why.
func TestNarrowedAllowListRefusesRotation(t *testing.T) {
	te := newEnv(t)
	addr := acceptingListener(t)
	ft := te.importRole(t, "n", "pw-narrow-old", func(in *RoleInput) { in.HealthChecks = ptr([]string{"tcp://" + addr}) })
	if out, err := te.e.Rotate(context.Background(), "n"); err != nil || !out.Success {
		t.Fatalf("inside the list: %+v, %v", out, err)
	}
	applies := ft.Applies()
	te.allowHealthTargets(t, "127.0.0.2/32")
	out, err := te.e.Rotate(context.Background(), "n")
	if err != nil {
		t.Fatal(err)
	}
	if out.Success || out.FailedStep != StepPrepare || !strings.Contains(out.Error, "refused before the target was touched: health_checks:") ||
		!strings.Contains(out.Error, "allowed_health_targets") {
		t.Fatalf("outcome %+v", out)
	}
	if ft.Applies() != applies {
		t.Fatal("the target was changed")
	}
	if st := te.state(t, "n"); st.Current().Number != 2 {
		t.Fatalf("current version %d", st.Current().Number)
	}
}

// A record already in the deploy phases was decided under the lists of its own start: recovery
// carries it to its end (the service would stay broken otherwise), while a new rotation of the
// role is refused.
func TestNarrowedAllowListRecoveryFinishes(t *testing.T) {
	addr := acceptingListener(t)
	te := newEnv(t)
	ft := te.importRole(t, "r", "pw-narrow-old", func(in *RoleInput) {
		in.HealthChecks = ptr([]string{"tcp://" + addr})
	})
	te.allowHealthTargets(t) // none
	p := &Pending{Old: secretOf("pw-narrow-old"), New: secretOf("pw-narrow-new"), OldVersion: 1, NewVersion: 2,
		Trigger: TriggerSchedule, Phase: PhaseRedeploying, Deployed: true, Started: te.clock.Now()}
	te.putPending(t, "r", p)
	te.e.recoverRole(context.Background(), "r")
	if te.pendingRec(t, "r") != nil {
		t.Fatal("record kept: recovery refused the deploy it had decided")
	}
	h := te.history(t, "r")
	if len(h) != 1 || len(h[0].Health) != 1 || h[0].Health[0].Status != consumers.Healthy {
		t.Fatalf("history = %+v", h)
	}
	out, err := te.e.Rotate(context.Background(), "r")
	if err != nil || out.Success || out.FailedStep != StepPrepare {
		t.Fatalf("a new rotation: %+v, %v", out, err)
	}
	if ft.Applies() != 0 {
		t.Fatal("the target was changed")
	}
}
