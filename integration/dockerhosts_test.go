//go:build linux

package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// keyLines are the base64 lines of a PEM key, remembered as secrets: no answer or log may hold one.
func keyLines(key string) []string {
	var out []string
	for _, l := range strings.Split(key, "\n") {
		if len(l) > 20 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// stallListener accepts connections and never answers: an engine that hangs in the TLS handshake.
func stallListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestConsumersOnTwoEngines covers issue 10's consumers on many Docker hosts against two real engines: the default
// one (docker_host) and a second dockerd on TCP with TLS and client certificates (docker_hosts web1).
func TestConsumersOnTwoEngines(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	eng := testenv.StartDockerd(t)
	other := testcerts.NewCA(t, "another CA")
	otherCert, otherKey := other.Client(t, "client of another CA")
	s.Remember(keyLines(eng.ClientKey)...)
	s.Remember(keyLines(otherKey)...)

	// Vault's audit device records the config write, its values HMAC'd: the keys must not appear in it.
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	if err := s.Vault.Client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditPath}}); err != nil {
		t.Fatalf("enable the file audit device: %v", err)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(auditPath)
		if err != nil || !strings.Contains(string(b), "docker_tls") {
			t.Errorf("the audit log lacks the config write (%v)", err)
		}
		s.AssertNoSecretIn(t, "the audit log", string(b))
	})

	refusedPort := testenv.FreePort(t) // nothing listens there
	stall := stallListener(t)
	tlsOf := func(ca, cert, key string) map[string]interface{} {
		return map[string]interface{}{"ca_pem": ca, "cert_pem": cert, "key_pem": key}
	}
	s.Write(t, "config", map[string]interface{}{
		"docker_host": testenv.DockerHost(),
		"docker_hosts": []string{"web1=" + eng.Host, "nocert=" + eng.Host, "wrongcert=" + eng.Host, "wrongca=" + eng.Host,
			fmt.Sprintf("gone=tcp://127.0.0.1:%d", refusedPort), "stall=tcp://" + stall},
		"docker_tls": map[string]interface{}{
			"web1":      tlsOf(eng.CA, eng.ClientCert, eng.ClientKey),
			"nocert":    map[string]interface{}{"ca_pem": eng.CA},
			"wrongcert": tlsOf(eng.CA, otherCert, otherKey),
			"wrongca":   tlsOf(other.PEM, eng.ClientCert, eng.ClientKey),
			"stall":     tlsOf(eng.CA, eng.ClientCert, eng.ClientKey),
		},
		"allowed_consumers": "docker:testenv-demo-*,docker://*,compose://web1/mh-t1/*",
	})
	s.ImportAdmin(t, "pg-admin", "mh_admin", "admin-pw")

	t.Run("config read never shows a key", func(t *testing.T) {
		d := s.Read(t, "config").Data
		text := testenv.JSONOf(t, d)
		s.AssertNoSecretIn(t, "a config read", text)
		if strings.Contains(text, "PRIVATE KEY") || !strings.Contains(text, `"key_pem":"(set)"`) || !strings.Contains(text, "web1="+eng.Host) {
			t.Fatalf("config read: %s", text)
		}
		// A consumer naming an endpoint that is not configured is refused at write, naming the field.
		_, re := s.WriteErr("roles/x", map[string]interface{}{"type": "token", "rotation_period": "1h", "value": "tok-mh-1",
			"consumers": "docker://web9/api"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, `consumers: "docker://web9/api": endpoint "web9" is not in rotation/config docker_hosts`)
	})

	t.Run("a role on both engines restarts both and rolls both back", func(t *testing.T) {
		s.Postgres.Exec(t, `CREATE TABLE mh_orders (id int)`)
		s.CreateLogin(t, "mh_blue", "mh-blue-0", "")
		s.CreateLogin(t, "mh_green", "mh-green-0", "")
		s.Postgres.Exec(t, `GRANT SELECT ON mh_orders TO mh_blue, mh_green`)
		s.Write(t, "roles/mh", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "strategy": "alternating", "usernames": "mh_blue,mh_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		opts := testenv.DemoOptions{VaultAddr: s.Vault.Addr, VaultToken: s.Vault.Token, Role: "mh", HealthQuery: "SELECT count(*) FROM mh_orders"}
		local := testenv.RunDemoConsumer(t, opts)
		opts.Engine, opts.Labels = eng, composeLabels("mh-t1", "worker", 1)
		remote := testenv.RunDemoConsumer(t, opts)
		both := []*testenv.Container{local, remote}
		s.Write(t, "roles/mh", map[string]interface{}{
			"consumers":     "docker:" + local.Name + ",compose://web1/mh-t1/worker",
			"health_checks": local.URL("/health") + "," + remote.URL("/health"), "health_timeout": "5s",
		})

		// Success: both restart on the new value, each through its own engine.
		rot := s.Write(t, "rotate/mh", nil)
		user, _, v := s.Creds(t, "mh")
		for _, c := range both {
			if got := demoStartedWith(t, c); got.Version != v || got.Username != user {
				t.Fatalf("%s started with %+v, want %s v%d", c.Name, got, user, v)
			}
		}
		restarts := rot.Data["consumers"].([]interface{})
		if len(restarts) != 2 {
			t.Fatalf("restarts: %s", testenv.JSONOf(t, restarts))
		}
		for i, want := range [][2]string{{"docker:" + local.Name, local.Name}, {"compose://web1/mh-t1/worker", remote.Name}} {
			r := restarts[i].(map[string]interface{})
			if r["consumer"] != want[0] || r["container"] != want[1] || r["status"] != "restarted" {
				t.Fatalf("restart %d: %s, want %v restarted", i, testenv.JSONOf(t, r), want)
			}
		}

		// The next login loses its grant: the deploy fails, and both engines' containers go back to the old value.
		next := map[string]string{"mh_blue": "mh_green", "mh_green": "mh_blue"}[user]
		s.Postgres.Exec(t, `REVOKE SELECT ON mh_orders FROM `+next)
		_, oldPW, oldVersion := s.Creds(t, "mh")
		_, re := s.WriteErr("rotate/mh", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		gotUser, gotPW, gotVersion := s.Creds(t, "mh")
		if gotUser != user || gotPW != oldPW || gotVersion != oldVersion {
			t.Fatalf("creds after rollback: %s v%d, want %s v%d", gotUser, gotVersion, user, oldVersion)
		}
		for _, c := range both {
			if got := demoStartedWith(t, c); got.Username != user || got.Version != oldVersion {
				t.Fatalf("%s after rollback runs %+v, want %s v%d", c.Name, got, user, oldVersion)
			}
			testenv.WaitHTTPStatus(t, c.URL("/health"), http.StatusOK, 10*time.Second)
		}
		h := s.Read(t, "history/mh").Data["history"].([]interface{})[0].(map[string]interface{})
		phases := map[string]int{}
		for _, r := range h["consumers"].([]interface{}) {
			r := r.(map[string]interface{})
			if r["status"] == "restarted" {
				phases[fmt.Sprint(r["phase"], " ", r["consumer"])]++
			}
		}
		for _, want := range []string{"deploy docker:" + local.Name, "deploy compose://web1/mh-t1/worker",
			"redeploy docker:" + local.Name, "redeploy compose://web1/mh-t1/worker"} {
			if phases[want] != 1 {
				t.Fatalf("history lacks %q: %s", want, testenv.JSONOf(t, h["consumers"]))
			}
		}
		if h["rolled_back"] != true || h["failed_step"] != "deploy" {
			t.Fatalf("history: %s", testenv.JSONOf(t, h))
		}
		s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
	})

	// An endpoint that cannot be used fails the rotation in prepare, naming the endpoint, within a bound, before
	// PostgreSQL is touched.
	t.Run("an unusable endpoint fails in prepare, named, before the target", func(t *testing.T) {
		remote := testenv.RunDemoConsumer(t, testenv.DemoOptions{Engine: eng, VaultAddr: s.Vault.Addr, VaultToken: s.Vault.Token, Role: "mh"})
		s.CreateLogin(t, "mh_prep", "mh-prep-0", "")
		s.Write(t, "roles/prep", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "mh_prep",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, v := s.Creds(t, "prep")
		for _, tc := range []struct {
			endpoint, want string
			bound          time.Duration
		}{
			{"gone", fmt.Sprintf("cannot reach the Docker engine at gone (tcp://127.0.0.1:%d)", refusedPort), 5 * time.Second},
			{"stall", "cannot reach the Docker engine at stall (tcp://" + stall + ")", 15 * time.Second},
			{"nocert", "TLS with the Docker engine at nocert (" + eng.Host + ") failed: the engine refused the client certificate", 10 * time.Second},
			{"wrongcert", "TLS with the Docker engine at wrongcert (" + eng.Host + ") failed: the engine refused the client certificate", 10 * time.Second},
			{"wrongca", "TLS with the Docker engine at wrongca (" + eng.Host + ") failed: the engine's certificate does not verify against ca_pem", 10 * time.Second},
		} {
			s.Write(t, "roles/prep", map[string]interface{}{"consumers": "docker://" + tc.endpoint + "/" + remote.Name})
			alters := strings.Count(s.Postgres.Log(t), `ALTER ROLE "mh_prep"`)
			start := time.Now()
			_, re := s.WriteErr("rotate/prep", nil)
			took := time.Since(start)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at prepare")
			testenv.ExpectStatus(t, re, http.StatusBadRequest, tc.want)
			if took > tc.bound {
				t.Fatalf("%s: the rotation took %s to fail, bound %s", tc.endpoint, took, tc.bound)
			}
			t.Logf("%s: failed in prepare after %s: %v", tc.endpoint, took.Round(time.Millisecond), re.Errors)
			s.AssertNoSecretIn(t, "the error", strings.Join(re.Errors, " "))
			if strings.Count(s.Postgres.Log(t), `ALTER ROLE "mh_prep"`) != alters {
				t.Fatalf("%s: PostgreSQL was changed although the endpoint is unusable", tc.endpoint)
			}
			if _, still, sv := s.Creds(t, "prep"); still != pw || sv != v {
				t.Fatalf("%s: the credential changed", tc.endpoint)
			}
		}
		s.AssertLogin(t, "mh_prep", pw, true)
		// Through the endpoint that works, the same role rotates and its container restarts on the second engine.
		s.Write(t, "roles/prep", map[string]interface{}{"consumers": "docker://web1/" + remote.Name})
		rot := s.Write(t, "rotate/prep", nil)
		r := rot.Data["consumers"].([]interface{})[0].(map[string]interface{})
		if r["consumer"] != "docker://web1/"+remote.Name || r["container"] != remote.Name || r["status"] != "restarted" {
			t.Fatalf("restart through web1: %s", testenv.JSONOf(t, r))
		}
		s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
	})
}
