package testenv

// Docker support: an Engine API client, the demo consumer image (demo/consumer, imported from a tarball of its static
// binary: there is no registry) and containers running it with host networking on 127.0.0.1.
//
// The engine is $DOCKER_HOST, else unix:///var/run/docker.sock; scripts/with-dockerd.sh starts one (without a bridge
// network) when none answers. Tests that need Docker fail (they do not skip) when no engine answers.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
)

const (
	// DefaultDockerHost is the engine address used when $DOCKER_HOST is not set.
	DefaultDockerHost = "unix:///var/run/docker.sock"
	// ContainerLabel marks every container testenv creates (value "1"); .ci/run removes leftovers carrying it.
	ContainerLabel = "vault-plugin-rotation.testenv"
	// DemoImageRepo is the repository of the demo consumer image; DemoImage tags it with the binary's sha256 (12 hex).
	DemoImageRepo = "vault-plugin-rotation/demo-consumer"
	// DemoBinary is the demo consumer's path inside its image (the image's entrypoint).
	DemoBinary = "/demo-consumer"
)

// DockerHost is the engine address to use, also what the plugin's config docker_host should be set to:
// $DOCKER_HOST, else unix:///var/run/docker.sock.
func DockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return DefaultDockerHost
}

// Docker returns an Engine API client for DockerHost (API version negotiated), closed at cleanup. It fails the test
// when no engine answers.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := dockerClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func dockerClient() (*client.Client, error) {
	host := DockerHost()
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("testenv: docker client for %s: %v", host, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("testenv: no Docker engine answers at %s (DOCKER_HOST): %v\n"+
			"start one, e.g. run the tests through scripts/with-dockerd.sh (make test does)", host, err)
	}
	return cli, nil
}

// DockerEngine is an engine a test restarts containers on: the default one (DefaultEngine) or one StartDockerd
// started.
type DockerEngine struct {
	// Host is the engine's address: what the plugin's docker_host or docker_hosts item names.
	Host string
	// CA signed the engine's server certificate; ClientCert and ClientKey are a client certificate it accepts (PEM).
	// Empty for the default engine.
	CA, ClientCert, ClientKey string
	// CAs is the CA, to issue more client certificates (nil for the default engine).
	CAs *testcerts.CA

	cli *client.Client
	log string // dockerd's log file
	dir string // its directories (started engines only)
	pid int    // its process (started engines only)
}

// DefaultEngine is the engine at DockerHost.
func DefaultEngine(t testing.TB) *DockerEngine {
	t.Helper()
	return &DockerEngine{Host: DockerHost(), cli: Docker(t)}
}

// Client is an Engine API client of the engine (API version negotiated).
func (e *DockerEngine) Client() *client.Client { return e.cli }

// Log is the tail of the engine's log (started engines only).
func (e *DockerEngine) Log() string {
	if e.log == "" {
		return ""
	}
	b, _ := os.ReadFile(e.log)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

var (
	demoOnce sync.Once
	demoBin  string // the demo consumer's static binary, kept for the test binary's life
	demoRef  string
	demoErr  error

	demoMu       sync.Mutex
	demoImported = map[string]bool{} // by engine address
)

// DemoImage builds demo/consumer (static, CGO_ENABLED=0) once per test binary, imports it into the default engine as
// vault-plugin-rotation/demo-consumer:<first 12 hex of the binary's sha256> (entrypoint /demo-consumer; an image with
// that tag already present is reused) and returns that reference.
func DemoImage(t testing.TB) string {
	t.Helper()
	return DefaultEngine(t).DemoImage(t)
}

// DemoImage is the demo consumer's image on this engine, imported on first use.
func (e *DockerEngine) DemoImage(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	demoOnce.Do(func() { demoBin, demoRef, demoErr = buildDemoBinary(root) })
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	demoMu.Lock()
	defer demoMu.Unlock()
	if !demoImported[e.Host] {
		if err := importDemo(e.cli, demoBin, demoRef); err != nil {
			t.Fatal(err)
		}
		demoImported[e.Host] = true
	}
	return demoRef
}

// buildDemoBinary builds demo/consumer into a directory that lives as long as the test binary (Main removes it).
func buildDemoBinary(repoRoot string) (bin, ref string, err error) {
	dir, err := os.MkdirTemp("", "testenv-demo-")
	if err != nil {
		return "", "", err
	}
	registerTempDir(dir)
	bin = filepath.Join(dir, "demo-consumer")
	cmd := exec.Command(goBin(), "build", "-trimpath", "-o", bin, "./demo/consumer")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("testenv: go build ./demo/consumer: %v\n%s", err, out)
	}
	sum, err := FileSHA256(bin)
	if err != nil {
		return "", "", err
	}
	return bin, DemoImageRepo + ":" + sum[:12], nil
}

// importDemo imports the binary as ref into the engine, unless the engine has ref already.
func importDemo(cli *client.Client, bin, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	tarball, err := tarFile(bin, strings.TrimPrefix(DemoBinary, "/"))
	if err != nil {
		return err
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: tarball, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["` + DemoBinary + `"]`}, Message: "testenv: demo/consumer"})
	if err != nil {
		return fmt.Errorf("testenv: importing %s: %v", ref, err)
	}
	defer rc.Close()
	// The answer is a stream of JSON messages; a failure arrives as {"error": ...} in it.
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("testenv: importing %s: reading the answer: %v", ref, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("testenv: importing %s: %s", ref, msg.Error)
		}
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("testenv: imported %s but cannot inspect it: %v", ref, err)
	}
	return nil
}

// tarFile returns a tar archive holding the file at path as name, mode 0755.
func tarFile(path, name string) (io.Reader, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(b); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// Container is a container started by RunDemoConsumer; it listens on 127.0.0.1:Port (host networking).
type Container struct {
	ID, Name string
	Port     int
	engine   *DockerEngine // nil: the default engine
}

// client is a client of the container's engine.
func (c *Container) client(t testing.TB) *client.Client {
	t.Helper()
	if c.engine != nil {
		return c.engine.cli
	}
	return Docker(t)
}

// URL is http://127.0.0.1:PORT followed by path (e.g. "/health").
func (c *Container) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", c.Port, path)
}

// Logs returns the container's stdout and stderr so far ("" and a logged note when they cannot be read).
func (c *Container) Logs(t testing.TB) string {
	t.Helper()
	logs, err := containerLogs(c.client(t), c.ID)
	if err != nil {
		t.Logf("testenv: logs of container %s: %v", c.Name, err)
	}
	return logs
}

func containerLogs(cli *client.Client, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, rc) // no TTY: the stream is multiplexed
	return out.String(), err
}

// DemoOptions configures RunDemoConsumer.
type DemoOptions struct {
	Name string // container name; "" = testenv-demo-<random>. A leftover testenv container of that name is removed first.

	VaultAddr, VaultToken string // VAULT_ADDR, VAULT_TOKEN
	Role                  string // ROTATION_ROLE: the consumer reads MOUNT/creds/ROLE once at start
	Mount                 string // ROTATION_MOUNT ("" = the consumer's default, rotation)

	Port        int    // LISTEN=127.0.0.1:Port; 0 = FreePort
	HealthQuery string // HEALTH_QUERY ("" = the consumer's default, SELECT 1)

	Labels map[string]string // extra labels (ContainerLabel=1 is always set)
	Engine *DockerEngine     // where the container runs (nil: the default engine)
	Env    []string          // extra KEY=VALUE (e.g. IGNORE_SIGTERM=1)

	// DockerHealthcheck adds a container health check: /demo-consumer -check http://127.0.0.1:PORT/health every 1s,
	// unhealthy after 3 consecutive failures (State.Health.Status in inspect).
	DockerHealthcheck bool
	StopTimeout       *int // seconds the engine waits after SIGTERM on stop/restart (nil = engine default, 10)
}

// RunDemoConsumer creates and starts a demo consumer container (image DemoImage, host networking) and waits up to 30s
// until its liveness endpoint / answers 200. Cleanup force-removes it (its log is printed first when the test failed).
func RunDemoConsumer(t testing.TB, opts DemoOptions) *Container {
	t.Helper()
	eng := opts.Engine
	if eng == nil {
		eng = DefaultEngine(t)
	}
	ref := eng.DemoImage(t)
	cli := eng.cli
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	name := opts.Name
	if name == "" {
		name = "testenv-demo-" + randHex(t, 6)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", opts.Port)
	env := []string{"VAULT_ADDR=" + opts.VaultAddr, "VAULT_TOKEN=" + opts.VaultToken, "ROTATION_ROLE=" + opts.Role, "LISTEN=" + listen}
	if opts.Mount != "" {
		env = append(env, "ROTATION_MOUNT="+opts.Mount)
	}
	if opts.HealthQuery != "" {
		env = append(env, "HEALTH_QUERY="+opts.HealthQuery)
	}
	env = append(env, opts.Env...)
	labels := map[string]string{}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	labels[ContainerLabel] = "1"
	cfg := &container.Config{Image: ref, Env: env, Labels: labels, StopTimeout: opts.StopTimeout}
	if opts.DockerHealthcheck {
		cfg.Healthcheck = &container.HealthConfig{
			Test:     []string{"CMD", DemoBinary, "-check", "http://" + listen + "/health"},
			Interval: time.Second,
			Timeout:  5 * time.Second,
			Retries:  3,
		}
	}
	hostCfg := &container.HostConfig{NetworkMode: "host"}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, name)
	if cerrdefs.IsConflict(err) && removeLeftover(ctx, cli, name) {
		created, err = cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, name)
	}
	if err != nil {
		t.Fatalf("testenv: creating container %s: %v", name, err)
	}
	c := &Container{ID: created.ID, Name: name, Port: opts.Port, engine: opts.Engine}
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := containerLogs(cli, c.ID); err == nil {
				t.Logf("--- log of container %s ---\n%s", c.Name, logs)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("testenv: removing container %s: %v", c.Name, err)
		}
	})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatalf("testenv: starting container %s: %v", name, err)
	}
	c.WaitUp(t, 30*time.Second)
	return c
}

// removeLeftover force-removes the container called name if testenv created it (a leftover of a crashed run).
func removeLeftover(ctx context.Context, cli *client.Client, name string) bool {
	info, err := cli.ContainerInspect(ctx, name)
	if err != nil || info.Config == nil || info.Config.Labels[ContainerLabel] != "1" {
		return false
	}
	return cli.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true}) == nil
}

// WaitUp waits until / answers 200 (the process is up and serving), failing the test after timeout or as soon as
// the container is no longer running.
func (c *Container) WaitUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	cli := c.client(t)
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		code, err := HTTPStatus(c.URL("/"))
		if err == nil && code == http.StatusOK {
			return
		}
		lastErr = err
		if err == nil {
			lastErr = fmt.Errorf("status %d", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, ierr := cli.ContainerInspect(ctx, c.ID)
		cancel()
		if ierr == nil && info.State != nil && !info.State.Running && !info.State.Restarting && info.State.Status != "created" {
			t.Fatalf("testenv: container %s is %s (exit code %d, error %q)\n--- log ---\n%s",
				c.Name, info.State.Status, info.State.ExitCode, info.State.Error, c.Logs(t))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: container %s: %s did not answer 200 within %s: %v\n--- log ---\n%s",
				c.Name, c.URL("/"), timeout, lastErr, c.Logs(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart restarts the container through the Engine API (SIGTERM, then SIGKILL after timeout seconds; nil = the
// container's StopTimeout) and waits until it answers again.
func (c *Container) Restart(t testing.TB, timeout *int) {
	t.Helper()
	cli := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cli.ContainerRestart(ctx, c.ID, container.StopOptions{Timeout: timeout}); err != nil {
		t.Fatalf("testenv: restarting container %s: %v", c.Name, err)
	}
	c.WaitUp(t, 30*time.Second)
}

// Inspect returns the engine's view of the container.
func (c *Container) Inspect(t testing.TB) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := c.client(t).ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatalf("testenv: inspecting container %s: %v", c.Name, err)
	}
	return info
}

// HealthStatus is State.Health.Status of the container ("" when it has no health check): starting, healthy, unhealthy.
func (c *Container) HealthStatus(t testing.TB) string {
	t.Helper()
	info := c.Inspect(t)
	if info.State == nil || info.State.Health == nil {
		return ""
	}
	return info.State.Health.Status
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// HTTPStatus GETs url (5s timeout) and returns the status code; the body is discarded.
func HTTPStatus(url string) (int, error) {
	code, _, err := HTTPGet(url)
	return code, err
}

// HTTPGet GETs url (5s timeout) and returns the status code and up to 64 KiB of the body.
func HTTPGet(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// WaitHTTPStatus polls url until it answers want, failing the test after timeout with the last answer.
func WaitHTTPStatus(t testing.TB, url string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := HTTPGet(url)
		if err == nil && code == want {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("status " + strconv.Itoa(code) + ": " + strings.TrimSpace(body))
			}
			t.Fatalf("testenv: %s did not answer %d within %s: %v", url, want, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
