package backend

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
)

// DefaultHealthTimeout bounds the health checks after a deploy when the role does not say.
const DefaultHealthTimeout = 30 * time.Second

// deployment is what the deploy step does for a role: restart its consumers in the listed
// order, then run its health checks.
type deployment struct {
	consumers []consumers.Consumer
	checks    []consumers.HealthCheck
	env       consumers.Env
	timeout   time.Duration
}

func (d *deployment) empty() bool { return d == nil || len(d.consumers)+len(d.checks) == 0 }

// check proves that every consumer exists.
func (d *deployment) check(ctx context.Context) error {
	if d.empty() {
		return nil
	}
	for _, c := range d.consumers {
		if err := c.Check(ctx, d.env); err != nil {
			return fmt.Errorf("consumer %w", err)
		}
	}
	return nil
}

// newDeployment parses the role's consumers and health checks (validated at write).
func (e *Engine) newDeployment(role *Role) (*deployment, error) {
	cs, err := consumers.ParseAll(role.Consumers)
	if err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	checks, err := consumers.ParseHealthChecks(role.HealthChecks)
	if err != nil {
		return nil, fmt.Errorf("health_checks: %w", err)
	}
	d := &deployment{consumers: cs, checks: checks, timeout: role.HealthTimeoutOrDefault()}
	if len(cs) > 0 {
		host := e.Config().DockerHost
		api, err := e.docker.get(host)
		if err != nil {
			return nil, err
		}
		d.env = consumers.Env{Docker: api, DockerHost: host, ReadyTimeout: d.timeout}
	}
	return d, nil
}

// runDeploy restarts the consumers one after another, then runs the health checks; every result
// lands in the outcome under phase.
func (e *Engine) runDeploy(ctx context.Context, r *run, phase string) error {
	d := r.deploy
	for i, c := range d.consumers {
		restarts, err := c.Restart(ctx, d.env)
		for _, rs := range restarts {
			r.out.Consumers = append(r.out.Consumers, ConsumerResult{Phase: phase, Restart: rs})
		}
		if err != nil {
			return fmt.Errorf("consumer %w", err)
		}
		if i == 0 && phase == StepDeploy {
			failpoint.Inject(failpoint.AfterFirstRestart)
		}
	}
	results, err := consumers.RunHealthChecks(ctx, d.checks, d.timeout, e.probes)
	for _, h := range results {
		r.out.Health = append(r.out.Health, HealthResult{Phase: phase, HealthResult: h})
	}
	return err
}

// dockerClients keeps one Docker client per docker_host.
type dockerClients struct {
	mu   sync.Mutex
	host string
	cli  *client.Client
}

func (d *dockerClients) get(host string) (consumers.DockerAPI, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cli != nil && d.host == host {
		return d.cli, nil
	}
	if d.cli != nil {
		_ = d.cli.Close()
		d.cli = nil
	}
	cli, err := consumers.NewDockerClient(host)
	if err != nil {
		return nil, err
	}
	d.host, d.cli = host, cli
	return cli, nil
}

func (d *dockerClients) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cli != nil {
		_ = d.cli.Close()
		d.cli = nil
	}
}
