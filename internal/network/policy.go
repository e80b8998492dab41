// Package network holds what an environment's network is allowed to do:
// the per-function egress policy, its evaluation, and the nftables ruleset
// that enforces it in the environment's network namespace.
package network

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// Policy is a function's egress policy, Hearth's own setting beside
// Lambda's configuration. It follows E2B's sandbox network rules:
// Enabled is allowInternetAccess (false: no outbound connection at all),
// Allow and Deny are allowOut and denyOut (CIDRs; Hearth adds ports and a
// protocol per rule and has no domain names, which only an L7 proxy can
// enforce). One difference: here an explicit Deny wins over an Allow, so
// that a hole can be cut in an allowed range; E2B lets allowOut win, to
// allow a few hosts after denying 0.0.0.0/0.
//
// A destination is judged in this order, the first match deciding:
//  1. DNS (port 53) to the servers the environment is given: allowed.
//  2. Deny: refused.
//  3. The host itself (every host address, loopback), the other guests and
//     link-local (169.254.0.0/16, fe80::/10, where cloud metadata lives):
//     always refused. No rule can allow them: a function must not reach
//     the daemon's API, another tenant's guest or the host's credentials.
//  4. Allow: allowed, private ranges included (a test host or a database
//     on the LAN).
//  5. AllowPrivate: the private ranges (10/8, 172.16/12, 192.168/16,
//     100.64/10, fc00::/7) are allowed.
//  6. Private ranges, multicast and other reserved addresses: refused;
//     anything else (the public internet): allowed.
type Policy struct {
	Enabled      bool   `json:"Enabled"`
	Allow        []Rule `json:"Allow,omitempty"`
	Deny         []Rule `json:"Deny,omitempty"`
	AllowPrivate bool   `json:"AllowPrivate"`
}

// Rule matches destinations: a CIDR (or a single address), optionally
// some ports ("443", "8000-8100") and a protocol ("tcp", "udp", or ""
// for both; without ports, "" matches every protocol, ICMP included).
type Rule struct {
	Cidr     string   `json:"Cidr"`
	Ports    []string `json:"Ports,omitempty"`
	Protocol string   `json:"Protocol,omitempty"`
}

// DefaultPolicy is the policy of a function that has none: outbound
// connections to the public internet, nothing private.
func DefaultPolicy() Policy { return Policy{Enabled: true} }

// Limits keep a ruleset small enough to load fast.
const (
	maxRules = 256
	maxPorts = 32
)

// Reasons a connection is refused; each has its counter in the ruleset
// (named "denied_" + reason) and a label in /metrics.
const (
	ReasonPolicy    = "policy"     // an explicit Deny
	ReasonDisabled  = "disabled"   // the policy is off
	ReasonHost      = "host"       // the host itself
	ReasonGuest     = "guest"      // another guest
	ReasonLinkLocal = "link_local" // link-local and metadata addresses
	ReasonPrivate   = "private"    // private or reserved, not allowed
)

// Reasons lists every reason, in the order of the ruleset's counters.
var reasons = []string{ReasonPolicy, ReasonDisabled, ReasonHost, ReasonGuest, ReasonLinkLocal, ReasonPrivate}

// Reasons returns every reason a connection may be refused for.
func Reasons() []string { return slices.Clone(reasons) }

// DeniedCounter counts refused connections; the daemon's metrics implement
// it, the network mechanism feeds it from the ruleset's counters.
type DeniedCounter interface {
	EgressDenied(function, reason string, n uint64)
}

var (
	linkLocal = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")}
	loopback  = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	private   = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fc00::/7")}
	// reserved are never public: "this network", multicast, the old class
	// E and broadcast, and their IPv6 counterparts. An Allow may open them.
	reserved = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("::/128"), netip.MustParsePrefix("ff00::/8")}
)

// Validate checks a policy as the API receives it, with Lambda's
// InvalidParameterValueException naming the field at fault.
func (p Policy) Validate() error {
	for _, list := range []struct {
		name  string
		rules []Rule
	}{{"Allow", p.Allow}, {"Deny", p.Deny}} {
		if len(list.rules) > maxRules {
			return lambdaerr.InvalidParameter("%s has %d rules; at most %d are allowed", list.name, len(list.rules), maxRules)
		}
		for i, r := range list.rules {
			if err := r.validate(); err != nil {
				return lambdaerr.InvalidParameter("%s[%d]: %s", list.name, i, err)
			}
		}
	}
	return nil
}

func (r Rule) validate() error {
	if _, err := parseCIDR(r.Cidr); err != nil {
		return err
	}
	switch r.Protocol {
	case "", "tcp", "udp":
	default:
		return fmt.Errorf("Protocol %q must be \"tcp\", \"udp\" or empty (both)", r.Protocol)
	}
	if len(r.Ports) > maxPorts {
		return fmt.Errorf("%d Ports; at most %d are allowed per rule", len(r.Ports), maxPorts)
	}
	for _, s := range r.Ports {
		if _, _, err := parsePorts(s); err != nil {
			return err
		}
	}
	return nil
}

// parseCIDR reads a CIDR or a single address (a /32 or /128). A prefix
// with host bits set is refused rather than silently widened.
func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("Cidr is empty: give a CIDR such as 10.0.0.0/8 or an address")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("Cidr %q is not a CIDR (e.g. 10.0.0.0/8) or an address", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("Cidr %q is not a CIDR (e.g. 10.0.0.0/8) or an address", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("Cidr %q is an IPv4-mapped IPv6 prefix: write it as IPv4", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("Cidr %q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// parsePorts reads "80" or "8000-8100".
func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	l, err1 := strconv.ParseUint(a, 10, 16)
	h, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || l == 0 || h == 0 {
		return 0, 0, fmt.Errorf("port %q must be a port (1-65535) or a range such as 8000-8100", s)
	}
	if l > h {
		return 0, 0, fmt.Errorf("port range %q ends before it starts", s)
	}
	return uint16(l), uint16(h), nil
}

// matches says whether r covers dst over proto ("tcp", "udp", or
// another such as "icmp", which has no ports). r is valid.
func (r Rule) matches(dst netip.AddrPort, proto string) bool {
	p, err := parseCIDR(r.Cidr)
	if err != nil || !p.Contains(dst.Addr()) {
		return false
	}
	if r.Protocol != "" && r.Protocol != proto {
		return false
	}
	if len(r.Ports) == 0 {
		return true
	}
	if proto != "tcp" && proto != "udp" {
		return false
	}
	for _, s := range r.Ports {
		lo, hi, err := parsePorts(s)
		if err == nil && dst.Port() >= lo && dst.Port() <= hi {
			return true
		}
	}
	return false
}

// Allows says whether the guest may open a connection to dst over proto
// ("tcp", "udp", "icmp"), as the ruleset of Ruleset(p, a) decides.
func (p Policy) Allows(a Addrs, dst netip.AddrPort, proto string) bool {
	_, ok := p.decide(a, dst, proto)
	return ok
}

// decide is Allows with the reason for a refusal.
func (p Policy) decide(a Addrs, dst netip.AddrPort, proto string) (string, bool) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	addr := dst.Addr()
	if !p.Enabled {
		return ReasonDisabled, false
	}
	if dst.Port() == 53 && (proto == "tcp" || proto == "udp") && slices.Contains(a.DNS, addr) {
		return "", true
	}
	for _, r := range p.Deny {
		if r.matches(dst, proto) {
			return ReasonPolicy, false
		}
	}
	if r, denied := alwaysDenied(a, addr); denied {
		return r, false
	}
	for _, r := range p.Allow {
		if r.matches(dst, proto) {
			return "", true
		}
	}
	if p.AllowPrivate && containedIn(private, addr) {
		return "", true
	}
	if containedIn(private, addr) || containedIn(reserved, addr) {
		return ReasonPrivate, false
	}
	return "", true
}

// alwaysDenied is step 3: what no rule can open.
func alwaysDenied(a Addrs, addr netip.Addr) (string, bool) {
	switch {
	case isHost(a.Host, addr) || containedIn(loopback, addr) || (a.Gateway.IsValid() && a.Gateway.Masked().Contains(addr)):
		return ReasonHost, true
	case a.GuestPool.IsValid() && a.GuestPool.Contains(addr):
		return ReasonGuest, true
	case containedIn(linkLocal, addr):
		return ReasonLinkLocal, true
	}
	return "", false
}

func containedIn(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isHost says whether addr is one of the host's addresses: only the
// addresses, not their subnets, which hold the LAN's other machines.
func isHost(host []netip.Prefix, addr netip.Addr) bool {
	for _, h := range host {
		if h.Addr().Unmap() == addr {
			return true
		}
	}
	return false
}
