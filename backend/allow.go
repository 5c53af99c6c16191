package backend

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/go-secure-stdlib/strutil"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/consumers"
)

// The mount's allow-lists bound what a role writer may name as consumers and health targets
// (docs/decisions.md, "Allow-lists"). Globs are Vault's own (strutil.StrListContainsGlob, as
// the database engine's allowed_roles): '*' matches any run of characters, '/' and ':'
// included; nothing else is special.
const (
	maxAllowItems   = 64
	maxAllowItemLen = 256
)

// DefaultHealthTargets is loopback only, any port.
func DefaultHealthTargets() []string { return []string{"127.0.0.0/8", "::1"} }

// validateAllowLists checks both lists: bounds, then each item's form, naming the field and the
// item (1-based).
func (c Config) validateAllowLists() error {
	if err := checkAllowItems("allowed_consumers", c.AllowedConsumers, checkConsumerPattern); err != nil {
		return err
	}
	return checkAllowItems("allowed_health_targets", c.AllowedHealthTargets, func(s string) error {
		_, err := parseHealthTarget(s)
		return err
	})
}

func checkAllowItems(field string, items []string, check func(string) error) error {
	if err := checkList(field, items, maxAllowItems, maxAllowItemLen); err != nil {
		return err
	}
	for i, item := range items {
		if err := check(item); err != nil {
			return fmt.Errorf("%s: item %d: %w", field, i+1, err)
		}
	}
	return nil
}

// checkConsumerPattern accepts "*", KIND:GLOB or KIND://GLOB of a known kind. Options
// (?stop_timeout=) are not part of what is matched, so a pattern holding '?' could never match.
func checkConsumerPattern(p string) error {
	if p == "*" {
		return nil
	}
	if err := printable(p); err != nil {
		return err
	}
	kind, rest, ok := strings.Cut(p, ":")
	switch {
	case !ok || rest == "":
		return fmt.Errorf("%q is not KIND:NAME (a glob such as docker:api-*), nor *", p)
	case strings.HasPrefix(rest, "/") && (!strings.HasPrefix(rest, "//") || rest == "//" || rest[2] == '/'):
		return fmt.Errorf("%q is neither KIND:NAME nor KIND://ENDPOINT/NAME (docker://web1/api-*)", p)
	case strings.Contains(p, "?"):
		return fmt.Errorf("%q: options such as ?stop_timeout are not matched; leave them out", p)
	case !strings.Contains(kind, "*") && !contains(consumers.Prefixes(), kind):
		return fmt.Errorf("%q: %q is not a consumer kind (%s)", p, kind, strings.Join(consumers.Prefixes(), ", "))
	}
	return nil
}

// healthTarget is one parsed allowed_health_targets item: a prefix over IP literals, or a glob
// over host:port.
type healthTarget struct {
	prefix netip.Prefix
	glob   string
}

// parseHealthTarget reads a CIDR, a bare IP address (that address, any port), or a host:port
// glob.
func parseHealthTarget(s string) (healthTarget, error) {
	if err := printable(s); err != nil {
		return healthTarget{}, err
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return healthTarget{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
		}
		if p != p.Masked() {
			return healthTarget{}, fmt.Errorf("%q has bits set past its prefix length (the network is %s)", s, p.Masked())
		}
		return healthTarget{prefix: p}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return healthTarget{}, fmt.Errorf("%q: an address with a zone cannot be allowed", s)
		}
		return healthTarget{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return healthTarget{}, fmt.Errorf("%q is neither a CIDR, an IP address, nor HOST:PORT (a glob such as *.internal:443)", s)
	}
	return healthTarget{glob: strings.ToLower(s)}, nil
}

// printable refuses the empty string and control characters or spaces, which no consumer spec
// or host can hold.
func printable(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q holds a space or a control character", s)
		}
	}
	return nil
}

// allowsEndpoint: a prefix matches an IP literal only (a name's address is DNS's to decide when
// the probe runs, so no name is ever allowed by an address); a glob matches the endpoint's
// host:port text, a name's or an address's.
func (t healthTarget) allowsEndpoint(ep consumers.Endpoint) bool {
	if t.glob != "" {
		return strutil.StrListContainsGlob([]string{t.glob}, ep.String())
	}
	return ep.IsIP() && ep.Addr.Zone() == "" && t.prefix.Contains(ep.Addr)
}

// checkDeploy refuses a role whose consumers or health checks the allow-lists do not name. The
// error names the field and the item, never a secret: consumer specs and health targets are the
// role's public settings.
func (c Config) checkDeploy(role *Role) error {
	cs, err := consumers.ParseAll(role.Consumers)
	if err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	for _, cons := range cs {
		if err := checkEndpoint(c, cons); err != nil {
			return err
		}
		// The identity (kind, endpoint, container or project/service) without options.
		if !allowsConsumer(c.AllowedConsumers, cons) {
			return fmt.Errorf("consumers: %q is not in rotation/config allowed_consumers", cons.String())
		}
	}
	checks, err := consumers.ParseHealthChecks(role.HealthChecks)
	if err != nil {
		return fmt.Errorf("health_checks: %w", err)
	}
	targets := make([]healthTarget, 0, len(c.AllowedHealthTargets))
	for _, s := range c.AllowedHealthTargets {
		if t, err := parseHealthTarget(s); err == nil { // validated when the config was written
			targets = append(targets, t)
		}
	}
	for _, h := range checks {
		if !allowsAny(targets, h.Endpoint()) {
			return fmt.Errorf("health_checks: %q (%s) is not in rotation/config allowed_health_targets", h.String(), h.Endpoint())
		}
	}
	return nil
}

// allowsConsumer matches the consumer's identity against the globs of its own form: a glob
// KIND:NAME allows consumers of the mount's docker_host only, a glob KIND://ENDPOINT/NAME those of
// the named endpoints only, and "*" every consumer. So docker:* written for the one local engine
// does not grow to every engine added to docker_hosts later.
func allowsConsumer(patterns []string, cons consumers.Consumer) bool {
	named := consumers.EndpointOf(cons) != ""
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		_, rest, _ := strings.Cut(p, ":")
		if strings.HasPrefix(rest, "//") != named {
			continue
		}
		if strutil.StrListContainsGlob([]string{p}, cons.String()) {
			return true
		}
	}
	return false
}

func allowsAny(targets []healthTarget, ep consumers.Endpoint) bool {
	for _, t := range targets {
		if t.allowsEndpoint(ep) {
			return true
		}
	}
	return false
}
