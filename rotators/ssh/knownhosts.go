package ssh

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// normalizeKnownHosts turns the host_keys field into known_hosts lines. The field is a Vault
// comma-separated list, so a line whose host part lists several names ("a,b ssh-ed25519 ...")
// arrives split at its commas, and a whole file (host_keys=@known_hosts) arrives as one element
// with newlines. Fragments are glued back with commas until they parse as a line.
func normalizeKnownHosts(list []string) ([]string, error) {
	var fragments []string
	for _, el := range list {
		for _, l := range strings.Split(el, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			fragments = append(fragments, l)
		}
	}
	var lines []string
	for i := 0; i < len(fragments); i++ {
		cur := fragments[i]
		for !parsesAsKnownHost(cur) && i+1 < len(fragments) && !strings.ContainsAny(cur, " \t") {
			// Only a host-pattern fragment (no whitespace yet) continues on the next element.
			i++
			cur += "," + fragments[i]
		}
		if !parsesAsKnownHost(cur) {
			if n := len(lines); n > 0 && parsesAsKnownHost(lines[n-1]+","+cur) {
				// A comma inside the previous line's comment.
				lines[n-1] += "," + cur
				continue
			}
			return nil, fmt.Errorf("%s: %q is not a known_hosts line (HOST KEYTYPE BASE64, as ssh-keyscan prints)", FieldHostKeys, shorten(cur))
		}
		lines = append(lines, cur)
	}
	return lines, nil
}

func parsesAsKnownHost(line string) bool {
	_, hosts, _, _, _, err := gossh.ParseKnownHosts([]byte(line + "\n"))
	return err == nil && len(hosts) > 0
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// hostKeyChecker checks host keys against known_hosts lines.
type hostKeyChecker struct {
	callback gossh.HostKeyCallback
	// authorities is true when a line is @cert-authority: hosts may then have no plain line.
	authorities bool
}

// newHostKeyChecker builds the callback of golang.org/x/crypto/ssh/knownhosts (hashed hosts,
// patterns, [host]:port, @revoked, @cert-authority) from the lines. knownhosts reads files only,
// so the lines go through a temporary file that is removed at once; they are public keys.
func newHostKeyChecker(lines []string) (hostKeyChecker, error) {
	f, err := os.CreateTemp("", "vault-plugin-rotation-known-hosts-")
	if err != nil {
		return hostKeyChecker{}, fmt.Errorf("temporary known_hosts file: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(strings.Join(lines, "\n") + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return hostKeyChecker{}, fmt.Errorf("temporary known_hosts file: %w", werr)
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		// Drop the temporary file name from the parser's message.
		return hostKeyChecker{}, errors.New(strings.ReplaceAll(err.Error(), f.Name()+":", "line "))
	}
	c := hostKeyChecker{callback: cb}
	for _, l := range lines {
		if strings.HasPrefix(l, "@cert-authority") {
			c.authorities = true
		}
	}
	return c, nil
}

// wanted returns the plain host keys known for addr (host:port).
func (c hostKeyChecker) wanted(addr string) []gossh.PublicKey {
	if c.callback == nil {
		return nil
	}
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tcp = &net.TCPAddr{IP: net.IPv4zero}
	}
	// Asking with a key no line can hold makes the callback list the keys it knows for addr.
	err = c.callback(addr, tcp, probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	keys := make([]gossh.PublicKey, 0, len(ke.Want))
	for _, k := range ke.Want {
		keys = append(keys, k.Key)
	}
	return keys
}

// knows reports whether the lines can check addr's key.
func (c hostKeyChecker) knows(addr string) bool {
	return c.authorities || len(c.wanted(addr)) > 0
}

// algorithms returns the host key algorithms to offer for addr: those of its known keys, so that
// a server with several host keys shows the one host_keys holds (nil = the library default).
func (c hostKeyChecker) algorithms(addr string) []string {
	if c.authorities {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range c.wanted(addr) {
		if k.Type() == gossh.KeyAlgoRSA {
			add(gossh.KeyAlgoRSASHA512)
			add(gossh.KeyAlgoRSASHA256)
		}
		add(k.Type())
	}
	return algos
}

// probeKey is a fixed ed25519 public key (all zero bytes) used only to list known keys.
var probeKey = func() gossh.PublicKey {
	k, err := gossh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()
