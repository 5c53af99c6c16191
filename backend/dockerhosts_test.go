package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
)

// testTLS is a CA-signed client certificate and key, with the CA.
func testTLS(t *testing.T) consumers.DockerTLS {
	t.Helper()
	ca := testcerts.NewCA(t, "ca")
	cert, key := ca.Client(t, "client")
	return consumers.DockerTLS{CA: ca.PEM, Cert: cert, Key: key}
}

// docker_hosts and docker_tls: every bad input is a 400 naming the field, nothing is stored, and
// no answer or stored read shows a key.
func TestDockerHostsConfig(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tlsA, tlsB := testTLS(t), testTLS(t)

	good := te.e.Config()
	if err := good.SetDockerHosts([]string{"web1=tcp://10.0.0.5:2376", "lo=tcp://127.0.0.1:2375", "local=unix:///var/run/docker.sock"}); err != nil {
		t.Fatal(err)
	}
	if err := good.SetDockerTLS(map[string]consumers.DockerTLS{"web1": tlsA}); err != nil {
		t.Fatal(err)
	}
	if err := te.e.SetConfig(ctx, good); err != nil {
		t.Fatal(err)
	}
	if got := te.e.Config().DockerHostItems(); strings.Join(got, ",") != "lo=tcp://127.0.0.1:2375,local=unix:///var/run/docker.sock,web1=tcp://10.0.0.5:2376" {
		t.Fatalf("docker_hosts read back as %q", got)
	}
	shown, _ := json.Marshal(te.e.Config().ShownDockerTLS())
	if strings.Contains(string(shown), "PRIVATE KEY") || !strings.Contains(string(shown), `"key_pem":"(set)"`) {
		t.Fatalf("docker_tls shown as %s", shown)
	}

	// 16 endpoints, each with three fields of 8 KiB that parse (a PEM block after padding pem.Decode skips).
	pad := func(pem string) string { return strings.Repeat("\n", consumers.MaxPEMLen-len(pem)) + pem }
	fullHosts := make([]string, 16)
	fullTLS := map[string]consumers.DockerTLS{}
	for i := range fullHosts {
		name := fmt.Sprintf("w%d", i)
		fullHosts[i] = name + fmt.Sprintf("=tcp://10.0.0.%d:2376", i+1)
		fullTLS[name] = consumers.DockerTLS{CA: pad(tlsA.CA), Cert: pad(tlsA.Cert), Key: pad(tlsA.Key)}
	}
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf("e%d=unix:///run/d%d.sock", i, i)
	}
	for _, tc := range []struct {
		hosts []string
		tls   map[string]consumers.DockerTLS
		raw   map[string]string // set as stored, bypassing SetDockerHosts
		want  string
	}{
		{hosts: many, want: "docker_hosts: more than 16"},
		{hosts: []string{"-H=tcp://127.0.0.1:1"}, want: "docker_hosts: item 1:"},
		{hosts: []string{"a=unix:///a", "a=unix:///b"}, want: "docker_hosts: item 2: \"a\" is named twice"},
		{hosts: []string{"a=tcp://h:1/x"}, want: "docker_hosts: item 1: a:"},
		{raw: map[string]string{"a": "tcp://H:1"}, tls: map[string]consumers.DockerTLS{"a": tlsA}, want: "docker_hosts: a: \"tcp://H:1\" is not canonical"},
		{raw: map[string]string{"../x": "unix:///a"}, want: "docker_hosts: \"../x\" is not an endpoint name"},
		{hosts: []string{"web2=tcp://10.0.0.6:2376"}, want: "docker_tls: web2: required for tcp://10.0.0.6:2376"},
		{hosts: []string{"web2=tcp://docker.internal:2376"}, want: "docker_tls: web2: required"},
		{hosts: []string{"local=unix:///var/run/docker.sock"}, tls: map[string]consumers.DockerTLS{"local": tlsA}, want: "docker_tls: local: a unix socket takes no TLS"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": tlsA, "web9": tlsA}, want: "docker_tls: \"web9\" is not in docker_hosts"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": {Cert: tlsA.Cert, Key: tlsA.Key}}, want: "docker_tls: web1: ca_pem: required"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": {CA: tlsA.CA, Cert: tlsA.Cert, Key: tlsB.Key}}, want: "docker_tls: web1: key_pem: not an unencrypted PEM private key matching cert_pem"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": {CA: tlsA.CA, Key: tlsA.Key}}, want: "docker_tls: web1: cert_pem: required"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": {CA: strings.Repeat("A", 9000)}}, want: "docker_tls: web1: ca_pem: longer than 8192"},
		{hosts: []string{"web1=tcp://10.0.0.5:2376"}, tls: map[string]consumers.DockerTLS{"web1": {CA: "<\x01>" + tlsA.CA}}, want: "docker_tls: web1: ca_pem: holds a byte PEM does not"},
		{hosts: fullHosts, tls: fullTLS, want: "docker_tls: more than 256 KiB as stored"},
	} {
		before, _ := te.storage.Get(ctx, configPath)
		c := te.e.Config()
		err := func() error {
			if tc.raw != nil {
				c.DockerHosts, c.DockerTLS = tc.raw, nil
			} else if err := c.SetDockerHosts(tc.hosts); err != nil {
				return err
			}
			if tc.tls != nil {
				if err := c.SetDockerTLS(tc.tls); err != nil {
					return err
				}
			}
			return te.e.SetConfig(ctx, c)
		}()
		if err == nil || !IsUserError(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want a user error containing %q", tc.hosts, tc.raw, err, tc.want)
			continue
		}
		for _, k := range []string{tlsA.Key, tlsB.Key} {
			if strings.Contains(err.Error(), strings.Split(k, "\n")[1]) {
				t.Errorf("%q: the error quotes a key", tc.want)
			}
		}
		after, _ := te.storage.Get(ctx, configPath)
		if string(before.Value) != string(after.Value) {
			t.Errorf("%q: the config was stored", tc.want)
		}
	}

	// Leaving an endpoint out of docker_hosts drops its TLS material.
	c := te.e.Config()
	if err := c.SetDockerHosts([]string{"local=unix:///var/run/docker.sock"}); err != nil {
		t.Fatal(err)
	}
	if err := te.e.SetConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := te.e.Config(); len(got.DockerTLS) != 0 || len(got.DockerHosts) != 1 {
		t.Fatalf("after removing web1: hosts %v, %d TLS entries", got.DockerHosts, len(got.DockerTLS))
	}
}

// Globs of the forms KIND:NAME match consumers of docker_host only, KIND://ENDPOINT/NAME those of
// named endpoints only, "*" both; a consumer naming an endpoint not configured is refused naming
// the field.
func TestAllowListEndpointGlobs(t *testing.T) {
	hosts := map[string]string{"web1": "unix:///run/web1.sock", "web2": "unix:///run/web2.sock"}
	for _, tc := range []struct {
		globs []string
		spec  string
		want  bool
	}{
		{[]string{"docker:*"}, "docker:api", true},
		{[]string{"docker:*"}, "docker://web1/api", false},
		{[]string{"docker://*"}, "docker://web1/api", true},
		{[]string{"docker://*"}, "docker:api", false},
		{[]string{"docker://web1/*"}, "docker://web1/api?stop_timeout=3s", true},
		{[]string{"docker://web1/*"}, "docker://web2/api", false},
		{[]string{"docker://web1/api-*"}, "docker://web1/api-1", true},
		{[]string{"compose://web1/cockpit/*"}, "compose://web1/cockpit/worker", true},
		{[]string{"compose://web1/cockpit/*"}, "compose:cockpit/worker", false},
		{[]string{"compose:cockpit/*"}, "compose://web1/cockpit/worker", false},
		{[]string{"*"}, "compose://web2/p/s", true},
		{[]string{"*:*"}, "docker://web1/api", false},
		{[]string{"*://web1/*"}, "compose://web1/p/s", true},
	} {
		c := Config{AllowedConsumers: tc.globs, DockerHosts: hosts}
		if err := c.validateAllowLists(); err != nil {
			t.Fatalf("%q: %v", tc.globs, err)
		}
		err := c.checkDeploy(&Role{Consumers: []string{tc.spec}})
		if (err == nil) != tc.want {
			t.Errorf("%q over %s: %v, want allowed=%v", tc.globs, tc.spec, err, tc.want)
		}
	}
	c := Config{AllowedConsumers: []string{"*"}, DockerHosts: hosts}
	err := c.checkDeploy(&Role{Consumers: []string{"docker://web9/api"}})
	if err == nil || !strings.HasPrefix(err.Error(), `consumers: "docker://web9/api": endpoint "web9" is not in rotation/config docker_hosts`) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	for _, bad := range []string{"docker:/x", "docker://", "docker:///", "docker://web1/a?stop_timeout=1s"} {
		if err := (Config{AllowedConsumers: []string{bad}}).validateAllowLists(); err == nil {
			t.Errorf("glob %q accepted", bad)
		}
	}
}

// One client per engine, made on first use, kept while its endpoint is unchanged, closed when the
// config (written here, or by another node: Invalidate) changes or removes it, and in Close.
func TestDockerClientLifecycle(t *testing.T) {
	storage := &logical.InmemStorage{}
	active := newEnvOn(t, storage, newClock(t0))
	standby := newEnvOn(t, storage, newClock(t0))
	ctx := context.Background()
	set := func(te *testEnv, hosts ...string) {
		t.Helper()
		c := te.e.Config()
		if err := c.SetDockerHosts(hosts); err != nil {
			t.Fatal(err)
		}
		if err := te.e.SetConfig(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	set(active, "a=unix:///run/a.sock", "b=unix:///run/b.sock")
	standby.e.Invalidate(ctx, configPath)
	if got := active.e.docker.open(); len(got) != 0 {
		t.Fatalf("clients before any use: %v", got)
	}
	envA := active.e.docker.env("a", active.e.Config())
	envB := active.e.docker.env("b", active.e.Config())
	_ = active.e.docker.env("", active.e.Config())
	if envA.Err != nil || envB.Err != nil || envA.DockerHost != "a (unix:///run/a.sock)" {
		t.Fatalf("env a: %+v, b: %v", envA, envB.Err)
	}
	if again := active.e.docker.env("a", active.e.Config()); again.Docker != envA.Docker {
		t.Fatal("a second use made a second client")
	}
	_ = standby.e.docker.env("a", standby.e.Config())
	_ = standby.e.docker.env("b", standby.e.Config())

	// a moves, b goes: their clients are closed; docker_host's is kept.
	set(active, "a=unix:///run/a2.sock")
	if got := active.e.docker.open(); len(got) != 1 || got[0] != "" {
		t.Fatalf("clients after a moved and b went: %q, want only docker_host's", got)
	}
	standby.e.Invalidate(ctx, configPath)
	if got := standby.e.docker.open(); len(got) != 0 {
		t.Fatalf("standby clients after invalidation: %v", got)
	}
	envA2 := active.e.docker.env("a", active.e.Config())
	if envA2.Docker == envA.Docker || envA2.DockerHost != "a (unix:///run/a2.sock)" {
		t.Fatalf("a after it moved: %+v", envA2)
	}
	if env := active.e.docker.env("b", active.e.Config()); env.Err == nil || env.Docker != nil ||
		!strings.Contains(env.Err.Error(), `endpoint "b" is not in rotation/config docker_hosts`) {
		t.Fatalf("b after it went: %+v", env)
	}
	active.e.Close()
	if got := active.e.docker.open(); len(got) != 0 {
		t.Fatalf("clients after Close: %v", got)
	}
}
