// Package consumers restarts the services that use a secret and checks that they come back
// healthy. It knows nothing of rotators or storage: the rotation protocol in package backend
// calls it in its deploy step. A new kind of consumer is one file that registers itself.
package consumers

import (
	"context"
	"fmt"
	"github.com/docker/docker/api/types/container"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Consumer is one service that uses a secret, e.g. "docker:cockpit-api".
type Consumer interface {
	// String is the consumer's identity, its spec without options: PREFIX:TARGET for the mount's
	// docker_host, PREFIX://ENDPOINT/TARGET for a named endpoint. Allow-list globs match it.
	String() string
	// Endpoint is the docker_hosts name the consumer is restarted through ("" = docker_host).
	Endpoint() string
	// Restart restarts the consumer (each of its containers, one at a time) and waits until each
	// is running again, and healthy where it has its own health check.
	Restart(ctx context.Context, env Env) ([]Restart, error)
	// Inspect returns the consumer's containers as the engine describes them: the proof, before
	// the target is touched, that the consumer exists, and what it was started with.
	Inspect(ctx context.Context, env Env) ([]container.InspectResponse, error)
}

// Env is what consumers may use: the Docker Engine API of the consumer's engine (the mount's
// docker_host, or the docker_hosts endpoint it names).
type Env struct {
	Docker DockerAPI
	// DockerHost names the engine in errors: its address, or "NAME (ADDRESS)" for an endpoint.
	DockerHost string
	// Err, when set, is why there is no engine for this consumer (an endpoint not configured):
	// every call fails with it.
	Err error
	// ReadyTimeout bounds the wait for one restarted container to run (and be healthy) again.
	ReadyTimeout time.Duration
	// CallTimeout bounds one inspect or list call, and is what a restart may take beyond its
	// stop timeout; zero: DefaultCallTimeout.
	CallTimeout time.Duration
}

// Bounds of the Docker Engine API calls, so that an engine that takes the connection and never
// answers fails the rotation's step instead of holding it (docs/decisions.md, "Every call to
// another system is bounded").
const (
	DefaultCallTimeout = 30 * time.Second
	// DefaultStopTimeout is Docker's own, for a container that sets none.
	DefaultStopTimeout = 10 * time.Second
	// MaxStopTimeout bounds stop_timeout, and a container's own stop timeout: a container that
	// would wait longer (or for ever) is killed after it.
	MaxStopTimeout = time.Hour
)

func (env Env) callTimeout() time.Duration {
	if env.CallTimeout > 0 {
		return env.CallTimeout
	}
	return DefaultCallTimeout
}

// Restart is the result of restarting one container.
type Restart struct {
	Consumer  string        `json:"consumer"`
	Container string        `json:"container"`
	Duration  time.Duration `json:"duration"`
	Status    string        `json:"status"` // "restarted" or "failed"
	Error     string        `json:"error,omitempty"`
}

// Restart statuses.
const (
	StatusRestarted = "restarted"
	StatusFailed    = "failed"
)

// Kind builds a consumer from the part of a spec after "PREFIX:".
type Kind func(target string, opts Options) (Consumer, error)

// Options are the spec's endpoint and ?key=value settings common to every kind.
type Options struct {
	// Endpoint is the docker_hosts name of PREFIX://ENDPOINT/TARGET ("" = the mount's docker_host).
	Endpoint string
	// StopTimeout overrides the container's own stop timeout (nil: the container's setting).
	StopTimeout *time.Duration
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Kind{}
)

// Register makes a consumer kind available under its spec prefix; each kind calls it from init.
func Register(prefix string, k Kind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[prefix]; dup {
		panic(fmt.Sprintf("consumers: kind %q registered twice", prefix))
	}
	kinds[prefix] = k
}

// Prefixes returns the registered spec prefixes, sorted.
func Prefixes() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for p := range kinds {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Parse builds a consumer from a spec "PREFIX:TARGET[?stop_timeout=DURATION]" (through the
// mount's docker_host) or "PREFIX://ENDPOINT/TARGET[?...]" (through the docker_hosts endpoint
// ENDPOINT; whether it is configured is the engine's to check).
func Parse(spec string) (Consumer, error) {
	prefix, rest, ok := strings.Cut(spec, ":")
	kindsMu.RLock()
	kind, known := kinds[prefix]
	kindsMu.RUnlock()
	if !ok || !known {
		return nil, fmt.Errorf("%q: a consumer is %s:NAME", spec, strings.Join(Prefixes(), ":NAME or "))
	}
	target, query, _ := strings.Cut(rest, "?")
	var opts Options
	if strings.HasPrefix(target, "/") {
		ep, name, ok := strings.Cut(strings.TrimPrefix(target, "//"), "/")
		if !strings.HasPrefix(target, "//") || !ok {
			return nil, fmt.Errorf("%q: a consumer on a named engine is %s://ENDPOINT/NAME", spec, prefix)
		}
		if err := ValidateEndpointName(ep); err != nil {
			return nil, fmt.Errorf("%q: %w", spec, err)
		}
		opts.Endpoint, target = ep, name
	}
	if target == "" {
		return nil, fmt.Errorf("%q: a name must follow %q", spec, identity(prefix, opts.Endpoint, ""))
	}
	if query != "" {
		values, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", spec, err)
		}
		for key := range values {
			if key != "stop_timeout" {
				return nil, fmt.Errorf("%q: unknown option %q (known: stop_timeout)", spec, key)
			}
		}
		if v := values.Get("stop_timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > MaxStopTimeout {
				return nil, fmt.Errorf("%q: stop_timeout must be a duration such as 10s, at most 1h", spec)
			}
			opts.StopTimeout = &d
		}
	}
	return kind(target, opts)
}

// ParseAll parses every spec, in order.
func ParseAll(specs []string) ([]Consumer, error) {
	out := make([]Consumer, 0, len(specs))
	for _, s := range specs {
		c, err := Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
