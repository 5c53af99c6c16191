package paths_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
)

func TestConfigBounds(t *testing.T) {
	e := newBackend(t)
	for _, tc := range []struct {
		data    map[string]interface{}
		mention string
	}{
		{map[string]interface{}{"retry_max": "25h"}, "retry_max: must be at most 24h"},
		{map[string]interface{}{"retry_base": "25h", "retry_max": "25h"}, "retry_base: must be at most 24h"},
		{map[string]interface{}{"max_failures": 1001}, "max_failures: must be between 1 and 1000"},
		{map[string]interface{}{"notify_url": "https://h.example/" + strings.Repeat("n", 2048)}, "notify_url: longer than 2048 bytes"},
		{map[string]interface{}{"docker_host": "unix:///" + strings.Repeat("d", 1024)}, "docker_host: longer than 1024 bytes"},
	} {
		e.bad(t, logical.UpdateOperation, "config", tc.data, http.StatusBadRequest, tc.mention)
	}
	d := e.ok(t, logical.ReadOperation, "config", nil).Data
	if fmt.Sprint(d["retry_max"]) != "300" || fmt.Sprint(d["max_failures"]) != "5" || d["notify_url"] != "" {
		t.Fatalf("a rejected write changed the config: %v", d)
	}
}

// The allow-lists: read shows both (with their defaults), a write replaces a list, an empty
// value empties it, and a bad item is a 400 naming the field and the item.
func TestConfigAllowLists(t *testing.T) {
	e := newBackend(t)
	d := e.ok(t, logical.ReadOperation, "config", nil).Data
	if fmt.Sprint(d["allowed_consumers"]) != "[]" || fmt.Sprint(d["allowed_health_targets"]) != "[127.0.0.0/8 ::1]" {
		t.Fatalf("defaults: %v", d)
	}
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{
		"allowed_consumers": "docker:api-*,compose:cockpit/*", "allowed_health_targets": []string{"10.0.0.0/8", "*.internal:443"}})
	d = e.ok(t, logical.ReadOperation, "config", nil).Data
	if fmt.Sprint(d["allowed_consumers"]) != "[docker:api-* compose:cockpit/*]" || fmt.Sprint(d["allowed_health_targets"]) != "[10.0.0.0/8 *.internal:443]" {
		t.Fatalf("lists: %v", d)
	}
	// A role outside them is refused by the engine's rule, through the path.
	e.bad(t, logical.UpdateOperation, "roles/x", map[string]interface{}{"type": "token", "rotation_period": "1h", "value": "tok-allow-1",
		"consumers": "docker:vault"}, http.StatusBadRequest, `consumers: "docker:vault" is not in rotation/config allowed_consumers`)
	e.bad(t, logical.UpdateOperation, "roles/x", map[string]interface{}{"type": "token", "rotation_period": "1h", "value": "tok-allow-1",
		"health_checks": "http://127.0.0.1:8200/"}, http.StatusBadRequest, "health_checks:")
	if r, err := e.b.Engine().ReadRole(t.Context(), "x"); err != nil || r != nil {
		t.Fatalf("a refused role was stored: %+v %v", r, err)
	}
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"allowed_consumers": ""})
	if d := e.ok(t, logical.ReadOperation, "config", nil).Data; fmt.Sprint(d["allowed_consumers"]) != "[]" {
		t.Fatalf("emptied: %v", d)
	}
	for _, tc := range []struct {
		data    map[string]interface{}
		mention string
	}{
		{map[string]interface{}{"allowed_consumers": strings.Repeat("docker:c,", 65)}, "allowed_consumers: more than 64 items"},
		{map[string]interface{}{"allowed_consumers": "docker:" + strings.Repeat("c", 250)}, "allowed_consumers: item 1 is longer than 256 bytes"},
		{map[string]interface{}{"allowed_health_targets": "127.0.0.1/32,10.0.0.0/40"}, "allowed_health_targets: item 2:"},
		{map[string]interface{}{"allowed_health_targets": "host-without-port"}, "allowed_health_targets: item 1:"},
	} {
		e.bad(t, logical.UpdateOperation, "config", tc.data, http.StatusBadRequest, tc.mention)
	}
}

// docker_hosts and docker_tls through the path: a read shows the endpoints and certificates and
// "(set)" for a key, never the key; bad input is a 400 naming the field, quoting no key, storing
// nothing.
func TestConfigDockerHosts(t *testing.T) {
	e := newBackend(t)
	ca := testcerts.NewCA(t, "ca")
	cert, key := ca.Client(t, "client")
	keyLine := strings.Split(key, "\n")[1]
	tlsOf := func(fields map[string]interface{}) map[string]interface{} {
		return map[string]interface{}{"web1": fields}
	}
	good := map[string]interface{}{"ca_pem": ca.PEM, "cert_pem": cert, "key_pem": key}
	resp := e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{
		"docker_hosts": "web1=tcp://10.0.0.5:2376,local=unix:///var/run/docker.sock", "docker_tls": tlsOf(good)})
	noKey := func(what string, v interface{}) {
		t.Helper()
		text, _ := json.Marshal(v)
		if strings.Contains(string(text), keyLine) || strings.Contains(string(text), "PRIVATE KEY") {
			t.Fatalf("%s shows the key: %s", what, text)
		}
	}
	noKey("the write's response", resp)
	d := e.ok(t, logical.ReadOperation, "config", nil).Data
	noKey("a config read", d)
	if fmt.Sprint(d["docker_hosts"]) != "[local=unix:///var/run/docker.sock web1=tcp://10.0.0.5:2376]" {
		t.Fatalf("docker_hosts read as %v", d["docker_hosts"])
	}
	shown, _ := json.Marshal(d["docker_tls"])
	if !strings.Contains(string(shown), `"key_pem":"(set)"`) || !strings.Contains(string(shown), "BEGIN CERTIFICATE") {
		t.Fatalf("docker_tls read as %s", shown)
	}
	before := e.b.Engine().Config()
	for _, tc := range []struct {
		data    map[string]interface{}
		mention string
	}{
		{map[string]interface{}{"docker_tls": "not-an-object"}, "docker_tls"},
		{map[string]interface{}{"docker_tls": tlsOf(map[string]interface{}{"ca_pem": ca.PEM, "key_pem": key})}, "docker_tls: web1: cert_pem: required with key_pem"},
		{map[string]interface{}{"docker_tls": tlsOf(map[string]interface{}{"ca_pem": ca.PEM, "cert_pem": cert, "key_pem": 7})}, `docker_tls: web1: "key_pem": not a string`},
		{map[string]interface{}{"docker_tls": tlsOf(map[string]interface{}{"ca_pem": ca.PEM, "cert_pem": cert, "key_pem": key, "insecure": "true"})}, `docker_tls: web1: "insecure": not a field`},
		{map[string]interface{}{"docker_tls": tlsOf(map[string]interface{}{"ca_pem": ca.PEM, "cert_pem": cert, "key_pem": key + strings.Repeat("k", 9000)})}, "docker_tls: web1: key_pem: longer than 8192 bytes"},
		{map[string]interface{}{"docker_tls": tlsOf(map[string]interface{}{"ca_pem": ca.PEM, "cert_pem": cert, "key_pem": strings.Replace(key, keyLine, keyLine[4:], 1)})}, "docker_tls: web1: key_pem: not an unencrypted"},
		{map[string]interface{}{"docker_tls": map[string]interface{}{"-H": good}}, "docker_tls:"},
		{map[string]interface{}{"docker_tls": map[string]interface{}{"web9": good}}, `docker_tls: "web9" is not in docker_hosts`},
		{map[string]interface{}{"docker_hosts": "web1=tcp://10.0.0.5:2376/x"}, "docker_hosts: item 1: web1:"},
		{map[string]interface{}{"docker_hosts": "web2=tcp://10.0.0.6:2376"}, "docker_tls: web2: required"},
		{map[string]interface{}{"docker_hosts": strings.Repeat("a=unix:///a,", 17)}, "docker_hosts: more than 16 endpoints"},
	} {
		r, _, err := e.do(t, logical.UpdateOperation, "config", tc.data)
		if r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), tc.mention) {
			t.Errorf("%s: got %v %v", tc.mention, r, err)
			continue
		}
		noKey("the refusal "+tc.mention, r)
	}
	after := e.b.Engine().Config()
	if fmt.Sprint(after.DockerHosts) != fmt.Sprint(before.DockerHosts) || after.DockerTLS["web1"] != before.DockerTLS["web1"] {
		t.Fatal("a refused write changed docker_hosts or docker_tls")
	}
	// A write of another field keeps the key.
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"max_failures": 3})
	if e.b.Engine().Config().DockerTLS["web1"].Key != key {
		t.Fatal("a write of another field lost key_pem")
	}
}
