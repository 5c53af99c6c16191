package consumers

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/client"
)

// Named Docker engines (rotation/config docker_hosts): a consumer written docker://ENDPOINT/NAME
// or compose://ENDPOINT/PROJECT/SERVICE is restarted through the engine named ENDPOINT; the
// forms without an endpoint use the mount's docker_host.

// Bounds of docker_hosts and docker_tls (docs/decisions.md, "Every input is bounded").
const (
	MaxDockerHosts          = 16
	MaxDockerEndpointName   = 64
	MaxDockerEndpointURLLen = 256
	// MaxPEMLen bounds each of ca_pem, cert_pem and key_pem: a CA bundle of a few certificates,
	// an RSA-4096 key (about 3.3 KiB) with room to spare.
	MaxPEMLen = 8 << 10
)

// endpointNameRe is the rule of role names, shorter.
var endpointNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidateEndpointName checks a docker_hosts name: a letter or digit, then letters, digits, '_',
// '.' and '-', at most 64 bytes. The error never quotes a name that is too long.
func ValidateEndpointName(name string) error {
	switch {
	case name == "":
		return errors.New("an endpoint name is empty")
	case len(name) > MaxDockerEndpointName:
		return fmt.Errorf("an endpoint name is longer than %d bytes", MaxDockerEndpointName)
	case !endpointNameRe.MatchString(name) || strings.Contains(name, ".."):
		return fmt.Errorf("%q is not an endpoint name (a letter or digit, then letters, digits, _ . -)", name)
	}
	return nil
}

// DockerURL is a parsed docker_hosts address.
type DockerURL struct {
	// Scheme is "unix" or "tcp".
	Scheme string
	// Path is the socket of a unix URL; Host the host:port of a tcp URL.
	Path, Host string
	// Loopback: a tcp URL whose host is a loopback IP literal.
	Loopback bool
}

// String is the canonical URL: unix:///PATH or tcp://HOST:PORT.
func (u DockerURL) String() string {
	if u.Scheme == "unix" {
		return "unix://" + u.Path
	}
	return "tcp://" + u.Host
}

// ParseDockerURL reads unix:///ABSOLUTE/PATH (clean: no "..", no "//", no trailing '/') or
// tcp://HOST:PORT (an IP literal or a DNS name, a port 1-65535, nothing else: no user, path,
// query or fragment). The error quotes the URL only when it is short.
func ParseDockerURL(raw string) (DockerURL, error) {
	if len(raw) > MaxDockerEndpointURLLen {
		return DockerURL{}, fmt.Errorf("an address is longer than %d bytes", MaxDockerEndpointURLLen)
	}
	bad := func(why string) (DockerURL, error) {
		return DockerURL{}, fmt.Errorf("%q is not unix:///PATH nor tcp://HOST:PORT: %s", raw, why)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] >= 0x7f {
			return bad("it holds a space, a control character or a non-ASCII byte")
		}
	}
	switch {
	case strings.HasPrefix(raw, "unix://"):
		p := strings.TrimPrefix(raw, "unix://")
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "?#%") {
			return bad("the socket must be an absolute, clean path")
		}
		if len(p) > 107 {
			return bad("a socket path is at most 107 bytes")
		}
		return DockerURL{Scheme: "unix", Path: p}, nil
	case strings.HasPrefix(raw, "tcp://"):
		hp := strings.TrimPrefix(raw, "tcp://")
		if strings.ContainsAny(hp, "/?#@%") {
			return bad("only HOST:PORT may follow tcp://")
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return bad("a port is required")
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port != strconv.FormatUint(n, 10) {
			return bad("the port must be 1-65535")
		}
		u := DockerURL{Scheme: "tcp"}
		if addr, err := netip.ParseAddr(host); err == nil {
			if addr.Zone() != "" {
				return bad("an address with a zone is not accepted")
			}
			addr = addr.Unmap()
			u.Host, u.Loopback = net.JoinHostPort(addr.String(), port), addr.IsLoopback()
			return u, nil
		}
		host = strings.ToLower(host)
		if err := checkHostName(host); err != nil {
			return bad(err.Error())
		}
		u.Host = net.JoinHostPort(host, port)
		return u, nil
	default:
		return bad("the scheme must be unix or tcp")
	}
}

// ParseDockerHost reads one docker_hosts item, NAME=URL.
func ParseDockerHost(item string) (string, DockerURL, error) {
	name, raw, ok := strings.Cut(item, "=")
	if !ok {
		if len(item) > MaxDockerEndpointName+MaxDockerEndpointURLLen {
			return "", DockerURL{}, errors.New("not NAME=URL")
		}
		return "", DockerURL{}, fmt.Errorf("%q is not NAME=URL (web1=tcp://10.0.0.5:2376, local=unix:///var/run/docker.sock)", item)
	}
	if err := ValidateEndpointName(name); err != nil {
		return "", DockerURL{}, err
	}
	u, err := ParseDockerURL(raw)
	if err != nil {
		return "", DockerURL{}, fmt.Errorf("%s: %w", name, err)
	}
	return name, u, nil
}

// DockerTLS is the TLS material of one endpoint, as PEM: the CA that signed the engine's
// certificate (required: the engine is always verified), and the client certificate and key the
// engine asks for with --tlsverify (both or neither). Key is write-only: it never leaves the
// engine (config reads show "(set)"), and no error quotes it.
type DockerTLS struct {
	CA   string `json:"ca_pem"`
	Cert string `json:"cert_pem,omitempty"`
	Key  string `json:"key_pem,omitempty"`
}

// Config checks the material and builds the client's TLS configuration: TLS 1.2 or later, the
// engine verified against CA only (never the system roots), the client certificate when given.
// Errors name the part (ca_pem, cert_pem, key_pem) and never hold the key or its parse error.
func (t DockerTLS) Config() (*tls.Config, error) {
	for _, f := range []struct{ name, v string }{{"ca_pem", t.CA}, {"cert_pem", t.Cert}, {"key_pem", t.Key}} {
		if len(f.v) > MaxPEMLen {
			return nil, fmt.Errorf("%s: longer than %d bytes", f.name, MaxPEMLen)
		}
		for i := 0; i < len(f.v); i++ {
			if b := f.v[i]; (b < ' ' || b > '~') && b != '\n' && b != '\r' && b != '\t' {
				return nil, fmt.Errorf("%s: holds a byte PEM does not (only printable ASCII and line breaks)", f.name)
			}
		}
	}
	if t.CA == "" {
		return nil, errors.New("ca_pem: required (the CA that signed the engine's certificate)")
	}
	pool := x509.NewCertPool()
	rest := []byte(t.CA)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca_pem: holds a %q block; only CERTIFICATE blocks are accepted", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_pem: certificate %d does not parse: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("ca_pem: not a list of PEM CERTIFICATE blocks")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	switch {
	case t.Cert == "" && t.Key == "":
		return cfg, nil
	case t.Cert == "":
		return nil, errors.New("cert_pem: required with key_pem")
	case t.Key == "":
		return nil, errors.New("key_pem: required with cert_pem")
	}
	if b, _ := pem.Decode([]byte(t.Cert)); b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("cert_pem: not a PEM CERTIFICATE")
	}
	pair, err := tls.X509KeyPair([]byte(t.Cert), []byte(t.Key))
	if err != nil {
		// The parse error of a key might describe its bytes: it is not passed on.
		return nil, errors.New("key_pem: not an unencrypted PEM private key matching cert_pem")
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// Bounds of a connection to an engine: an address that drops packets fails the call after
// dockerDialTimeout, an engine that takes the connection and stalls the handshake after
// dockerTLSHandshakeTimeout; the call's own bound (CallTimeout) caps both.
const (
	dockerDialTimeout = 10 * time.Second
	// dockerTLSHandshakeTimeout is short: the client's API version negotiation tries the
	// handshake twice (HEAD, then GET /_ping) before the call itself, so an engine that
	// stalls the handshake fails a call after 10 s. (The client reports a timeout as
	// "cannot connect", without the cause.)
	dockerTLSHandshakeTimeout = 5 * time.Second
)

// NewEndpointClient returns a client of the Engine API at u (API version negotiated), over TLS
// when tlsCfg is set; it does not connect until used. It uses no proxy from the environment:
// the address is the operator's, and nothing in between should see the calls.
func NewEndpointClient(u DockerURL, tlsCfg *tls.Config) (*client.Client, error) {
	tr := &http.Transport{MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: dockerTLSHandshakeTimeout}
	hc := &http.Client{Transport: tr, CheckRedirect: client.CheckRedirect}
	c, err := client.NewClientWithOpts(client.WithHTTPClient(hc), client.WithHost(u.String()), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", u, err)
	}
	// WithHost set the proxy from the environment and a 32 s dialer for tcp.
	tr.Proxy = nil
	if u.Scheme == "tcp" {
		tr.DialContext = (&net.Dialer{Timeout: dockerDialTimeout}).DialContext
	}
	return c, nil
}

// EndpointOf is the endpoint a consumer names ("" for the mount's docker_host).
func EndpointOf(c Consumer) string {
	if e, ok := c.(interface{ Endpoint() string }); ok {
		return e.Endpoint()
	}
	return ""
}

// identity is a consumer's spec without options: PREFIX:TARGET, or PREFIX://ENDPOINT/TARGET.
func identity(prefix, endpoint, target string) string {
	if endpoint == "" {
		return prefix + ":" + target
	}
	return prefix + "://" + endpoint + "/" + target
}

// tlsFailure reports whether err is a failed TLS handshake with the engine, and says which side
// refused.
func tlsFailure(err error) (string, bool) {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	var recHdr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr):
		return "the engine's certificate does not verify against ca_pem", true
	case errors.As(err, &recHdr):
		return "the engine does not speak TLS at this address", true
	case strings.Contains(err.Error(), "remote error: tls:"):
		return "the engine refused the client certificate (missing, or not signed by a CA it trusts)", true
	}
	return "", false
}
