package backend

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
)

// Config is the mount's settings (config path).
type Config struct {
	// MaxParallel bounds the scheduled rotations that run at once.
	MaxParallel int `json:"max_parallel"`
	// HistoryLimit bounds the history kept per role.
	HistoryLimit int `json:"history_limit"`
	// RetryBase and RetryMax bound the exponential backoff of failed scheduled rotations.
	RetryBase time.Duration `json:"retry_base"`
	RetryMax  time.Duration `json:"retry_max"`
	// MaxFailures consecutive failures park a role as failing.
	MaxFailures int `json:"max_failures"`
	// DockerHost is the Docker Engine API that docker: and compose: consumers are restarted through.
	DockerHost string `json:"docker_host"`
	// DockerHosts are the named engines (NAME: canonical unix:///PATH or tcp://HOST:PORT) that
	// docker://NAME/... and compose://NAME/... consumers are restarted through.
	DockerHosts map[string]string `json:"docker_hosts,omitempty"`
	// DockerTLS is the TLS material of the tcp endpoints of DockerHosts, by name. Its keys are
	// write-only: only ShownDockerTLS leaves the engine.
	DockerTLS map[string]consumers.DockerTLS `json:"docker_tls,omitempty"`
	// NotifyURL receives a JSON document for every rotation outcome, parking and due reminder.
	// It is write-only: often a bearer-style URL, so only ShownNotifyURL leaves the engine.
	NotifyURL string `json:"notify_url,omitempty"`
	// AllowedConsumers are globs over the consumer specs a role may list (empty: none).
	// AllowedHealthTargets are CIDRs, addresses and host:port globs a health check may reach
	// (default: loopback). Both are stored even when empty: an absent list reads as its default.
	AllowedConsumers     []string `json:"allowed_consumers"`
	AllowedHealthTargets []string `json:"allowed_health_targets"`
}

// ShownNotifyURL is what a config read shows of notify_url: its scheme and host followed by
// " (set)", never its path, query or user info; empty when unset.
func (c Config) ShownNotifyURL() string {
	if c.NotifyURL == "" {
		return ""
	}
	return urlOrigin(c.NotifyURL) + " (set)"
}

// urlOrigin is scheme://host[:port] of a URL, the only part of notify_url that may be shown or
// logged.
func urlOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// DefaultDockerHost is the local engine's socket.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// Bounds of the mount's settings (docs/decisions.md, "Every input is bounded").
const (
	MaxRetry         = 24 * time.Hour // retry_base and retry_max
	MaxMaxFailures   = 1000
	maxDockerHostLen = 1024
	maxNotifyURLLen  = 2048
)

// DefaultConfig is what a new mount uses.
func DefaultConfig() Config {
	return Config{MaxParallel: 4, HistoryLimit: 100, RetryBase: 10 * time.Second, RetryMax: 5 * time.Minute, MaxFailures: 5, DockerHost: DefaultDockerHost,
		AllowedConsumers: []string{}, AllowedHealthTargets: DefaultHealthTargets()}
}

// Validate checks the settings together.
func (c Config) Validate() error {
	switch {
	case c.MaxParallel < 1 || c.MaxParallel > 256:
		return fmt.Errorf("max_parallel: must be between 1 and 256")
	case c.HistoryLimit < 1 || c.HistoryLimit > 10000:
		return fmt.Errorf("history_limit: must be between 1 and 10000")
	case c.RetryBase <= 0:
		return fmt.Errorf("retry_base: must be positive")
	case c.RetryBase > MaxRetry:
		return fmt.Errorf("retry_base: must be at most 24h")
	case c.RetryMax < c.RetryBase:
		return fmt.Errorf("retry_max: must be at least retry_base")
	case c.RetryMax > MaxRetry:
		return fmt.Errorf("retry_max: must be at most 24h")
	case c.MaxFailures < 1 || c.MaxFailures > MaxMaxFailures:
		return fmt.Errorf("max_failures: must be between 1 and %d", MaxMaxFailures)
	case len(c.NotifyURL) > maxNotifyURLLen:
		return fmt.Errorf("notify_url: longer than %d bytes", maxNotifyURLLen)
	case len(c.DockerHost) > maxDockerHostLen:
		return fmt.Errorf("docker_host: longer than %d bytes", maxDockerHostLen)
	}
	if c.NotifyURL != "" {
		if u, err := url.Parse(c.NotifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL itself is never echoed: its path or query is often the credential.
			return fmt.Errorf("notify_url: not an http(s) URL with a host")
		}
	}
	if err := consumers.ValidateDockerHost(c.DockerHost); err != nil {
		return fmt.Errorf("docker_host: %q is not a Docker host such as unix:///var/run/docker.sock or tcp://127.0.0.1:2375", c.DockerHost)
	}
	if err := c.validateDockerHosts(); err != nil {
		return err
	}
	return c.validateAllowLists()
}

// Config returns the mount's current settings.
func (e *Engine) Config() Config {
	e.cfgMu.RLock()
	defer e.cfgMu.RUnlock()
	return e.cfg.clone()
}

// clone copies the lists, so that a caller's changes never reach the engine's settings.
func (c Config) clone() Config {
	c.AllowedConsumers = slices.Clone(c.AllowedConsumers)
	c.AllowedHealthTargets = slices.Clone(c.AllowedHealthTargets)
	c.DockerHosts = maps.Clone(c.DockerHosts)
	c.DockerTLS = maps.Clone(c.DockerTLS)
	return c
}

// SetConfig validates, stores and applies new settings.
func (e *Engine) SetConfig(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return userError(err)
	}
	// An empty list is stored as [], never null, so it is not read back as its default.
	if c.AllowedConsumers == nil {
		c.AllowedConsumers = []string{}
	}
	if c.AllowedHealthTargets == nil {
		c.AllowedHealthTargets = []string{}
	}
	if err := putJSON(ctx, e.storage, configPath, c); err != nil {
		return err
	}
	e.cfgMu.Lock()
	e.cfg = c.clone()
	e.cfgMu.Unlock()
	e.docker.prune(c)
	e.workers.resize(c.MaxParallel)
	return nil
}

func (e *Engine) loadConfig(ctx context.Context) error {
	c := DefaultConfig()
	if _, err := getJSON(ctx, e.storage, configPath, &c); err != nil {
		return err
	}
	e.cfgMu.Lock()
	e.cfg = c
	e.cfgMu.Unlock()
	e.docker.prune(c)
	return nil
}
