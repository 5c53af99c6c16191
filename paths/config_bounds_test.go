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
