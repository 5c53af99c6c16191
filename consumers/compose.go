package consumers

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

func init() { Register("compose", newComposeService) }

// Labels Docker Compose puts on the containers of a service.
const (
	labelProject         = "com.docker.compose.project"
	labelService         = "com.docker.compose.service"
	labelContainerNumber = "com.docker.compose.container-number"
)

// composeService is "compose:PROJECT/SERVICE": every container of a Compose service, restarted
// one at a time (what `docker compose restart SERVICE` does, without the compose CLI).
type composeService struct {
	project, service string
	opts             Options
}

var _ Consumer = (*composeService)(nil)

// Compose's own rules for project and service names: a name it would never create matches no
// container, so it is refused when the role is written rather than at the first rotation.
var (
	composeProjectRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	composeServiceRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
)

func newComposeService(target string, opts Options) (Consumer, error) {
	project, service, ok := strings.Cut(target, "/")
	if !ok || !composeProjectRe.MatchString(project) || !composeServiceRe.MatchString(service) {
		return nil, fmt.Errorf("%s: expected compose:PROJECT/SERVICE or compose://ENDPOINT/PROJECT/SERVICE", identity("compose", opts.Endpoint, target))
	}
	return &composeService{project: project, service: service, opts: opts}, nil
}

func (c *composeService) String() string {
	return identity("compose", c.opts.Endpoint, c.project+"/"+c.service)
}

func (c *composeService) Endpoint() string { return c.opts.Endpoint }

// containers lists the service's containers in replica order.
func (c *composeService) containers(ctx context.Context, env Env) ([]container.Summary, error) {
	api, err := env.api()
	if err != nil {
		return nil, err
	}
	call, cancel := context.WithTimeout(ctx, env.callTimeout())
	defer cancel()
	list, err := api.ContainerList(call, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", labelProject+"="+c.project),
		filters.Arg("label", labelService+"="+c.service),
	)})
	if err != nil {
		return nil, env.apiError(ctx, "list containers", env.callTimeout(), err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("no container labelled %s=%s and %s=%s", labelProject, c.project, labelService, c.service)
	}
	sort.Slice(list, func(i, j int) bool {
		ni, _ := strconv.Atoi(list[i].Labels[labelContainerNumber])
		nj, _ := strconv.Atoi(list[j].Labels[labelContainerNumber])
		if ni != nj {
			return ni < nj
		}
		return containerName(list[i]) < containerName(list[j])
	})
	return list, nil
}

func (c *composeService) Inspect(ctx context.Context, env Env) ([]container.InspectResponse, error) {
	list, err := c.containers(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	out := make([]container.InspectResponse, 0, len(list))
	for _, ctr := range list {
		info, err := env.inspect(ctx, ctr.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		out = append(out, info)
	}
	return out, nil
}

func (c *composeService) Restart(ctx context.Context, env Env) ([]Restart, error) {
	list, err := c.containers(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	var out []Restart
	for _, ctr := range list {
		r := env.restartOne(ctx, c.String(), containerName(ctr), ctr.ID, c.opts)
		out = append(out, r)
		if r.Error != "" {
			return out, fmt.Errorf("%s: container %s: %s", c, r.Container, r.Error)
		}
	}
	return out, nil
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID
}
