package consumers

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse: an accepted consumer spec names a known kind and a target, its stop_timeout is
// within 0–1h, and its canonical form parses back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"docker:api", "docker:api?stop_timeout=30s", "compose:cockpit/web", "compose:p/s?stop_timeout=1h",
		"docker:", "docker:-oProxyCommand=x", "docker:--", "compose:/s", "compose:p/", "compose:p/s/t", "docker:a?x=1",
		"docker:a?stop_timeout=-1s", "docker:a?stop_timeout=1h0m1s", "docker:a?stop_timeout=9223372036854775807ns",
		"docker:a?stop_timeout=1s&stop_timeout=2s", "docker:a?%zz", "compose:p\n/s", "compose:p/s\x00", "ssh:x", ":x",
		"docker:a?stop_timeout=1e3s", "compose:-p/--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := Parse(spec)
		if err != nil {
			return
		}
		prefix, _, _ := strings.Cut(spec, ":")
		if !strings.HasPrefix(c.String(), prefix+":") || strings.ContainsAny(c.String(), "?\x00\n") {
			t.Fatalf("%q: accepted as %q", spec, c.String())
		}
		again, err := Parse(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("%q: canonical form %q parses to %v, %v", spec, c.String(), again, err)
		}
		if opts := optionsOf(c); opts.StopTimeout != nil && (*opts.StopTimeout < 0 || *opts.StopTimeout > MaxStopTimeout) {
			t.Fatalf("%q: stop_timeout %v", spec, *opts.StopTimeout)
		}
		for _, r := range c.String() {
			if r <= ' ' || r == 0x7f || r > 0x7e {
				t.Fatalf("%q: accepted a name holding %q", spec, r)
			}
		}
	})
}

func optionsOf(c Consumer) Options {
	switch c := c.(type) {
	case *dockerContainer:
		return c.opts
	case *composeService:
		return c.opts
	}
	return Options{}
}

// FuzzParseHealthCheck: an accepted target is http(s) with a host or tcp://host:port, holds no
// credentials, and is probed as given; an error never quotes a URL's user info.
func FuzzParseHealthCheck(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080/health", "https://api.internal/healthz?x=1", "tcp://127.0.0.1:5432",
		"tcp://[::1]:22", "tcp://host", "tcp://host:", "tcp://host:1/path", "http://", "http:///path", "ftp://x",
		"http://user:hunter2pass@host/", "http://tok3nsecret@host/", "http://u:hunter2pass@host:badport/", "-oProxyCommand=x",
		"--", "http://host/\n", "http://host\x00/", "http://[::1", "unix:///var/run/docker.sock", "http://%zz@h/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHealthCheck(s)
		if err != nil {
			// The error starts with the target as %q renders it: never with its user info.
			if n := userInfoEnd(s); n > 0 && strings.HasPrefix(err.Error(), strings.TrimSuffix(strconv.Quote(s[:n]), `"`)) {
				t.Fatalf("%q: the error quotes the user info: %v", s, err)
			}
			return
		}
		if h.String() != s || h.url.User != nil {
			t.Fatalf("%q: accepted as %q (user %v)", s, h.String(), h.url.User)
		}
		switch h.url.Scheme {
		case "http", "https":
			if h.url.Host == "" {
				t.Fatalf("%q: accepted without a host", s)
			}
		case "tcp":
			if _, port, err := net.SplitHostPort(h.url.Host); err != nil || port == "" {
				t.Fatalf("%q: accepted without host:port", s)
			}
		default:
			t.Fatalf("%q: accepted scheme %q", s, h.url.Scheme)
		}
	})
}

// userInfoEnd is the length of "SCHEME://USERINFO@" at the start of s, or 0 when there is no
// user info, whether or not s parses.
func userInfoEnd(s string) int {
	i := strings.Index(s, "://")
	if i < 0 {
		return 0
	}
	authority := s[i+3:]
	if j := strings.IndexAny(authority, "/?#"); j >= 0 {
		authority = authority[:j]
	}
	at := strings.LastIndexByte(authority, '@')
	if at <= 0 {
		return 0 // none, or empty
	}
	return i + 3 + at + 1
}
