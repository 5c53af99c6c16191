package consumers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

func init() { Register("docker", newContainer) }

// DockerAPI is the part of the Docker Engine API that consumers use.
type DockerAPI interface {
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerRestart(ctx context.Context, id string, options container.StopOptions) error
}

var _ DockerAPI = (*client.Client)(nil)

// NewDockerClient returns a client for host (e.g. unix:///var/run/docker.sock); it does not
// connect until used.
func NewDockerClient(host string) (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker_host %q: %w", host, err)
	}
	return c, nil
}

// ValidateDockerHost checks that host is a Docker Engine address (unix://PATH or tcp://HOST:PORT).
func ValidateDockerHost(host string) error {
	if _, err := client.ParseHostURL(host); err != nil {
		return fmt.Errorf("docker_host %q: %w", host, err)
	}
	return nil
}

// containerNameRe is Docker's rule for container names.
var containerNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// dockerContainer is "docker:NAME": one container.
type dockerContainer struct {
	name string
	opts Options
}

var _ Consumer = (*dockerContainer)(nil)

func newContainer(name string, opts Options) (Consumer, error) {
	if !containerNameRe.MatchString(name) {
		return nil, fmt.Errorf("%s: not a container name", identity("docker", opts.Endpoint, name))
	}
	return &dockerContainer{name: name, opts: opts}, nil
}

func (d *dockerContainer) String() string { return identity("docker", d.opts.Endpoint, d.name) }

func (d *dockerContainer) Endpoint() string { return d.opts.Endpoint }

func (d *dockerContainer) Restart(ctx context.Context, env Env) ([]Restart, error) {
	info, err := env.byName(ctx, d.name)
	if err != nil {
		r := Restart{Consumer: d.String(), Container: d.name, Status: StatusFailed, Error: "restart: " + err.Error()}
		return []Restart{r}, fmt.Errorf("%s: %s", d, r.Error)
	}
	r := env.restartOne(ctx, d.String(), d.name, info.ID, d.opts)
	if r.Error != "" {
		return []Restart{r}, fmt.Errorf("%s: %s", d, r.Error)
	}
	return []Restart{r}, nil
}

func (d *dockerContainer) Inspect(ctx context.Context, env Env) ([]container.InspectResponse, error) {
	info, err := env.byName(ctx, d.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	return []container.InspectResponse{info}, nil
}

// byName returns the container named exactly name, as inspected. Docker resolves a reference as a
// full id, then a name, then an id prefix: "docker:db3" with no container named db3 would reach
// whichever container's id starts with db3, past an allow-list glob such as docker:db* (README
// "Allow-lists"). The restart then goes to that id, not to a name that could be taken meanwhile.
func (env Env) byName(ctx context.Context, name string) (container.InspectResponse, error) {
	info, err := env.inspect(ctx, name)
	if err != nil {
		return info, err
	}
	if info.ContainerJSONBase == nil || info.Name != "/"+name {
		return container.InspectResponse{}, fmt.Errorf("no such container %q", name)
	}
	return info, nil
}

func (env Env) api() (DockerAPI, error) {
	if env.Err != nil {
		return nil, env.Err
	}
	if env.Docker == nil {
		return nil, errors.New("no Docker engine configured (rotation/config docker_host)")
	}
	return env.Docker, nil
}

// inspect reads a container within the call timeout, naming the engine's socket when it cannot
// be reached or does not answer.
func (env Env) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	api, err := env.api()
	if err != nil {
		return container.InspectResponse{}, err
	}
	call, cancel := context.WithTimeout(ctx, env.callTimeout())
	defer cancel()
	info, err := api.ContainerInspect(call, id)
	switch {
	case err == nil:
		return info, nil
	case cerrdefs.IsNotFound(err):
		return info, fmt.Errorf("no such container %q", id)
	default:
		return info, env.apiError(ctx, fmt.Sprintf("inspect %q", id), env.callTimeout(), err)
	}
}

// apiError names the engine (DockerHost) in an error of a call that was given limit: the engine
// could not be reached, refused the TLS handshake, or took the call and did not answer in time.
func (env Env) apiError(ctx context.Context, call string, limit time.Duration, err error) error {
	if why, ok := tlsFailure(err); ok {
		return fmt.Errorf("%s: TLS with the Docker engine at %s failed: %s", call, env.DockerHost, why)
	}
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: cannot reach the Docker engine at %s: %w", call, env.DockerHost, err)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("%s: the Docker engine at %s did not answer within %s", call, env.DockerHost, limit)
	default:
		return fmt.Errorf("%s: %w", call, err)
	}
}

// stopTimeout is what Docker waits after SIGTERM before it kills the container: the consumer's
// stop_timeout, else the container's own (Docker's default when it has none). It returns the
// options to send, which set the timeout only when the consumer does or when the container's
// own is beyond MaxStopTimeout (or unlimited), so that a restart always ends.
func (env Env) stopTimeout(ctx context.Context, id string, opts Options) (container.StopOptions, time.Duration, error) {
	if opts.StopTimeout != nil {
		secs := int(opts.StopTimeout.Seconds())
		return container.StopOptions{Timeout: &secs}, *opts.StopTimeout, nil
	}
	info, err := env.inspect(ctx, id)
	if err != nil {
		return container.StopOptions{}, 0, err
	}
	if info.Config == nil || info.Config.StopTimeout == nil {
		return container.StopOptions{}, DefaultStopTimeout, nil
	}
	own := *info.Config.StopTimeout
	if own < 0 || own > int(MaxStopTimeout/time.Second) {
		secs := int(MaxStopTimeout / time.Second)
		return container.StopOptions{Timeout: &secs}, MaxStopTimeout, nil
	}
	return container.StopOptions{}, time.Duration(own) * time.Second, nil
}

// restartOne restarts one container (id; name is what the record shows) and waits until it
// runs again (and is healthy when it has a Docker health check), so that replicas restarted one
// after another never all go down.
func (env Env) restartOne(ctx context.Context, consumer, name, id string, opts Options) Restart {
	start := time.Now()
	r := Restart{Consumer: consumer, Container: name, Status: StatusFailed}
	api, err := env.api()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	stop, wait, err := env.stopTimeout(ctx, id, opts)
	if err != nil {
		r.Error = "restart: " + err.Error()
		r.Duration = time.Since(start)
		return r
	}
	// A restart stops the container (at most its stop timeout, then a kill) and starts it.
	limit := wait + env.callTimeout()
	call, cancel := context.WithTimeout(ctx, limit)
	err = api.ContainerRestart(call, id, stop)
	cancel()
	if err != nil {
		r.Error = env.apiError(ctx, "restart", limit, err).Error()
		r.Duration = time.Since(start)
		return r
	}
	if err := env.waitReady(ctx, id); err != nil {
		r.Error = err.Error()
		r.Duration = time.Since(start)
		return r
	}
	r.Status = StatusRestarted
	r.Duration = time.Since(start)
	return r
}

// waitReady polls the container until it runs, and is healthy when it has a health check.
func (env Env) waitReady(ctx context.Context, id string) error {
	timeout := env.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	for {
		info, err := env.inspect(ctx, id)
		if err != nil {
			return err
		}
		state := "unknown"
		if info.State != nil {
			state = info.State.Status
			if info.State.Running && (info.State.Health == nil || info.State.Health.Status == container.Healthy) {
				return nil
			}
			if info.State.Health != nil {
				state = "running, health " + info.State.Health.Status
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready %s after restart (%s)", timeout, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
