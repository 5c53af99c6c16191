package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testspy"
)

// TestAllowLists: rotation/config bounds which consumers and health targets a role may name
// (issue 9, item 3), against a real Vault, PostgreSQL and Docker.
func TestAllowLists(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")

	t.Run("config read shows both lists; bad lists are a 400 naming the field and item", func(t *testing.T) {
		d := s.Read(t, "config").Data
		if fmt.Sprint(d["allowed_consumers"]) != "["+strings.ReplaceAll(testConsumers, ",", " ")+"]" ||
			fmt.Sprint(d["allowed_health_targets"]) != "[127.0.0.0/8 ::1]" {
			t.Fatalf("config: %v", d)
		}
		for _, tc := range []struct {
			data    map[string]interface{}
			mention string
		}{
			{map[string]interface{}{"allowed_consumers": strings.TrimSuffix(strings.Repeat("docker:c,", 65), ",")}, "allowed_consumers: more than 64 items"},
			{map[string]interface{}{"allowed_health_targets": "*.internal:" + strings.Repeat("4", 246)}, "allowed_health_targets: item 1 is longer than 256 bytes"},
			{map[string]interface{}{"allowed_health_targets": "127.0.0.1/32,10.0.0.0/33"}, "allowed_health_targets: item 2:"},
			{map[string]interface{}{"allowed_consumers": "docker:a,dokcer:b"}, "allowed_consumers: item 2:"},
		} {
			_, re := s.WriteErr("config", tc.data)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, tc.mention)
		}
		if d2 := s.Read(t, "config").Data; fmt.Sprint(d2) != fmt.Sprint(d) {
			t.Fatalf("a refused config changed it: %v", d2)
		}
	})

	t.Run("a role outside the lists is refused: nothing stored, nothing sent", func(t *testing.T) {
		spy, accepted := testspy.UnixSpy(t)
		s.Write(t, "config", map[string]interface{}{"docker_host": spy, "allowed_health_targets": "127.0.0.1/32"})
		defer s.Write(t, "config", map[string]interface{}{"docker_host": testenv.DockerHost(), "allowed_health_targets": "127.0.0.0/8,::1"})
		s.CreateLogin(t, "outside", "outside-0", "")
		alters := strings.Count(s.Postgres.Log(t), `ALTER ROLE "outside"`)
		for _, tc := range []struct {
			field, value, mention string
		}{
			{"consumers", "docker:vault-server", `consumers: "docker:vault-server" is not in rotation/config allowed_consumers`},
			{"consumers", "docker:testenv-demo-x,compose:cockpit-evil/api", `consumers: "compose:cockpit-evil/api"`},
			{"consumers", "docker:api-1/../testenv-demo-x", "consumers:"},
			{"health_checks", "http://127.0.0.2:8080/health", `health_checks: "http://127.0.0.2:8080/health" (127.0.0.2:8080) is not in rotation/config allowed_health_targets`},
			// localhost resolves to 127.0.0.1, inside the CIDR; a CIDR never allows a name.
			{"health_checks", "http://localhost:8080/health", `(localhost:8080) is not in rotation/config allowed_health_targets`},
			{"health_checks", "tcp://[::ffff:10.0.0.1]:5432", "(10.0.0.1:5432)"},
		} {
			_, re := s.WriteErr("roles/outside", map[string]interface{}{
				"type": "postgres", "admin_role": "pg-admin", "username": "outside",
				"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h", tc.field: tc.value,
			})
			testenv.ExpectStatus(t, re, http.StatusBadRequest, tc.mention)
			if s.Read(t, "roles/outside") != nil {
				t.Fatalf("%s=%s: the role was stored", tc.field, tc.value)
			}
		}
		if n := accepted.Load(); n != 0 {
			t.Fatalf("Docker was asked %d times", n)
		}
		if strings.Count(s.Postgres.Log(t), `ALTER ROLE "outside"`) != alters {
			t.Fatal("PostgreSQL was changed")
		}
		s.AssertLogin(t, "outside", "outside-0", true)
	})

	t.Run("narrowing the lists refuses the next rotation before PostgreSQL changes", func(t *testing.T) {
		s.CreateLogin(t, "narrow", "narrow-0", "")
		s.Write(t, "roles/narrow", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "narrow",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		svc := s.RunDemo(t, "narrow", testenv.DemoOptions{})
		testenv.WaitHTTPStatus(t, svc.URL("/health"), http.StatusOK, 30*time.Second)
		s.Write(t, "roles/narrow", map[string]interface{}{"consumers": "docker:" + svc.Name + "?stop_timeout=2s", "health_checks": svc.URL("/health"), "health_timeout": "20s"})
		s.Write(t, "rotate/narrow", nil) // inside the lists
		_, pw, v := s.Creds(t, "narrow")

		for _, narrowed := range []map[string]interface{}{
			{"allowed_consumers": "docker:api-*"},
			{"allowed_consumers": testConsumers, "allowed_health_targets": "127.0.0.2/32"},
		} {
			s.Write(t, "config", narrowed)
			alters := strings.Count(s.Postgres.Log(t), `ALTER ROLE "narrow"`)
			_, re := s.WriteErr("rotate/narrow", nil)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at prepare")
			if msg := strings.Join(re.Errors, " "); !strings.Contains(msg, "refused before the target was touched") ||
				!strings.Contains(msg, "rotation/config allowed_") {
				t.Fatalf("error: %v", re.Errors)
			}
			if strings.Count(s.Postgres.Log(t), `ALTER ROLE "narrow"`) != alters {
				t.Fatal("PostgreSQL was changed")
			}
			if _, still, sv := s.Creds(t, "narrow"); still != pw || sv != v {
				t.Fatal("the credential changed")
			}
			s.AssertLogin(t, "narrow", pw, true)
		}
		// A write of the role itself is refused too while it names what is no longer allowed.
		_, re := s.WriteErr("roles/narrow", map[string]interface{}{"rotation_period": "700h"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "health_checks:")
		s.Write(t, "config", map[string]interface{}{"allowed_consumers": testConsumers, "allowed_health_targets": "127.0.0.0/8,::1"})
		s.Write(t, "rotate/narrow", nil)
	})
}
