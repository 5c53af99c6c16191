package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// demoVersion is what a demo consumer says it started with.
type demoVersion struct {
	Username string `json:"username"`
	Version  int    `json:"version"`
}

func demoStartedWith(t *testing.T, c *testenv.Container) demoVersion {
	t.Helper()
	code, body, err := testenv.HTTPGet(c.URL("/version"))
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s /version: %d %v", c.Name, code, err)
	}
	var v demoVersion
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s /version: %v: %s", c.Name, err, body)
	}
	return v
}

// testConsumers are the consumers the tests' roles list: the demo containers, the compose
// projects they are labelled with, and the missing ones the tests name on purpose.
const testConsumers = "docker:testenv-demo-*,docker:no-such-container-*,compose:cockpit-t1/*,compose:shop/*,compose:no-such-project/*"

// newConsumerStack is a dev stack whose plugin restarts containers through the test's Docker engine,
// allowed to restart the tests' consumers.
func newConsumerStack(t *testing.T) *stack {
	t.Helper()
	return &stack{testenv.NewStack(t, testenv.StackOptions{Postgres: true, PostgresOpts: []string{"log_statement=all"},
		Docker: true, AllowedConsumers: testConsumers})}
}

// TestConsumers covers issue 3 against a real Docker engine, PostgreSQL and Vault.
func TestConsumers(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")

	t.Run("every rotation restarts the consumers and health-checks them", func(t *testing.T) {
		s.CreateLogin(t, "app", "app-0", "")
		s.Write(t, "roles/app", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "app",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		api := s.RunDemo(t, "app", testenv.DemoOptions{})
		workers := []*testenv.Container{
			s.RunDemo(t, "app", testenv.DemoOptions{Labels: composeLabels("cockpit-t1", "worker", 1)}),
			s.RunDemo(t, "app", testenv.DemoOptions{Labels: composeLabels("cockpit-t1", "worker", 2)}),
		}
		s.Write(t, "roles/app", map[string]interface{}{
			"consumers":      "docker:" + api.Name + ",compose:cockpit-t1/worker",
			"health_checks":  api.URL("/health") + "," + workers[0].URL("/health") + ",tcp://127.0.0.1:" + fmt.Sprint(workers[1].Port),
			"health_timeout": "20s",
		})
		role := s.Read(t, "roles/app").Data
		if len(role["consumers"].([]interface{})) != 2 || testenv.IntOf(t, role["health_timeout"]) != 20 || role["rollback_on_failure"] != true {
			t.Fatalf("role read: %#v", role)
		}

		rot := s.Write(t, "rotate/app", nil)
		_, pw, v := s.Creds(t, "app")
		for _, c := range append([]*testenv.Container{api}, workers...) {
			if got := demoStartedWith(t, c); got.Version != v {
				t.Fatalf("%s started with version %d, want the new %d", c.Name, got.Version, v)
			}
		}
		s.AssertLogin(t, "app", pw, true)
		restarts := rot.Data["consumers"].([]interface{})
		if len(restarts) != 3 {
			t.Fatalf("rotate response consumers: %s", testenv.JSONOf(t, restarts))
		}
		for i, want := range []string{api.Name, workers[0].Name, workers[1].Name} {
			r := restarts[i].(map[string]interface{})
			if r["container"] != want || r["status"] != "restarted" || r["duration_ms"] == nil {
				t.Fatalf("restart %d: %s (want %s restarted, in order)", i, testenv.JSONOf(t, r), want)
			}
		}
		for _, h := range rot.Data["health_checks"].([]interface{}) {
			if h.(map[string]interface{})["status"] != "healthy" {
				t.Fatalf("health: %s", testenv.JSONOf(t, h))
			}
		}
		hist := s.Read(t, "history/app").Data["history"].([]interface{})[0].(map[string]interface{})
		if len(hist["consumers"].([]interface{})) != 3 || len(hist["health_checks"].([]interface{})) != 3 {
			t.Fatalf("history lacks the deploy: %s", testenv.JSONOf(t, hist))
		}

		// A rollback is a rotation too: the consumers follow it.
		s.Write(t, "rollback/app", nil)
		_, _, v = s.Creds(t, "app")
		if got := demoStartedWith(t, api); got.Version != v {
			t.Fatalf("after rollback the consumer runs version %d, want %d", got.Version, v)
		}
		testenv.WaitHTTPStatus(t, api.URL("/health"), http.StatusOK, 10*time.Second)
		s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
	})

	t.Run("unhealthy consumers roll everything back", func(t *testing.T) {
		// The classic mistake: the second login of an alternating pair was never granted what
		// the service needs, so the service does not work with the new secret.
		s.Postgres.Exec(t, `CREATE TABLE orders (id int)`)
		s.CreateLogin(t, "rb_blue", "rb-blue-0", "")
		s.CreateLogin(t, "rb_green", "rb-green-0", "")
		s.Postgres.Exec(t, `GRANT SELECT ON orders TO rb_blue`)
		s.Write(t, "roles/rb", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "strategy": "alternating", "usernames": "rb_blue,rb_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		user, oldPW, oldVersion := s.Creds(t, "rb")
		if user != "rb_blue" {
			t.Fatalf("first login %s", user)
		}
		svc := s.RunDemo(t, "rb", testenv.DemoOptions{HealthQuery: "SELECT count(*) FROM orders"})
		testenv.WaitHTTPStatus(t, svc.URL("/health"), http.StatusOK, 10*time.Second)
		s.Write(t, "roles/rb", map[string]interface{}{
			"consumers": "docker:" + svc.Name, "health_checks": svc.URL("/health"), "health_timeout": "5s",
		})

		sec, re := s.WriteErr("rotate/rb", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		if !strings.Contains(strings.Join(re.Errors, " "), svc.URL("/health")) {
			t.Fatalf("the error does not name the failing health check: %v", re.Errors)
		}
		_ = sec
		gotUser, gotPW, gotVersion := s.Creds(t, "rb")
		if gotUser != "rb_blue" || gotPW != oldPW || gotVersion != oldVersion {
			t.Fatalf("creds after rollback: %s v%d, want rb_blue v%d with the old password", gotUser, gotVersion, oldVersion)
		}
		s.AssertLogin(t, "rb_blue", oldPW, true)
		if got := demoStartedWith(t, svc); got.Username != "rb_blue" {
			t.Fatalf("the consumer was not restarted on the old credential: %+v", got)
		}
		testenv.WaitHTTPStatus(t, svc.URL("/health"), http.StatusOK, 10*time.Second)
		h := s.Read(t, "history/rb").Data["history"].([]interface{})[0].(map[string]interface{})
		if h["failed_step"] != "deploy" || h["rolled_back"] != true || !strings.Contains(testenv.JSONOf(t, h), "redeploy") ||
			!strings.Contains(h["error"].(string), svc.URL("/health")) {
			t.Fatalf("history of the failed rotation: %s", testenv.JSONOf(t, h))
		}

		// rollback_on_failure=false keeps the new credential and marks the rotation failed.
		s.Write(t, "roles/rb", map[string]interface{}{"rollback_on_failure": false})
		_, re = s.WriteErr("rotate/rb", nil)
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		keptUser, keptPW, keptVersion := s.Creds(t, "rb")
		if keptUser != "rb_green" || keptVersion != oldVersion+1 {
			t.Fatalf("with rollback_on_failure=false creds is %s v%d, want rb_green v%d", keptUser, keptVersion, oldVersion+1)
		}
		s.AssertLogin(t, "rb_green", keptPW, true)
		role := s.Read(t, "roles/rb").Data
		if role["last_outcome"] != "failed" || testenv.IntOf(t, role["consecutive_failures"]) != 1 {
			t.Fatalf("role after a kept failed deploy: %#v", role)
		}
		if code, _ := testenv.HTTPStatus(svc.URL("/health")); code != http.StatusServiceUnavailable {
			t.Fatalf("the consumer is healthy on the new login without the grant: %d", code)
		}
	})

	t.Run("restarts honour the consumer's stop timeout", func(t *testing.T) {
		s.CreateLogin(t, "slow", "slow-0", "")
		// A service that ignores SIGTERM stops only when Docker sends SIGKILL, after the stop
		// timeout: 1s here instead of the container's default 10s.
		svc := s.RunDemo(t, "slow", testenv.DemoOptions{Env: []string{"IGNORE_SIGTERM=1"}})
		s.Write(t, "roles/slow", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "slow", "consumers": "docker:" + svc.Name + "?stop_timeout=1s",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		rot := s.Write(t, "rotate/slow", nil)
		r := rot.Data["consumers"].([]interface{})[0].(map[string]interface{})
		ms, _ := r["duration_ms"].(json.Number).Float64()
		if r["status"] != "restarted" || ms < 1000 || ms >= 9000 {
			t.Fatalf("restart with stop_timeout=1s took %.0f ms (want ≥ 1 s for the SIGKILL wait, < 10 s default): %s", ms, testenv.JSONOf(t, r))
		}
	})

	t.Run("a missing consumer fails the rotation before the target is touched", func(t *testing.T) {
		s.CreateLogin(t, "miss", "miss-0", "")
		s.Write(t, "roles/miss", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "miss",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, v := s.Creds(t, "miss")
		for _, consumer := range []string{"docker:no-such-container-x1", "compose:no-such-project/worker"} {
			s.Write(t, "roles/miss", map[string]interface{}{"consumers": consumer})
			alters := strings.Count(s.Postgres.Log(t), `ALTER ROLE "miss"`)
			_, re := s.WriteErr("rotate/miss", nil)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at prepare")
			if !strings.Contains(strings.Join(re.Errors, " "), strings.SplitN(consumer, "/", 2)[0]) {
				t.Fatalf("the error does not name the consumer: %v", re.Errors)
			}
			if strings.Count(s.Postgres.Log(t), `ALTER ROLE "miss"`) != alters {
				t.Fatal("PostgreSQL was changed although a consumer is missing")
			}
			_, still, sv := s.Creds(t, "miss")
			if still != pw || sv != v {
				t.Fatal("the credential changed")
			}
			s.AssertLogin(t, "miss", pw, true)
		}
		_, re := s.WriteErr("roles/miss", map[string]interface{}{"consumers": "kubernetes:api"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "consumers")
		_, re = s.WriteErr("roles/miss", map[string]interface{}{"health_checks": "ftp://x"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "health_checks")
	})

	t.Run("an unreachable Docker socket is named and changes nothing", func(t *testing.T) {
		s.CreateLogin(t, "sock", "sock-0", "")
		api := s.RunDemo(t, "sock", testenv.DemoOptions{})
		s.Write(t, "roles/sock", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "sock", "consumers": "docker:" + api.Name,
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, pw, _ := s.Creds(t, "sock")
		s.Write(t, "config", map[string]interface{}{"docker_host": "unix:///tmp/no-docker-here.sock"})
		_, re := s.WriteErr("rotate/sock", nil)
		s.Write(t, "config", map[string]interface{}{"docker_host": testenv.DockerHost()})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "unix:///tmp/no-docker-here.sock")
		_, still, _ := s.Creds(t, "sock")
		if still != pw {
			t.Fatal("the credential changed")
		}
		s.AssertLogin(t, "sock", pw, true)
	})
}

func composeLabels(project, service string, n int) map[string]string {
	return map[string]string{
		"com.docker.compose.project":          project,
		"com.docker.compose.service":          service,
		"com.docker.compose.container-number": fmt.Sprint(n),
	}
}

// probe polls urls every interval until stop is closed (bounded by max rounds) and counts
// rounds in which url i did not answer want.
type probe struct {
	mu       sync.Mutex
	rounds   int
	failures []int // per url
	allDown  int   // rounds in which no url answered want
	done     chan struct{}
}

func startProbe(urls []string, want int, interval time.Duration, maxRounds int, stop <-chan struct{}) *probe {
	p := &probe{failures: make([]int, len(urls)), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; i < maxRounds; i++ {
			select {
			case <-stop:
				return
			default:
			}
			up := 0
			for j, u := range urls {
				if code, err := testenv.HTTPStatus(u); err == nil && code == want {
					up++
				} else {
					p.mu.Lock()
					p.failures[j]++
					p.mu.Unlock()
				}
			}
			p.mu.Lock()
			p.rounds++
			if up == 0 {
				p.allDown++
			}
			p.mu.Unlock()
			time.Sleep(interval)
		}
	}()
	return p
}

func (p *probe) wait() (rounds int, failures []int, allDown int) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds, append([]int(nil), p.failures...), p.allDown
}

// TestZeroDowntime shows the two designs that keep a service up through a rotation.
func TestZeroDowntime(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")

	// bystander is a service that uses the secret but is not restarted: it keeps the
	// credential it started with. Returns its /health failures during and after a rotation.
	bystanderFailures := func(t *testing.T, role string) (rounds, failures int) {
		t.Helper()
		svc := s.RunDemo(t, role, testenv.DemoOptions{})
		testenv.WaitHTTPStatus(t, svc.URL("/health"), http.StatusOK, 10*time.Second)
		stop := make(chan struct{})
		p := startProbe([]string{svc.URL("/health")}, http.StatusOK, 50*time.Millisecond, 200, stop)
		time.Sleep(300 * time.Millisecond)
		s.Write(t, "rotate/"+role, nil)
		time.Sleep(2 * time.Second)
		close(stop)
		r, f, _ := p.wait()
		return r, f[0]
	}

	t.Run("alternating: a service on the previous login keeps working", func(t *testing.T) {
		s.CreateLogin(t, "zd_blue", "b-0", "")
		s.CreateLogin(t, "zd_green", "g-0", "")
		s.Write(t, "roles/zd-alt", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "strategy": "alternating", "usernames": "zd_blue,zd_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		rounds, failures := bystanderFailures(t, "zd-alt")
		if rounds < 10 || failures != 0 {
			t.Fatalf("alternating: %d failed probes of %d", failures, rounds)
		}
	})

	t.Run("single: the same service fails right after the rotation", func(t *testing.T) {
		s.CreateLogin(t, "zd_single", "s-0", "")
		s.Write(t, "roles/zd-single", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": "zd_single",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		rounds, failures := bystanderFailures(t, "zd-single")
		if failures == 0 {
			t.Fatalf("single: no failed probe of %d; the bystander should lose its password", rounds)
		}
	})

	t.Run("replicas restart one at a time: one always serves", func(t *testing.T) {
		s.CreateLogin(t, "rep_blue", "rb-0", "")
		s.CreateLogin(t, "rep_green", "rg-0", "")
		s.Write(t, "roles/rep", map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "strategy": "alternating", "usernames": "rep_blue,rep_green",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		replicas := []*testenv.Container{
			s.RunDemo(t, "rep", testenv.DemoOptions{Labels: composeLabels("shop", "api", 1), DockerHealthcheck: true}),
			s.RunDemo(t, "rep", testenv.DemoOptions{Labels: composeLabels("shop", "api", 2), DockerHealthcheck: true}),
		}
		for _, r := range replicas {
			testenv.Eventually(t, r.Name+" healthy", 30*time.Second, func() error {
				if st := r.HealthStatus(t); st != "healthy" {
					return fmt.Errorf("health %q", st)
				}
				return nil
			})
		}
		s.Write(t, "roles/rep", map[string]interface{}{"consumers": "compose:shop/api", "health_checks": replicas[0].URL("/health") + "," + replicas[1].URL("/health")})
		stop := make(chan struct{})
		p := startProbe([]string{replicas[0].URL("/"), replicas[1].URL("/")}, http.StatusOK, 20*time.Millisecond, 3000, stop)
		time.Sleep(300 * time.Millisecond)
		rot := s.Write(t, "rotate/rep", nil)
		close(stop)
		rounds, failures, allDown := p.wait()
		if allDown != 0 {
			t.Fatalf("%d of %d rounds had no replica answering", allDown, rounds)
		}
		if failures[0] == 0 || failures[1] == 0 {
			t.Fatalf("each replica should have been down once while restarting: failures %v of %d rounds", failures, rounds)
		}
		restarts := rot.Data["consumers"].([]interface{})
		if len(restarts) != 2 || restarts[0].(map[string]interface{})["container"] != replicas[0].Name {
			t.Fatalf("restarts: %s", testenv.JSONOf(t, restarts))
		}
		_, _, v := s.Creds(t, "rep")
		for _, r := range replicas {
			if got := demoStartedWith(t, r); got.Version != v {
				t.Fatalf("%s runs version %d, want %d", r.Name, got.Version, v)
			}
		}
	})
}
