//go:build linux

package testenv

// A second Docker engine for the tests of consumers on several engines: a dockerd of its own (data root, exec root,
// pidfile, config file, its own containerd), no bridge network, listening only on TCP 127.0.0.1:<free port> with TLS
// and client certificates (--tlsverify), the certificates made in the test. Root only; it fails (does not skip) when
// dockerd is missing or does not come up.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
)

// dockerdStopWait bounds a started dockerd's graceful stop before it is killed.
const dockerdStopWait = 30 * time.Second

// StartDockerd starts a second dockerd on TCP 127.0.0.1 with TLS and client certificates, waits (at most a minute)
// until it answers, and registers its cleanup: its containers removed, the daemon stopped (SIGTERM, SIGKILL to its
// process group after 30 s), its directories removed — also when the test fails or the start does.
func StartDockerd(t testing.TB) *DockerEngine {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatalf("testenv: StartDockerd needs dockerd on PATH (scripts/with-dockerd.sh installs docker.io): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("testenv: StartDockerd needs root")
	}
	// Short: containerd's sockets live under the exec root and a socket path is at most 107 bytes.
	dir, err := os.MkdirTemp("", "tdd-")
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	e := &DockerEngine{log: filepath.Join(dir, "dockerd.log"), dir: dir}
	t.Cleanup(func() { e.stop(t, cmd, dir) })

	ca := testcerts.NewCA(t, "testenv dockerd CA")
	serverCert, serverKey := ca.Server(t, "127.0.0.1", net.ParseIP("127.0.0.1"))
	e.CAs, e.CA = ca, ca.PEM
	e.ClientCert, e.ClientKey = ca.Client(t, "testenv client")
	files := map[string]string{"ca.pem": ca.PEM, "server-cert.pem": serverCert, "server-key.pem": serverKey,
		"client-cert.pem": e.ClientCert, "client-key.pem": e.ClientKey, "daemon.json": "{}\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	e.Host = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	logFile, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd = exec.Command(bin,
		"--host", e.Host,
		"--tlsverify", "--tlscacert", filepath.Join(dir, "ca.pem"),
		"--tlscert", filepath.Join(dir, "server-cert.pem"), "--tlskey", filepath.Join(dir, "server-key.pem"),
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "--config-file", filepath.Join(dir, "daemon.json"),
		"--bridge=none", "--iptables=false", "--ip-masq=false")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting dockerd: %v", err)
	}
	e.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	e.cli, err = client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation(),
		client.WithTLSClientConfig(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client-cert.pem"), filepath.Join(dir, "client-key.pem")))
	if err != nil {
		t.Fatalf("testenv: client of the second dockerd: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := e.cli.Ping(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("testenv: the second dockerd exited at start: %v\n--- log ---\n%s", cmd.ProcessState, e.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: the second dockerd did not answer at %s within a minute: %v\n--- log ---\n%s", e.Host, err, e.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

// stop removes the engine's containers, stops dockerd and removes its directories.
func (e *DockerEngine) stop(t testing.TB, cmd *exec.Cmd, dir string) {
	if cmd != nil && cmd.Process != nil {
		if e.cli != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", ContainerLabel+"=1"))})
			if err == nil {
				for _, c := range list {
					if err := e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
						t.Logf("testenv: removing container %s from the second dockerd: %v", c.ID, err)
					}
				}
			}
			cancel()
			_ = e.cli.Close()
		}
		if t.Failed() {
			t.Logf("--- log of the second dockerd ---\n%s", e.Log())
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if !waitExit(cmd.Process.Pid, dockerdStopWait) {
			t.Logf("testenv: the second dockerd did not stop within %s: killing its process group", dockerdStopWait)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			waitExit(cmd.Process.Pid, 10*time.Second)
		}
	}
	unmountUnder(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("testenv: removing %s: %v", dir, err)
	}
}

// waitExit waits until pid is gone (reaped by the goroutine waiting on it), at most d.
func waitExit(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// unmountUnder lazily unmounts what a killed dockerd left mounted below dir (overlay layers, its exec root), deepest
// first, so that RemoveAll never walks into a container's filesystem.
func unmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("testenv: unmounting %s: %v", mounts[i], err)
		}
	}
}
