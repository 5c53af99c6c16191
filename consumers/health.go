package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/httperr"
)

// HealthCheck is one http(s):// or tcp:// target that must answer after the consumers restart.
type HealthCheck struct {
	raw string
	url *url.URL
	ep  Endpoint
}

// Endpoint is the host and port the check connects to, and the only one its probes may reach.
func (h HealthCheck) Endpoint() Endpoint { return h.ep }

// HealthResult is how one health check went.
type HealthResult struct {
	Target   string        `json:"target"`
	Duration time.Duration `json:"duration"`
	Attempts int           `json:"attempts"`
	Status   string        `json:"status"` // "healthy" or "unhealthy"
	Error    string        `json:"error,omitempty"`
}

// Health statuses.
const (
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
)

// healthInterval is the pause between attempts of one check.
const healthInterval = 250 * time.Millisecond

// ParseHealthCheck accepts http://, https:// (2xx expected) and tcp://host:port (connect). Its
// errors quote the target without its user info, which may be a credential.
func ParseHealthCheck(s string) (HealthCheck, error) {
	u, err := url.Parse(s)
	if err != nil {
		return HealthCheck{}, fmt.Errorf("%q: expected an http://, https:// or tcp:// target", withoutUserInfo(s))
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return HealthCheck{}, fmt.Errorf("%q: no host", withoutUserInfo(s))
		}
	case "tcp":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" {
			return HealthCheck{}, fmt.Errorf("%q: expected tcp://host:port", withoutUserInfo(s))
		}
	default:
		return HealthCheck{}, fmt.Errorf("%q: expected an http://, https:// or tcp:// target", withoutUserInfo(s))
	}
	if u.User != nil {
		return HealthCheck{}, fmt.Errorf("%q: credentials do not belong in a health check URL", withoutUserInfo(s))
	}
	ep, err := endpointOf(u)
	if err != nil {
		return HealthCheck{}, fmt.Errorf("%q: %w", s, err)
	}
	return HealthCheck{raw: s, url: u, ep: ep}, nil
}

// withoutUserInfo replaces what stands between "://" and the authority's last "@" with "***",
// by plain string cuts, so that it holds for a target url.Parse refuses too.
func withoutUserInfo(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return s
	}
	return scheme + "://***" + rest[at:]
}

// ParseHealthChecks parses every target, in order.
func ParseHealthChecks(specs []string) ([]HealthCheck, error) {
	out := make([]HealthCheck, 0, len(specs))
	for _, s := range specs {
		h, err := ParseHealthCheck(s)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func (h HealthCheck) String() string { return h.raw }

// MaxProbesInFlight is how many health probes one engine (mount) runs at once, over all its
// rotations.
const MaxProbesInFlight = 32

// ProbeLimiter bounds the health probes in flight. One is shared by every deployment of an
// engine; a nil *ProbeLimiter bounds nothing.
type ProbeLimiter struct{ slots chan struct{} }

// NewProbeLimiter lets n probes run at once.
func NewProbeLimiter(n int) *ProbeLimiter { return &ProbeLimiter{slots: make(chan struct{}, n)} }

// Size is how many probes may run at once.
func (l *ProbeLimiter) Size() int { return cap(l.slots) }

// acquire waits for a slot until ctx ends: the wait counts against the check's timeout.
func (l *ProbeLimiter) acquire(ctx context.Context) error {
	if l == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errors.New("no probe slot free (too many health probes in flight)")
	}
}

func (l *ProbeLimiter) release() {
	if l != nil {
		<-l.slots
	}
}

// RunHealthChecks runs every check, at the same time, until it passes or the timeout elapses;
// it returns the results in order and an error naming the first check that did not pass. Each
// attempt holds one of lim's slots while it runs.
func RunHealthChecks(ctx context.Context, checks []HealthCheck, timeout time.Duration, lim *ProbeLimiter) ([]HealthResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make([]HealthResult, len(checks))
	var wg sync.WaitGroup
	for i, h := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.run(ctx, timeout, lim)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Status != Healthy {
			return results, fmt.Errorf("health check %s: %s", checks[i], r.Error)
		}
	}
	return results, nil
}

func (h HealthCheck) run(ctx context.Context, timeout time.Duration, lim *ProbeLimiter) HealthResult {
	start := time.Now()
	r := HealthResult{Target: h.raw, Status: Unhealthy}
	var client *http.Client
	if h.url.Scheme != "tcp" {
		client = h.ep.httpClient()
		defer client.CloseIdleConnections()
	}
	for {
		if err := lim.acquire(ctx); err != nil {
			if r.Error == "" {
				r.Error = err.Error()
			}
			r.Error = fmt.Sprintf("not healthy after %s: %s", timeout, r.Error)
			r.Duration = time.Since(start)
			return r
		}
		r.Attempts++
		err := h.probe(ctx, client)
		lim.release()
		if err == nil {
			r.Status = Healthy
			r.Error = ""
			r.Duration = time.Since(start)
			return r
		}
		r.Error = err.Error()
		select {
		case <-ctx.Done():
			r.Error = fmt.Sprintf("not healthy after %s: %s", timeout, r.Error)
			r.Duration = time.Since(start)
			return r
		case <-time.After(healthInterval):
		}
	}
}

// probe is one attempt, through the check's own client for http(s). Its error says what failed
// (HTTP status, connection refused, timeout, ...) and never holds any part of the answer's body,
// which is the target's to fill.
func (h HealthCheck) probe(ctx context.Context, client *http.Client) error {
	if h.url.Scheme == "tcp" {
		conn, err := h.ep.dialer()(ctx, "tcp", h.url.Host)
		if err != nil {
			return probeError(err)
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.raw, nil)
	if err != nil {
		return errors.New("not a valid URL")
	}
	resp, err := client.Do(req)
	if err != nil {
		return probeError(err)
	}
	defer resp.Body.Close()
	// Drained (bounded) for the connection's reuse, never read into the error.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// probeError names what failed without the URL net/http quotes (the check's own error already
// names the target).
func probeError(err error) error { return httperr.Cause(err) }
