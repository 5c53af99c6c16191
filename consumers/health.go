package consumers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// HealthCheck is one http(s):// or tcp:// target that must answer after the consumers restart.
type HealthCheck struct {
	raw string
	url *url.URL
}

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

// ParseHealthCheck accepts http://, https:// (2xx expected) and tcp://host:port (connect).
func ParseHealthCheck(s string) (HealthCheck, error) {
	u, err := url.Parse(s)
	if err != nil {
		return HealthCheck{}, fmt.Errorf("%q: expected an http://, https:// or tcp:// target", s)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return HealthCheck{}, fmt.Errorf("%q: no host", s)
		}
	case "tcp":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" {
			return HealthCheck{}, fmt.Errorf("%q: expected tcp://host:port", s)
		}
	default:
		return HealthCheck{}, fmt.Errorf("%q: expected an http://, https:// or tcp:// target", s)
	}
	if u.User != nil {
		return HealthCheck{}, fmt.Errorf("%q: credentials do not belong in a health check URL", s)
	}
	return HealthCheck{raw: s, url: u}, nil
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

// RunHealthChecks runs every check, at the same time, until it passes or the timeout elapses;
// it returns the results in order and an error naming the first check that did not pass.
func RunHealthChecks(ctx context.Context, checks []HealthCheck, timeout time.Duration) ([]HealthResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make([]HealthResult, len(checks))
	var wg sync.WaitGroup
	for i, h := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.run(ctx, timeout)
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

func (h HealthCheck) run(ctx context.Context, timeout time.Duration) HealthResult {
	start := time.Now()
	r := HealthResult{Target: h.raw, Status: Unhealthy}
	for {
		r.Attempts++
		err := h.probe(ctx)
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

var healthClient = &http.Client{
	Timeout: 5 * time.Second,
	// A redirect is an answer: 3xx is not 2xx, so do not follow it.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (h HealthCheck) probe(ctx context.Context) error {
	if h.url.Scheme == "tcp" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", h.url.Host)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.raw, nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
