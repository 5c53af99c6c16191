package consumers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A check's endpoint is what the allow-list is matched against: canonical, with the scheme's
// default port, and never something a resolver could read as another address.
func TestHealthCheckEndpoint(t *testing.T) {
	for spec, want := range map[string]string{
		"http://127.0.0.1/health":           "127.0.0.1:80",
		"https://Svc.Internal/health":       "svc.internal:443",
		"tcp://10.1.2.3:8080":               "10.1.2.3:8080",
		"http://[::1]:3000/":                "[::1]:3000",
		"http://[::ffff:127.0.0.1]:3000/":   "127.0.0.1:3000",
		"http://[0:0:0:0:0:0:0:1]:81/x":     "[::1]:81",
		"https://api_v2.example.com:8443/x": "api_v2.example.com:8443",
	} {
		h, err := ParseHealthCheck(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if got := h.Endpoint().String(); got != want {
			t.Errorf("%s: endpoint %s, want %s", spec, got, want)
		}
	}
	for _, spec := range []string{
		"http://127.1/",                // the C resolver reads it as 127.0.0.1
		"http://2130706433/",           // and this too
		"http://0x7f.0x1/",             // and this
		"http://a.internal./",          // trailing dot: a name the globs would not match as written
		"http://a..internal/",          // empty label
		"http://evil.com%2f.internal/", // an escaped slash in the host
		"http://a*b.internal/",         // glob characters in a name
		"http://127.0.0.1:0/",          // port 0
		"tcp://127.0.0.1:65536",        // beyond the port range
		"http://-a.internal/",          // a label may not start with '-'
	} {
		if h, err := ParseHealthCheck(spec); err == nil {
			t.Errorf("%s accepted as %s", spec, h.Endpoint())
		}
	}
}

// A probe connects to its check's endpoint and nowhere else, whatever address it is asked to
// dial (a proxy setting or a parser difference would ask for another).
func TestProbeDialsOnlyItsEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	h, err := ParseHealthCheck(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	dial := h.Endpoint().dialer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, other := range []string{"127.0.0.2:" + port, "localhost:" + port, "127.0.0.1:1", "[::1]:" + port} {
		if c, err := dial(ctx, "tcp", other); !errors.Is(err, errOtherAddress) {
			if c != nil {
				c.Close()
			}
			t.Errorf("dial %s: %v, want refused", other, err)
		}
	}
	c, err := dial(ctx, "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("own endpoint: %v", err)
	}
	c.Close()
	// The address connected to is checked too, after the dialer's own resolution.
	if err := h.Endpoint().allowDial("127.0.0.2:" + port); !errors.Is(err, errOtherAddress) {
		t.Fatalf("Control passes another address: %v", err)
	}
}

// A probe goes straight to its endpoint even when the environment names an HTTP proxy.
func TestProbeIgnoresProxyEnvironment(t *testing.T) {
	proxied := make(chan struct{}, 1)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		proxied <- struct{}{}
		w.WriteHeader(http.StatusOK)
	}))
	defer proxy.Close()
	// A name is never proxied by net/http when it is a loopback IP, so the check uses a name
	// that only the (refused) proxy could reach.
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	checks, err := ParseHealthChecks([]string{"http://unresolvable.invalid:81/health"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunHealthChecks(context.Background(), checks, 300*time.Millisecond, nil)
	if err == nil {
		t.Fatalf("healthy through the proxy: %+v", results)
	}
	select {
	case <-proxied:
		t.Fatal("the probe went through the proxy")
	default:
	}
	if strings.Contains(results[0].Error, "HTTP 200") {
		t.Fatalf("result %+v", results[0])
	}
}
