package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/client"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
)

// The mount's Docker engines: docker_host (consumers written docker:NAME, compose:P/S) and the
// named endpoints of docker_hosts (docker://ENDPOINT/NAME, compose://ENDPOINT/P/S), with the TLS
// material of the tcp ones in docker_tls (docs/decisions.md, "Docker endpoints").

// SetDockerHosts replaces the named endpoints with items NAME=URL, each URL in its canonical
// form. TLS material of endpoints no longer listed is dropped; the rest is kept.
func (c *Config) SetDockerHosts(items []string) error {
	if len(items) > consumers.MaxDockerHosts {
		return userError(fmt.Errorf("docker_hosts: more than %d endpoints", consumers.MaxDockerHosts))
	}
	hosts := make(map[string]string, len(items))
	for i, item := range items {
		name, u, err := consumers.ParseDockerHost(item)
		if err != nil {
			return userError(fmt.Errorf("docker_hosts: item %d: %w", i+1, err))
		}
		if _, dup := hosts[name]; dup {
			return userError(fmt.Errorf("docker_hosts: item %d: %q is named twice", i+1, name))
		}
		hosts[name] = u.String()
	}
	c.DockerHosts = hosts
	for name := range c.DockerTLS {
		if _, ok := hosts[name]; !ok {
			delete(c.DockerTLS, name)
		}
	}
	return nil
}

// SetDockerTLS replaces the TLS material of every endpoint (checked with the rest in Validate).
func (c *Config) SetDockerTLS(m map[string]consumers.DockerTLS) error {
	if len(m) > consumers.MaxDockerHosts {
		return userError(fmt.Errorf("docker_tls: more than %d endpoints", consumers.MaxDockerHosts))
	}
	c.DockerTLS = maps.Clone(m)
	return nil
}

// DockerHostItems is docker_hosts as written: NAME=URL, sorted by name.
func (c Config) DockerHostItems() []string {
	out := make([]string, 0, len(c.DockerHosts))
	for name, u := range c.DockerHosts {
		out = append(out, name+"="+u)
	}
	sort.Strings(out)
	return out
}

// ShownDockerTLS is what a config read shows of docker_tls: the CA and client certificates
// (public), and "(set)" for each key, never the key.
func (c Config) ShownDockerTLS() map[string]map[string]string {
	out := make(map[string]map[string]string, len(c.DockerTLS))
	for name, t := range c.DockerTLS {
		shown := map[string]string{"ca_pem": t.CA, "cert_pem": t.Cert, "key_pem": ""}
		if t.Key != "" {
			shown["key_pem"] = "(set)"
		}
		out[name] = shown
	}
	return out
}

// validateDockerHosts checks the endpoints and their TLS material: bounds, canonical URLs, TLS
// exactly where it belongs. A tcp endpoint needs TLS unless it is a loopback address: an engine
// that listens on the network without TLS is root on its host for anyone who reaches it.
func (c Config) validateDockerHosts() error {
	if len(c.DockerHosts) > consumers.MaxDockerHosts {
		return fmt.Errorf("docker_hosts: more than %d endpoints", consumers.MaxDockerHosts)
	}
	if len(c.DockerTLS) > consumers.MaxDockerHosts {
		return fmt.Errorf("docker_tls: more than %d endpoints", consumers.MaxDockerHosts)
	}
	for _, name := range sortedKeys(c.DockerTLS) {
		if _, ok := c.DockerHosts[name]; !ok {
			if len(name) > consumers.MaxDockerEndpointName {
				return errors.New("docker_tls: names an endpoint that is not in docker_hosts")
			}
			return fmt.Errorf("docker_tls: %q is not in docker_hosts", name)
		}
	}
	for _, name := range sortedKeys(c.DockerHosts) {
		if err := consumers.ValidateEndpointName(name); err != nil {
			return fmt.Errorf("docker_hosts: %w", err)
		}
		u, err := consumers.ParseDockerURL(c.DockerHosts[name])
		if err != nil {
			return fmt.Errorf("docker_hosts: %s: %w", name, err)
		}
		if u.String() != c.DockerHosts[name] {
			return fmt.Errorf("docker_hosts: %s: %q is not canonical (%s)", name, c.DockerHosts[name], u)
		}
		_, hasTLS := c.DockerTLS[name]
		switch {
		case u.Scheme == "unix" && hasTLS:
			return fmt.Errorf("docker_tls: %s: a unix socket takes no TLS", name)
		case u.Scheme == "tcp" && !hasTLS && !u.Loopback:
			return fmt.Errorf("docker_tls: %s: required for %s (an engine reachable over the network without TLS is root on its host for anyone who reaches it)", name, u)
		}
		if hasTLS {
			if _, err := c.DockerTLS[name].Config(); err != nil {
				return fmt.Errorf("docker_tls: %s: %w", name, err)
			}
		}
	}
	// Each field is bounded; the sum as stored is too (JSON escapes), so that the config entry
	// stays inside the storage budget whatever the fields hold.
	if b, err := json.Marshal(c.DockerTLS); err != nil || len(b) > maxDockerTLSStored {
		return fmt.Errorf("docker_tls: more than %d KiB as stored", maxDockerTLSStored>>10)
	}
	return nil
}

// maxDockerTLSStored bounds docker_tls as stored: 16 endpoints of a CA, a certificate and a
// key take about 100 KiB.
const maxDockerTLSStored = 256 << 10

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// endpointSpec is what a client of one engine is made from; a client is reused while its
// endpoint's spec is unchanged.
type endpointSpec struct {
	url string
	tls consumers.DockerTLS
}

// endpointSpec is the engine of endpoint name ("" = docker_host) in c.
func (c Config) endpointSpec(name string) (endpointSpec, bool) {
	if name == "" {
		return endpointSpec{url: c.DockerHost}, true
	}
	u, ok := c.DockerHosts[name]
	if !ok {
		return endpointSpec{}, false
	}
	return endpointSpec{url: u, tls: c.DockerTLS[name]}, true
}

// dockerClients keeps one Docker client per engine of the mount, made when a rotation first
// needs it, closed when the config changes that engine's address or TLS material or removes it
// (SetConfig, and Invalidate when another node wrote the config), and in Close.
type dockerClients struct {
	mu      sync.Mutex
	clients map[string]*endpointClient // by endpoint name; "" = docker_host
}

type endpointClient struct {
	spec endpointSpec
	cli  *client.Client
}

// env is the consumers' environment for endpoint name under c: its client, or why there is
// none. A rotation keeps the client it got: closing it (a config change) only closes its idle
// connections, so a call in flight finishes on the settings it started with.
func (d *dockerClients) env(name string, c Config) consumers.Env {
	spec, ok := c.endpointSpec(name)
	if !ok {
		return consumers.Env{DockerHost: name, Err: fmt.Errorf("endpoint %q is not in rotation/config docker_hosts", name)}
	}
	shown := spec.url
	if name != "" {
		shown = name + " (" + spec.url + ")"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ec := d.clients[name]; ec != nil {
		if ec.spec == spec {
			return consumers.Env{Docker: ec.cli, DockerHost: shown}
		}
		_ = ec.cli.Close()
		delete(d.clients, name)
	}
	cli, err := newEndpointClient(name, spec)
	if err != nil {
		return consumers.Env{DockerHost: shown, Err: err}
	}
	if d.clients == nil {
		d.clients = map[string]*endpointClient{}
	}
	d.clients[name] = &endpointClient{spec: spec, cli: cli}
	return consumers.Env{Docker: cli, DockerHost: shown}
}

func newEndpointClient(name string, spec endpointSpec) (*client.Client, error) {
	if name == "" {
		return consumers.NewDockerClient(spec.url)
	}
	u, err := consumers.ParseDockerURL(spec.url)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", name, err)
	}
	if spec.tls.CA == "" {
		return consumers.NewEndpointClient(u, nil)
	}
	cfg, err := spec.tls.Config()
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: docker_tls: %w", name, err)
	}
	return consumers.NewEndpointClient(u, cfg)
}

// prune closes the clients whose engine c no longer has, or has with another address or TLS
// material.
func (d *dockerClients) prune(c Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, ec := range d.clients {
		if spec, ok := c.endpointSpec(name); !ok || spec != ec.spec {
			_ = ec.cli.Close()
			delete(d.clients, name)
		}
	}
}

// open lists the endpoints whose client is cached ("" = docker_host; tests).
func (d *dockerClients) open() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedKeys(d.clients)
}

func (d *dockerClients) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, ec := range d.clients {
		_ = ec.cli.Close()
		delete(d.clients, name)
	}
}

// checkEndpoint refuses a consumer that names an endpoint c does not have.
func checkEndpoint(c Config, cons consumers.Consumer) error {
	name := consumers.EndpointOf(cons)
	if name == "" {
		return nil
	}
	if _, ok := c.DockerHosts[name]; !ok {
		return fmt.Errorf("consumers: %q: endpoint %q is not in rotation/config docker_hosts (%s)", cons.String(), name, strings.Join(sortedKeys(c.DockerHosts), ", "))
	}
	return nil
}
