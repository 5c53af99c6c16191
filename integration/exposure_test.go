package integration

import (
	"net/http"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestHardcodedSecret: a consumer started with the password in its environment (docker run -e)
// cannot take a new one by restarting: the rotation is refused in prepare, naming the container
// and the variable, never the value, and PostgreSQL is unchanged. exposure/NAME then finds every
// container holding a current or kept value, listed as a consumer or not.
func TestHardcodedSecret(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	s.ImportAdmin(t, "pg-admin", "hc_admin", "hc-admin-pw")
	s.CreateLogin(t, "hc_app", "hc-app-pw-0001", "")
	s.Write(t, "roles/hc", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "hc_app", "password": "hc-app-pw-0001", "rotation_period": "720h",
	})
	baked := s.RunDemo(t, "hc", testenv.DemoOptions{Env: []string{"DB_PASSWORD=hc-app-pw-0001"}})
	s.Write(t, "roles/hc", map[string]interface{}{"consumers": "docker:" + baked.Name})

	_, re := s.WriteErr("rotate/hc", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, `container "`+baked.Name+`" holds the current value in its environment variable "DB_PASSWORD"`)
	s.AssertLogin(t, "hc_app", "hc-app-pw-0001", true)
	s.AssertNoSecretIn(t, "refusal", testenv.JSONOf(t, re.Errors))

	// Without the baked consumer the role rotates; the container (no longer a consumer) still
	// holds what is now a kept version, and exposure says where.
	s.Write(t, "roles/hc", map[string]interface{}{"consumers": ""})
	s.Write(t, "rotate/hc", nil)
	x := s.Read(t, "exposure/hc").Data
	list, _ := x["exposures"].([]interface{})
	found := false
	for _, e := range list {
		m := e.(map[string]interface{})
		if m["container"] == baked.Name {
			found = true
			if m["where"] != `environment variable "DB_PASSWORD"` || testenv.IntOf(t, m["version"]) != 1 || m["listed_as_consumer"] != false {
				t.Fatalf("exposure of the baked container: %v", m)
			}
		}
	}
	if !found {
		t.Fatalf("exposure does not find the container holding version 1: %v", x)
	}
	s.AssertNoSecretIn(t, "exposure", testenv.JSONOf(t, x))

	// The same for a token baked into a consumer's environment (an Authorization header it sends).
	const token = "tk_baked_0123456789abcdef"
	s.Remember(token)
	tokened := s.RunDemo(t, "hc", testenv.DemoOptions{Env: []string{"API_TOKEN_FILE_UNUSED=1", "UPSTREAM=Bearer " + token}})
	s.Write(t, "roles/hc-tok", map[string]interface{}{
		"type": "token", "value": token, "rotation_period": "720h", "consumers": "docker:" + tokened.Name,
	})
	_, re = s.WriteErr("rotate/hc-tok", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, `container "`+tokened.Name+`" holds the current value in its environment variable "UPSTREAM"`)
	if _, v := tokenCredsVersion(t, s, "hc-tok"); v != 1 {
		t.Fatalf("the token role moved to version %d although its rotation was refused", v)
	}
}

// tokenCredsVersion reads a token role's current value and version.
func tokenCredsVersion(t *testing.T, s *stack, role string) (string, int) {
	t.Helper()
	sec := s.Read(t, "creds/"+role)
	v, _ := sec.Data["value"].(string)
	return v, testenv.IntOf(t, sec.Data["version"])
}
