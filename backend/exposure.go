package backend

import (
	"context"
	"fmt"
	"sort"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// Finding a secret written into a container's definition (README "Finding forgotten services"):
// such a container cannot pick up a new value by restarting.

// maxExposureContainers bounds the containers one exposure read inspects per engine.
const maxExposureContainers = 500

// needlesOf are the private parts of the given versions, tagged with their version numbers.
func needlesOf(versions ...Version) *consumers.Needles {
	n := &consumers.Needles{}
	for _, v := range versions {
		for part, value := range v.Secret {
			if rotators.IsPrivatePart(part) {
				n.Add(value, v.Number)
			}
		}
	}
	return n
}

// refuseHardcoded fails prepare when a consumer holds the current value in its environment,
// command or labels (as check inspected it): restarting it would start it with the value the
// rotation kills.
func (e *Engine) refuseHardcoded(ctx context.Context, r *run) error {
	cur := r.state.Current()
	if r.deploy.empty() || cur == nil {
		return nil
	}
	needles := needlesOf(*cur)
	for i, c := range r.deploy.consumers {
		if i >= len(r.deploy.inspected) {
			break // check did not run (no consumers)
		}
		if found := consumers.Exposed(c, r.deploy.inspected[i], needles); len(found) > 0 {
			f := found[0]
			return fmt.Errorf("consumer %s: container %q holds the current value in its %s, so restarting it cannot give it a new one; refused before the target was touched (make it read the secret from Vault, e.g. rotation/creds, or a file)", c, f.Container, f.Where)
		}
	}
	return nil
}

// Exposure is where the role's current and kept values appear in the definitions of containers
// on the role's Docker engines (docker_host and the endpoints its consumers name), listed as
// consumers or not.
type Exposure struct {
	Findings  []consumers.Finding
	Consumer  map[string]bool // container names the role restarts, by endpoint/name
	Truncated []string        // engines with more containers than were inspected
	Errors    []string        // engines that could not be asked
}

// Exposure inspects the containers of the role's engines for its values.
func (e *Engine) Exposure(ctx context.Context, name string) (*Exposure, error) {
	role, st, err := e.loadRoleAndState(ctx, name)
	if err != nil {
		return nil, err
	}
	out := &Exposure{Consumer: map[string]bool{}}
	needles := needlesOf(st.Versions...)
	if needles.Empty() {
		return out, nil
	}
	d, err := e.newDeployment(role)
	if err != nil {
		return nil, err
	}
	endpoints := map[string]bool{"": true}
	for i, c := range d.consumers {
		endpoints[c.Endpoint()] = true
		if infos, err := c.Inspect(ctx, d.envs[i]); err == nil {
			for _, info := range infos {
				out.Consumer[c.Endpoint()+"/"+trimSlash(info.Name)] = true
			}
		}
	}
	names := make([]string, 0, len(endpoints))
	for ep := range endpoints {
		names = append(names, ep)
	}
	sort.Strings(names)
	cfg := e.Config()
	for _, ep := range names {
		found, truncated, err := consumers.ScanEngine(ctx, e.docker.env(ep, cfg), ep, needles, maxExposureContainers)
		label := ep
		if label == "" {
			label = "docker_host"
		}
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %s", label, err))
			continue
		}
		if truncated {
			out.Truncated = append(out.Truncated, label)
		}
		out.Findings = append(out.Findings, found...)
	}
	return out, nil
}

func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}
