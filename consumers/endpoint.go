package consumers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Endpoint is where a health check connects: the host and port the mount's
// allowed_health_targets are matched against.
type Endpoint struct {
	// Host is a DNS name in lower case, or an IP address in canonical form (IPv4-mapped IPv6
	// addresses unmapped).
	Host string
	// Addr is the address when Host is an IP literal; invalid for a name.
	Addr netip.Addr
	Port uint16
}

// IsIP reports whether the endpoint is an IP literal (else a name that DNS resolves).
func (e Endpoint) IsIP() bool { return e.Addr.IsValid() }

// String is host:port ("[::1]:443" for IPv6): what an allowed_health_targets glob matches.
func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port))) }

// hostLabelRe is one label of a DNS name as a URL may carry it (underscore allowed, as resolvers do).
var hostLabelRe = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)

// numericLabelRe is a label that makes a name look like a number ("127.1", "0x7f.1"): the C
// resolver reads such names as IPv4 addresses, so they are refused rather than matched as names.
var numericLabelRe = regexp.MustCompile(`^(0x[0-9a-f]*|[0-9]+)$`)

// endpointOf reads a parsed check's host and port; the port defaults by scheme.
func endpointOf(u *url.URL) (Endpoint, error) {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Endpoint{}, errors.New("the port must be 1-65535")
	}
	host := strings.ToLower(u.Hostname())
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		return Endpoint{Host: addr.String(), Addr: addr, Port: uint16(n)}, nil
	}
	if err := checkHostName(host); err != nil {
		return Endpoint{}, err
	}
	return Endpoint{Host: host, Port: uint16(n)}, nil
}

// checkHostName accepts a DNS name without a trailing dot whose last label is not a number.
func checkHostName(host string) error {
	labels := strings.Split(host, ".")
	if len(host) > 253 {
		return errors.New("the host name is longer than 253 bytes")
	}
	for _, l := range labels {
		if !hostLabelRe.MatchString(l) {
			return errors.New("the host is neither an IP address nor a DNS name")
		}
	}
	if numericLabelRe.MatchString(labels[len(labels)-1]) {
		return errors.New("the host is neither an IP address nor a DNS name (it ends in a number)")
	}
	return nil
}

// errOtherAddress is a probe's connection to an address other than its check's.
var errOtherAddress = errors.New("refused to connect to an address other than the check's own")

// allowDial is the guard on every connection a probe opens: the allow-list decided on the
// check's host and port, and this makes sure that what is dialled is that endpoint, whatever
// net/http or a parser difference make of the URL. For an IP literal the address actually
// connected to must be that address; a name resolves by DNS and only its port is checked here.
func (e Endpoint) allowDial(address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil || port != strconv.Itoa(int(e.Port)) {
		return errOtherAddress
	}
	if !e.IsIP() {
		return nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Unmap().WithZone("") != e.Addr.WithZone("") {
		return errOtherAddress
	}
	return nil
}

// dialer connects only to the endpoint: its host and port as asked of the dialer, and the
// address net.Dialer connects to (after DNS, for a name) through Control.
func (e Endpoint) dialer() func(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{Timeout: probeTimeout, Control: func(_, address string, _ syscall.RawConn) error {
		return e.allowDial(address)
	}}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if !e.sameHostPort(address) {
			return nil, errOtherAddress
		}
		return d.DialContext(ctx, network, address)
	}
}

// sameHostPort compares an address as net/http writes it (the URL's host, not canonical) with
// the endpoint.
func (e Endpoint) sameHostPort(address string) bool {
	host, port, err := net.SplitHostPort(address)
	if err != nil || port != strconv.Itoa(int(e.Port)) {
		return false
	}
	host = strings.ToLower(host)
	if addr, err := netip.ParseAddr(host); err == nil {
		return e.IsIP() && addr.Unmap() == e.Addr
	}
	return !e.IsIP() && host == e.Host
}

// probeTimeout bounds one probe attempt.
const probeTimeout = 5 * time.Second

// httpClient is a check's client for its attempts: no proxy (the allow-list names what a probe
// connects to, not what a proxy would), connections only to the endpoint, no redirects (a 3xx is
// not a 2xx).
func (e Endpoint) httpClient() *http.Client {
	return &http.Client{
		Timeout: probeTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         e.dialer(),
			TLSHandshakeTimeout: probeTimeout,
			MaxIdleConns:        1,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
