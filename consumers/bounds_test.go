package consumers

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hangingEngine serves a unix socket that accepts every connection, reads the request and never
// answers: a Docker engine that is stuck. The real engine cannot be made to do this on demand, so
// this listener stands in for it. It returns the docker_host URL.
func hangingEngine(t *testing.T) string {
	t.Helper()
	// A short directory: a unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }() // drained until the test closes it
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "unix://" + path
}

// Every Docker Engine API call (inspect, list, restart) gives up within its own bound when the
// engine takes the connection and never answers, and the error names the engine's socket. The
// parent context's deadline is far longer: had a call no bound of its own, it would end on the
// parent's deadline instead, and the error would not say "did not answer within".
func TestDockerCallsAreBoundedWhenTheEngineNeverAnswers(t *testing.T) {
	host := hangingEngine(t)
	cli, err := NewDockerClient(host)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	env := Env{Docker: cli, DockerHost: host, CallTimeout: 300 * time.Millisecond, ReadyTimeout: time.Second}
	parse := func(spec string) Consumer {
		c, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name, limit string
		call        func(context.Context) error
	}{
		{"inspect (docker: exists)", "300ms", func(ctx context.Context) error {
			_, err := parse("docker:api").Inspect(ctx, env)
			return err
		}},
		{"list (compose: exists)", "300ms", func(ctx context.Context) error {
			_, err := parse("compose:proj/svc").Inspect(ctx, env)
			return err
		}},
		{"restart with stop_timeout", "2.3s", func(ctx context.Context) error {
			// The restart call itself (a docker: consumer inspects first, by name).
			stop := 2 * time.Second
			if r := env.restartOne(ctx, "docker:api", "api", "api", Options{StopTimeout: &stop}); r.Error != "" {
				return errors.New(r.Error)
			}
			return nil
		}},
		{"the name lookup before a restart", "300ms", func(ctx context.Context) error {
			_, err := parse("docker:api?stop_timeout=2s").Restart(ctx, env)
			return err
		}},
		{"inspect for the container's own stop timeout", "300ms", func(ctx context.Context) error {
			_, err := parse("docker:api").Restart(ctx, env)
			return err
		}},
		{"restart of a compose service", "300ms", func(ctx context.Context) error {
			_, err := parse("compose:proj/svc").Restart(ctx, env)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := c.call(ctx)
			if err == nil || !strings.Contains(err.Error(), "the Docker engine at "+host+" did not answer within "+c.limit) {
				t.Fatalf("error %v, want one saying the engine at %s did not answer within %s", err, host, c.limit)
			}
		})
	}
}

// A socket nobody listens on fails at once, from the connection and not from a timeout, and the
// error names the socket.
func TestDockerEngineUnreachableNamesTheSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	host := "unix://" + filepath.Join(dir, "missing.sock")
	cli, err := NewDockerClient(host)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// A call bound far longer than the test's own: a failure from a timeout would take minutes.
	env := Env{Docker: cli, DockerHost: host, CallTimeout: time.Hour}
	for _, spec := range []string{"docker:api", "compose:proj/svc"} {
		c, _ := Parse(spec)
		_, err := c.Inspect(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "cannot reach the Docker engine at "+host) {
			t.Fatalf("%s: error %v, want one naming %s", spec, err, host)
		}
	}
}

func TestStopTimeoutBounded(t *testing.T) {
	if _, err := Parse("docker:a?stop_timeout=1h"); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("docker:a?stop_timeout=61m"); err == nil || !strings.Contains(err.Error(), "stop_timeout") {
		t.Fatalf("error %v, want one naming stop_timeout", err)
	}
}

// A health check against a service that takes the connection and never answers ends with
// health_timeout, naming the check: the probe is bounded by the checks' shared deadline (and each
// HTTP attempt by the client's own timeout), not by the caller's.
func TestHealthCheckOfAServiceThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	checks, err := ParseHealthChecks([]string{"http://" + ln.Addr().String() + "/health"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := RunHealthChecks(ctx, checks, 500*time.Millisecond, nil)
	if ctx.Err() != nil {
		t.Fatal("the health check ran until the caller's deadline: it has no bound of its own")
	}
	if err == nil || !strings.Contains(err.Error(), "health check http://"+ln.Addr().String()+"/health: not healthy after 500ms: timeout") {
		t.Fatalf("error %v", err)
	}
	if results[0].Status != Unhealthy {
		t.Fatalf("results: %+v", results)
	}
}
