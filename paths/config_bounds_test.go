package paths_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
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
