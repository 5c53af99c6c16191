package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"

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
	envs      []consumers.Env // envs[i] is consumers[i]'s engine
	timeout   time.Duration
	// inspected[i] are consumers[i]'s containers as check found them (prepare).
	inspected [][]container.InspectResponse
}

func (d *deployment) empty() bool { return d == nil || len(d.consumers)+len(d.checks) == 0 }

// check proves that every consumer exists, and keeps what its containers were started with.
func (d *deployment) check(ctx context.Context) error {
	if d.empty() {
		return nil
	}
	d.inspected = make([][]container.InspectResponse, len(d.consumers))
	for i, c := range d.consumers {
		infos, err := c.Inspect(ctx, d.envs[i])
		if err != nil {
			return fmt.Errorf("consumer %w", err)
		}
		d.inspected[i] = infos
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
	cfg := e.Config()
	for _, c := range cs {
		// An engine that cannot be had (an endpoint since removed from docker_hosts) is an
		// error of that consumer's check or restart, not of the binding: recovery must still
		// be able to resolve a record at the target.
		env := e.docker.env(consumers.EndpointOf(c), cfg)
		env.ReadyTimeout = d.timeout
		d.envs = append(d.envs, env)
	}
	return d, nil
}

// runDeploy restarts the consumers one after another, then runs the health checks; every result
// lands in the outcome under phase.
func (e *Engine) runDeploy(ctx context.Context, r *run, phase string) error {
	d := r.deploy
	for i, c := range d.consumers {
		restarts, err := c.Restart(ctx, d.envs[i])
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
