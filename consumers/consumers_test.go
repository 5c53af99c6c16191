package consumers

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := map[string]string{
		"docker:cockpit-api":          "docker:cockpit-api",
		"compose:cockpit/worker":      "compose:cockpit/worker",
		"docker:api?stop_timeout=20s": "docker:api",
		"compose:p/s?stop_timeout=0s": "compose:p/s",
		"docker:a.b_c-1":              "docker:a.b_c-1",
	}
	for spec, want := range good {
		c, err := Parse(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if c.String() != want {
			t.Errorf("%s: String() = %q, want %q", spec, c.String(), want)
		}
	}
	c, _ := Parse("docker:api?stop_timeout=20s")
	if st := c.(*dockerContainer).opts.StopTimeout; st == nil || *st != 20*time.Second {
		t.Fatalf("stop_timeout not parsed: %v", st)
	}
	bad := map[string]string{
		"cockpit-api":                "a consumer is",
		"kubernetes:x":               "a consumer is",
		"docker:":                    "a name must follow",
		"docker:-x":                  "not a container name",
		"docker:a/b":                 "not a container name",
		"compose:onlyproject":        "compose:PROJECT/SERVICE",
		"compose:p/":                 "compose:PROJECT/SERVICE",
		"compose:p/s/x":              "compose:PROJECT/SERVICE",
		"docker:a?stop_timeout=soon": "stop_timeout",
		"docker:a?restart=always":    "unknown option",
	}
	for spec, want := range bad {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", spec, err, want)
		}
	}
}

func TestParseHealthCheck(t *testing.T) {
	for _, s := range []string{"http://127.0.0.1:3000/health", "https://localhost/x", "tcp://127.0.0.1:5432"} {
		if _, err := ParseHealthCheck(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"127.0.0.1:3000":            "expected an http",
		"ftp://x/":                  "expected an http",
		"tcp://127.0.0.1":           "tcp://host:port",
		"tcp://127.0.0.1:1/path":    "tcp://host:port",
		"http:///nohost":            "no host",
		"http://user:pw@127.0.0.1/": "credentials",
	} {
		if _, err := ParseHealthCheck(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", s, err, want)
		}
	}
}

func TestRunHealthChecksRetriesUntilHealthy(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	checks, err := ParseHealthChecks([]string{srv.URL + "/health", "tcp://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunHealthChecks(context.Background(), checks, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Status != Healthy || results[0].Attempts != 3 || results[1].Status != Healthy {
		t.Fatalf("results: %+v", results)
	}
}

func TestRunHealthChecksTimesOutNamingTheCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "database refused", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	redirect := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
	defer redirect.Close()
	checks, _ := ParseHealthChecks([]string{srv.URL + "/health", redirect.URL})
	start := time.Now()
	// 3 s: long enough for the first answers on a loaded machine (the error names the last one).
	results, err := RunHealthChecks(context.Background(), checks, 3*time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/health") || !strings.Contains(err.Error(), "HTTP 503") || strings.Contains(err.Error(), "database refused") {
		t.Fatalf("error %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("the timeout is not shared by the checks")
	}
	if results[0].Status != Unhealthy || results[1].Status != Unhealthy || !strings.Contains(results[1].Error, "HTTP 302") {
		t.Fatalf("results: %+v", results)
	}
}

func TestNoDockerEngineConfigured(t *testing.T) {
	c, _ := Parse("docker:x")
	if _, err := c.Inspect(context.Background(), Env{}); err == nil || !strings.Contains(err.Error(), "docker_host") {
		t.Fatalf("error %v", err)
	}
	if err := ValidateDockerHost("not a host"); err == nil {
		t.Fatal("accepted a bad docker host")
	}
	if err := ValidateDockerHost("unix:///var/run/docker.sock"); err != nil {
		t.Fatal(err)
	}
}
