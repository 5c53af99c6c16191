//go:build linux

package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/client"
)

// TestStartDockerd: the second engine answers only over TLS with a client certificate, runs the demo consumer on
// 127.0.0.1, and its cleanup stops the daemon (and its containerd) and removes its directories.
func TestStartDockerd(t *testing.T) {
	t.Parallel()
	var eng *DockerEngine
	t.Run("engine", func(t *testing.T) {
		eng = StartDockerd(t)
		if !strings.HasPrefix(eng.Host, "tcp://127.0.0.1:") || eng.Host == DockerHost() {
			t.Fatalf("host %s", eng.Host)
		}
		ctx := context.Background()
		v, err := eng.Client().ServerVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("second engine: API %s", v.APIVersion)
		// Without a client certificate the engine refuses the connection.
		plain, err := client.NewClientWithOpts(client.WithHost(eng.Host), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if _, err := plain.Ping(ctx); err == nil {
			t.Fatal("the engine answered a client without TLS")
		}
		c := RunDemoConsumer(t, DemoOptions{Engine: eng})
		if _, err := eng.Client().ContainerInspect(ctx, c.ID); err != nil {
			t.Fatalf("the container is not on the second engine: %v", err)
		}
		if _, err := Docker(t).ContainerInspect(ctx, c.ID); err == nil {
			t.Fatal("the container is on the default engine")
		}
		c.Restart(t, nil)
	})
	if eng == nil || eng.pid == 0 {
		t.Fatal("no engine started")
	}
	if err := syscall.Kill(eng.pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("dockerd %d still runs after cleanup (%v)", eng.pid, err)
	}
	if _, err := os.Stat(eng.dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after cleanup (%v)", eng.dir, err)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), eng.dir) {
		t.Fatalf("mounts under %s remain", eng.dir)
	}
}
