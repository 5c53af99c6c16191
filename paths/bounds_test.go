package paths_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Every role field is bounded at the API: a value out of bounds is a 400 that names the field,
// and no role is stored.
func TestRoleFieldBounds(t *testing.T) {
	e := newBackend(t)
	_, target := newFault(t, "v")
	list := func(n int, item string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf("%s%d", item, i)
		}
		return strings.Join(items, ",")
	}
	fault := func(extra map[string]interface{}) map[string]interface{} {
		d := map[string]interface{}{"type": faultType, "rotation_period": "1h", "target": target, "value": "v"}
		for k, v := range extra {
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
		}
		return d
	}
	pgURL := "postgres://{{username}}:{{password}}@127.0.0.1:1/db?sslmode=disable"
	cases := []struct {
		name    string
		data    map[string]interface{}
		mention string
	}{
		{"rotation_period above 5 years", fault(map[string]interface{}{"rotation_period": "43801h"}), "rotation_period: must be at most 43800h"},
		{"rotation_period that overflows", fault(map[string]interface{}{"rotation_period": "99999999999999999"}), `"rotation_period"`},
		{"rotation_window above a year", fault(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "0 0 1 * *", "rotation_window": "8761h"}), "rotation_window: must be at most 8760h"},
		{"health_timeout above 1h", fault(map[string]interface{}{"health_timeout": "61m"}), "health_timeout: must be between 1s and 1h"},
		{"schedule that never fires", fault(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "0 0 30 2 *"}), `rotation_schedule: "0 0 30 2 *" never fires`},
		{"schedule on 31 April", fault(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "0 0 31 4 *"}), `rotation_schedule: "0 0 31 4 *" never fires`},
		{"too many consumers", fault(map[string]interface{}{"consumers": list(17, "docker:c")}), "consumers: more than 16 items"},
		{"too many health checks", fault(map[string]interface{}{"health_checks": list(17, "tcp://127.0.0.1:")}), "health_checks: more than 16 items"},
		{"password_policy too long", fault(map[string]interface{}{"password_policy": strings.Repeat("p", 129)}), "password_policy: longer than 128 bytes"},
		{"list field with too many items", fault(map[string]interface{}{"labels": list(33, "t")}), "labels: more than 32 items"},
		{"int field out of range", fault(map[string]interface{}{"size": 1 << 21}), "size: must be between 0 and 1048576"},
		{"string field too long", fault(map[string]interface{}{"target": strings.Repeat("t", 1025)}), "target: longer than 1024 bytes"},
		{"write-only value too long", fault(map[string]interface{}{"value": strings.Repeat("v", 8193)}), "value: longer than 8192 bytes"},
		{"postgres password too long", map[string]interface{}{"type": "postgres", "rotation_period": "1h", "connection_url": pgURL, "username": "app", "password": strings.Repeat("p", 1025)}, "password: longer than 1024 bytes"},
		{"postgres connection_url too long", map[string]interface{}{"type": "postgres", "rotation_period": "1h", "connection_url": pgURL + "&application_name=" + strings.Repeat("a", 2048), "username": "app", "password": "p"}, "connection_url: longer than 2048 bytes"},
		{"token value too long", map[string]interface{}{"type": "token", "rotation_period": "1h", "value": strings.Repeat("v", 4097)}, "value: longer than 4096 bytes"},
		{"token bytes out of range", map[string]interface{}{"type": "token", "rotation_period": "1h", "bytes": 2048}, "bytes: must be between 16 and 1024"},
		{"jwt verification_ttl above a year", map[string]interface{}{"type": "jwt", "rotation_period": "1h", "algorithm": "ES256", "verification_ttl": "8761h"}, "verification_ttl: must be between 0s and 8760h"},
		{"jwt key_bits out of range", map[string]interface{}{"type": "jwt", "rotation_period": "1h", "key_bits": 16384}, "key_bits: must be between 0 and 4096"},
		{"jwt private_key too long", map[string]interface{}{"type": "jwt", "rotation_period": "1h", "private_key": strings.Repeat("k", 8193)}, "private_key: longer than 8192 bytes"},
		{"ssh too many hosts", map[string]interface{}{"type": "ssh", "rotation_period": "1h", "username": "u", "private_key": "k", "insecure_ignore_host_key": true, "hosts": list(65, "10.0.0.1:")}, "hosts: more than 64 items"},
		{"ssh private_key too long", map[string]interface{}{"type": "ssh", "rotation_period": "1h", "username": "u", "private_key": strings.Repeat("k", 8193), "insecure_ignore_host_key": true, "hosts": "10.0.0.1:22"}, "private_key: longer than 8192 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.bad(t, logical.CreateOperation, "roles/x", tc.data, http.StatusBadRequest, tc.mention)
		})
	}
	if _, status, _ := e.do(t, logical.ListOperation, "roles/", nil); status != http.StatusNotFound {
		t.Fatalf("a rejected write stored a role (LIST status %d)", status)
	}
}

// rotate/NAME value=... is bounded before the rotation starts: a 400 naming value, and the role
// keeps its version and records nothing.
func TestRotateValueBounds(t *testing.T) {
	e := newBackend(t)
	e.ok(t, logical.CreateOperation, "roles/tok", map[string]interface{}{"type": "token", "rotation_period": "1h", "value": "current-token"})
	for _, tc := range []struct{ value, mention string }{
		{strings.Repeat("v", 5000), "value: longer than 4352 bytes"},
		{strings.Repeat("<", 1000), "value: the value takes"},
	} {
		e.bad(t, logical.UpdateOperation, "rotate/tok", map[string]interface{}{"value": tc.value}, http.StatusBadRequest, tc.mention)
	}
	d := e.ok(t, logical.ReadOperation, "roles/tok", nil).Data
	if fmt.Sprint(d["current_version"]) != "1" || d["last_outcome"] != "" || fmt.Sprint(d["consecutive_failures"]) != "0" {
		t.Fatalf("role after refused values = %v", d)
	}
	if h, ok := e.ok(t, logical.ReadOperation, "history/tok", nil).Data["history"].([]map[string]interface{}); !ok || len(h) != 0 {
		t.Fatalf("refused values were recorded: %v", h)
	}
}
