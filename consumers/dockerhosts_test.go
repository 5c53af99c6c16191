package consumers

import (
	"strings"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testcerts"
)

func TestParseEndpointForms(t *testing.T) {
	good := map[string][2]string{ // spec: identity, endpoint
		"docker://web1/api":                     {"docker://web1/api", "web1"},
		"docker://web1/api?stop_timeout=5s":     {"docker://web1/api", "web1"},
		"compose://web1/cockpit/worker":         {"compose://web1/cockpit/worker", "web1"},
		"compose://h.b_c-2/p/s?stop_timeout=0s": {"compose://h.b_c-2/p/s", "h.b_c-2"},
		"docker:api":                            {"docker:api", ""},
		"compose:p/s":                           {"compose:p/s", ""},
	}
	for spec, want := range good {
		c, err := Parse(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if c.String() != want[0] || c.Endpoint() != want[1] || EndpointOf(c) != want[1] {
			t.Errorf("%s: String %q Endpoint %q, want %q %q", spec, c.String(), c.Endpoint(), want[0], want[1])
		}
	}
	bad := []string{
		"docker://web1", "docker://web1/", "docker:///api", "docker://-H/api", "docker://--host=x/api",
		"docker://../api", "docker://a..b/api", "docker://.web/api", "docker:/web1/api", "docker://web1/a/b",
		"docker://web1/-x", "docker://web1/..", "compose://web1/p", "compose://web1/p/s/x", "compose://web1//s",
		"docker://web 1/api", "docker://web1:2376/api", "docker://tcp:/x", "docker://" + strings.Repeat("a", 65) + "/api",
		"docker://web1/api?endpoint=web2", "docker://web1/api?stop_timeout=2h",
	}
	for _, spec := range bad {
		if c, err := Parse(spec); err == nil {
			t.Errorf("%q parsed as %q (endpoint %q)", spec, c.String(), c.Endpoint())
		}
	}
	// An endpoint name too long (the role bounds the spec itself to 256 bytes before it is parsed).
	if _, err := Parse("docker://" + strings.Repeat("x", 5000) + "/api"); err == nil || !strings.Contains(err.Error(), "longer than 64") {
		t.Errorf("long endpoint: %v", err)
	}
	// Every byte in an endpoint name: only [A-Za-z0-9_.-] parse.
	for b := 0; b < 256; b++ {
		spec := "docker://w" + string([]byte{byte(b)}) + "1/api"
		_, err := Parse(spec)
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '.' || b == '-'
		if (err == nil) != ok {
			t.Errorf("byte %#x in an endpoint name: err %v", b, err)
		}
	}
}

func TestParseDockerHost(t *testing.T) {
	good := map[string][3]string{ // item: name, canonical URL, loopback
		"web1=tcp://10.0.0.5:2376":             {"web1", "tcp://10.0.0.5:2376", ""},
		"lo=tcp://127.0.0.1:2375":              {"lo", "tcp://127.0.0.1:2375", "y"},
		"v6=tcp://[::1]:2376":                  {"v6", "tcp://[::1]:2376", "y"},
		"m=tcp://[::ffff:127.0.0.1]:2376":      {"m", "tcp://127.0.0.1:2376", "y"},
		"n=tcp://Docker.Internal:2376":         {"n", "tcp://docker.internal:2376", ""},
		"local=unix:///var/run/docker.sock":    {"local", "unix:///var/run/docker.sock", ""},
		"a.b_c-d=unix:///run/user/1000/d.sock": {"a.b_c-d", "unix:///run/user/1000/d.sock", ""},
	}
	for item, want := range good {
		name, u, err := ParseDockerHost(item)
		if err != nil {
			t.Errorf("%s: %v", item, err)
			continue
		}
		if name != want[0] || u.String() != want[1] || u.Loopback != (want[2] == "y") {
			t.Errorf("%s: %q %q loopback %v", item, name, u.String(), u.Loopback)
		}
	}
	bad := []string{
		"", "web1", "=tcp://h:1", "web1=", "-H=tcp://h:1", "--tlsverify=tcp://h:1", "../x=unix:///a",
		"web1=tcp://h", "web1=tcp://h:0", "web1=tcp://h:65536", "web1=tcp://h:+1", "web1=tcp://h:01",
		"web1=tcp://h:1/path", "web1=tcp://u@h:1", "web1=tcp://h:1?x=y", "web1=tcp://h:1#f",
		"web1=tcp://127.1:2376", "web1=tcp://0x7f.1:2376", "web1=tcp://[fe80::1%eth0]:2376", "web1=tcp://h%2e:1",
		"web1=unix://var/run/docker.sock", "web1=unix:///var/../run/docker.sock", "web1=unix:///var//run",
		"web1=unix:///", "web1=unix:///a/", "web1=unix:///a?b", "web1=unix:///" + strings.Repeat("a", 200),
		"web1=http://h:1", "web1=https://h:1", "web1=ssh://h", "web1=npipe:////./pipe/docker_engine",
		"web1=tcp://h :1", "web1=tcp://h\n:1", "web1=unix:///a\x00b", "web1=tcp://hé:1",
		"web1=" + strings.Repeat("tcp://", 100),
	}
	for _, item := range bad {
		if name, u, err := ParseDockerHost(item); err == nil {
			t.Errorf("%q parsed as %q=%q", item, name, u.String())
		}
	}
	// Huge inputs are refused without being echoed.
	for _, item := range []string{strings.Repeat("a", 1<<20), "web1=tcp://" + strings.Repeat("a", 1<<20) + ":1", strings.Repeat("a", 1<<20) + "=tcp://h:1"} {
		_, _, err := ParseDockerHost(item)
		if err == nil || len(err.Error()) > 512 {
			t.Errorf("huge item: error of %d bytes (%v)", len(errString(err)), err == nil)
		}
	}
	// Every byte in the host of a tcp URL and in a socket path.
	for b := 0; b < 256; b++ {
		c := string([]byte{byte(b)})
		_, u, err := ParseDockerHost("w=tcp://a" + c + "b:2376")
		if err == nil && !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.') {
			t.Errorf("byte %#x in a tcp host accepted: %s", b, u)
		}
		_, u, err = ParseDockerHost("w=unix:///run/a" + c + "b.sock")
		if err == nil && (b <= ' ' || b >= 0x7f || strings.ContainsRune("?#%", rune(b))) {
			t.Errorf("byte %#x in a socket path accepted: %s", b, u)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// testPEM makes a CA and, signed by it, a client certificate and key.
func testPEM(t *testing.T) (ca, cert, key string) {
	t.Helper()
	c := testcerts.NewCA(t, "ca")
	cert, key = c.Client(t, "client")
	return c.PEM, cert, key
}

func TestDockerTLSConfig(t *testing.T) {
	ca, cert, key := testPEM(t)
	if cfg, err := (DockerTLS{CA: ca, Cert: cert, Key: key}).Config(); err != nil || len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.InsecureSkipVerify {
		t.Fatalf("good material: %v", err)
	}
	if cfg, err := (DockerTLS{CA: ca}).Config(); err != nil || len(cfg.Certificates) != 0 {
		t.Fatalf("CA only: %v", err)
	}
	_, _, otherKey := testPEM(t)
	corrupt := strings.Replace(key, "\n", "\nAAAA", 2)
	bad := map[string]DockerTLS{
		"ca_pem: required":                {Cert: cert, Key: key},
		"ca_pem: not a list":              {CA: "junk"},
		"ca_pem: holds a \"PRIVATE KEY\"": {CA: key},
		"ca_pem: longer":                  {CA: strings.Repeat("A", MaxPEMLen+1)},
		"key_pem: required":               {CA: ca, Cert: cert},
		"cert_pem: required":              {CA: ca, Key: key},
		"cert_pem: not a PEM":             {CA: ca, Cert: key, Key: key},
		"key_pem: not an unencrypted":     {CA: ca, Cert: cert, Key: otherKey},
		"key_pem: longer":                 {CA: ca, Cert: cert, Key: strings.Repeat("K", MaxPEMLen+1)},
	}
	bad["key_pem: not an unencrypted PEM"] = DockerTLS{CA: ca, Cert: cert, Key: corrupt}
	for want, m := range bad {
		_, err := m.Config()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
			continue
		}
		// No error holds any line of a key.
		for _, k := range []string{key, otherKey, corrupt} {
			for _, line := range strings.Split(k, "\n") {
				if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Errorf("%s: the error quotes the key: %v", want, err)
				}
			}
		}
	}
}
