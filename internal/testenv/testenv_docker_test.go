package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDockerEngine(t *testing.T) {
	t.Parallel()
	cli := Docker(t)
	if cli.DaemonHost() != DockerHost() {
		t.Fatalf("client host %s, DockerHost %s", cli.DaemonHost(), DockerHost())
	}
	ref := DemoImage(t)
	if !strings.HasPrefix(ref, DemoImageRepo+":") || len(ref) != len(DemoImageRepo)+1+12 {
		t.Fatalf("image ref %q", ref)
	}
	info, err := cli.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if ep := info.Config.Entrypoint; len(ep) != 1 || ep[0] != DemoBinary {
		t.Fatalf("entrypoint %v", ep)
	}
	if again := DemoImage(t); again != ref {
		t.Fatalf("second DemoImage %q != %q", again, ref)
	}
}

// TestDockerDemoConsumer runs the demo consumer against the real plugin: it reads rotation/creds/ROLE at start and
// its /health proves that credential logs in right now.
func TestDockerDemoConsumer(t *testing.T) {
	t.Parallel()
	st := NewStack(t, StackOptions{Postgres: true})
	pg, v := st.Postgres, st.Vault
	ctx := context.Background()

	role := func(name, user, password string) {
		t.Helper()
		pg.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, user, password))
		if _, err := v.Client.Logical().WriteWithContext(ctx, "rotation/roles/"+name, map[string]any{
			"type": "postgres", "connection_url": pg.URLTemplate(), "username": user, "password": password, "rotation_period": "1h",
		}); err != nil {
			t.Fatalf("creating role %s: %v", name, err)
		}
	}
	currentPassword := func(name string) string {
		t.Helper()
		s, err := v.Client.Logical().ReadWithContext(ctx, "rotation/creds/"+name)
		if err != nil || s == nil {
			t.Fatalf("reading creds/%s: %v", name, err)
		}
		return s.Data["password"].(string)
	}
	role("demo", "demo_app", "demo-pw-1")
	role("demo2", "demo_ro", "demo-ro-pw-1")
	pg.Exec(t, `CREATE TABLE demo_private (x int); REVOKE ALL ON demo_private FROM PUBLIC`)

	// The consumer must never log or serve the password.
	noPassword := func(t *testing.T, c *Container, passwords ...string) {
		t.Helper()
		texts := []string{c.Logs(t)}
		for _, p := range []string{"/", "/health", "/version"} {
			_, body, _ := HTTPGet(c.URL(p))
			texts = append(texts, body)
		}
		for _, s := range texts {
			for _, pw := range passwords {
				if strings.Contains(s, pw) {
					t.Fatalf("password %q appears in %q", pw, s)
				}
			}
		}
	}
	expect := func(t *testing.T, url string, want int, wantBody string) string {
		t.Helper()
		code, body, err := HTTPGet(url)
		if err != nil || code != want || !strings.Contains(body, wantBody) {
			t.Fatalf("GET %s: %d %q %v; want %d with %q", url, code, body, err, want, wantBody)
		}
		return body
	}
	version := func(t *testing.T, c *Container) (string, int) {
		t.Helper()
		var out struct {
			Username string `json:"username"`
			Version  int    `json:"version"`
		}
		body := expect(t, c.URL("/version"), http.StatusOK, "")
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("/version %q: %v", body, err)
		}
		return out.Username, out.Version
	}

	t.Run("rotate-restart", func(t *testing.T) {
		t.Parallel()
		c := RunDemoConsumer(t, DemoOptions{VaultAddr: v.Addr, VaultToken: v.Token, Role: "demo", DockerHealthcheck: true})
		expect(t, c.URL("/"), http.StatusOK, "ok demo_app v1")
		expect(t, c.URL("/health"), http.StatusOK, "")
		if u, n := version(t, c); u != "demo_app" || n != 1 {
			t.Fatalf("/version: %s %d", u, n)
		}
		if !strings.Contains(c.Logs(t), "started with demo_app version 1") {
			t.Fatalf("log: %s", c.Logs(t))
		}
		deadline := time.Now().Add(30 * time.Second)
		for c.HealthStatus(t) != "healthy" {
			if time.Now().After(deadline) {
				t.Fatalf("docker health %q after 30s: %+v", c.HealthStatus(t), c.Inspect(t).State.Health)
			}
			time.Sleep(200 * time.Millisecond)
		}

		// Every /health opens a fresh connection: a changed password shows at once, and so does the repair.
		pg.Exec(t, `ALTER ROLE demo_app PASSWORD 'other'`)
		expect(t, c.URL("/health"), http.StatusServiceUnavailable, "demo_app")
		expect(t, c.URL("/"), http.StatusOK, "ok demo_app v1")
		pg.Exec(t, fmt.Sprintf(`ALTER ROLE demo_app PASSWORD '%s'`, currentPassword("demo")))
		expect(t, c.URL("/health"), http.StatusOK, "")

		// Rotating leaves the running consumer with the old password (unhealthy); a restart reads the new version.
		if _, err := v.Client.Logical().WriteWithContext(ctx, "rotation/rotate/demo", nil); err != nil {
			t.Fatal(err)
		}
		newPW := currentPassword("demo")
		expect(t, c.URL("/health"), http.StatusServiceUnavailable, "")
		start := time.Now()
		c.Restart(t, nil)
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("restart took %s: the consumer does not stop promptly on SIGTERM", d)
		}
		if u, n := version(t, c); u != "demo_app" || n != 2 {
			t.Fatalf("/version after restart: %s %d", u, n)
		}
		expect(t, c.URL("/health"), http.StatusOK, "")
		noPassword(t, c, "demo-pw-1", newPW)
	})

	t.Run("health-query", func(t *testing.T) {
		t.Parallel()
		c := RunDemoConsumer(t, DemoOptions{VaultAddr: v.Addr, VaultToken: v.Token, Role: "demo2",
			HealthQuery: "SELECT count(*) FROM demo_private", DockerHealthcheck: true,
			Labels: map[string]string{"testenv.case": "health-query"}})
		expect(t, c.URL("/"), http.StatusOK, "ok demo_ro v1")
		expect(t, c.URL("/health"), http.StatusServiceUnavailable, "permission denied")
		if c.Inspect(t).Config.Labels["testenv.case"] != "health-query" || c.Inspect(t).Config.Labels[ContainerLabel] != "1" {
			t.Fatalf("labels %v", c.Inspect(t).Config.Labels)
		}
		deadline := time.Now().Add(30 * time.Second)
		for c.HealthStatus(t) != "unhealthy" {
			if time.Now().After(deadline) {
				t.Fatalf("docker health %q after 30s", c.HealthStatus(t))
			}
			time.Sleep(200 * time.Millisecond)
		}
		pg.Exec(t, `GRANT SELECT ON demo_private TO demo_ro`)
		expect(t, c.URL("/health"), http.StatusOK, "")
		noPassword(t, c, "demo-ro-pw-1")
	})

	t.Run("no-creds", func(t *testing.T) {
		t.Parallel()
		// Unreadable secret: the consumer keeps running (visible as unhealthy) instead of exiting.
		c := RunDemoConsumer(t, DemoOptions{VaultAddr: v.Addr, VaultToken: v.Token, Role: "missing"})
		expect(t, c.URL("/health"), http.StatusServiceUnavailable, "no credentials")
		expect(t, c.URL("/"), http.StatusOK, "ok")
		if info := c.Inspect(t); !info.State.Running || info.RestartCount != 0 {
			t.Fatalf("state %+v, restarts %d", info.State, info.RestartCount)
		}
	})
}
