package network

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Table is the nftables table Ruleset makes, in the inet family.
const Table = "hearth_egress"

// Ruleset is the nftables script (for `nft -f`, run in the environment's
// network namespace) that enforces p for the guest with addresses a. It
// replaces any earlier table of the same name, so loading it again after a
// policy change or a restore is safe.
//
// The guest's packets cross the namespace on its forward hook (TAP in,
// veth out), so the policy is a forward chain; an input chain refuses
// connections to the namespace itself (the gateway) but for DNS. There is
// no output chain: the namespace's own traffic is not the guest's. The
// host's addresses may open connections into the guest (port forwarding
// over the network); nothing else may.
//
// Refusals are fast (a TCP reset, else ICMP administratively prohibited),
// never a silent drop that would leave the function waiting for its
// timeout, and each is counted in the named counter "denied_"+reason,
// which ParseCounters reads back.
func Ruleset(p Policy, a Addrs) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	if !a.Guest.IsValid() {
		return "", fmt.Errorf("network ruleset: no guest address")
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// "add" then "delete" makes the delete succeed whether or not the
	// table exists; the whole script is one transaction.
	w("add table inet %s", Table)
	w("delete table inet %s", Table)
	w("table inet %s {", Table)
	for _, r := range reasons {
		w("\tcounter denied_%s {", r)
		w("\t}")
	}
	for _, r := range reasons {
		w("\tchain deny_%s {", r)
		w("\t\tcounter name \"denied_%s\"", r)
		w("\t\tmeta l4proto tcp reject with tcp reset")
		w("\t\treject with icmpx type admin-prohibited")
		w("\t}")
	}

	w("\tchain input {")
	w("\t\ttype filter hook input priority filter; policy accept;")
	w("\t\tiifname \"lo\" accept")
	w("\t\tct state established,related accept")
	w("\t\tct state invalid drop")
	w("\t\tmeta l4proto ipv6-icmp icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept")
	if p.Enabled {
		dns(w, a.DNS)
		w("\t\tgoto deny_%s", ReasonHost)
	} else {
		w("\t\tgoto deny_%s", ReasonDisabled)
	}
	w("\t}")

	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter; policy accept;")
	w("\t\tct state established,related accept")
	// A TCP packet of a connection the namespace does not know (one open
	// at a suspend, forgotten at the resume) is answered with a reset, so
	// its guest sees an error at once rather than a hang.
	w("\t\tmeta l4proto tcp ct state invalid reject with tcp reset")
	w("\t\tct state invalid drop")
	host := hostAddrs(a.Host)
	for _, h := range host {
		if family(h) != family(a.Guest) {
			continue // a packet is of one family
		}
		w("\t\t%s daddr %s %s saddr %s accept", family(a.Guest), a.Guest.Addr(), family(h), h.Addr())
	}
	if !p.Enabled {
		w("\t\tgoto deny_%s", ReasonDisabled)
		w("\t}")
		w("}")
		return b.String(), nil
	}
	dns(w, a.DNS)
	for _, r := range p.Deny {
		rule(w, r, "goto deny_"+ReasonPolicy)
	}
	always := func(ps []netip.Prefix, reason string) {
		for _, p := range ps {
			if p.IsValid() {
				w("\t\t%s daddr %s goto deny_%s", family(p), p.Masked(), reason)
			}
		}
	}
	always(host, ReasonHost)
	always(loopback, ReasonHost)
	always([]netip.Prefix{a.Gateway}, ReasonHost)
	always([]netip.Prefix{a.GuestPool}, ReasonGuest)
	always(linkLocal, ReasonLinkLocal)
	for _, r := range p.Allow {
		rule(w, r, "accept")
	}
	if p.AllowPrivate {
		for _, pr := range private {
			w("\t\t%s daddr %s accept", family(pr), pr)
		}
	}
	always(private, ReasonPrivate)
	always(reserved, ReasonPrivate)
	w("\t\taccept")
	w("\t}")
	w("}")
	return b.String(), nil
}

// dns accepts DNS to the given servers.
func dns(w func(string, ...any), servers []netip.Addr) {
	for _, s := range servers {
		s = s.Unmap()
		fam := "ip"
		if s.Is6() {
			fam = "ip6"
		}
		w("\t\t%s daddr %s udp dport 53 accept", fam, s)
		w("\t\t%s daddr %s tcp dport 53 accept", fam, s)
	}
}

// rule writes r as one nft rule per port item (anonymous sets refuse
// overlapping ranges, which a user may well give), ending in verdict.
func rule(w func(string, ...any), r Rule, verdict string) {
	p, _ := parseCIDR(r.Cidr) // validated
	match := fmt.Sprintf("%s daddr %s", family(p), p)
	if len(r.Ports) == 0 {
		if r.Protocol != "" {
			match += " meta l4proto " + r.Protocol
		}
		w("\t\t%s %s", match, verdict)
		return
	}
	proto := "{ tcp, udp }"
	if r.Protocol != "" {
		proto = r.Protocol
	}
	for _, s := range r.Ports {
		lo, hi, _ := parsePorts(s)
		ports := fmt.Sprint(lo)
		if hi != lo {
			ports = fmt.Sprintf("%d-%d", lo, hi)
		}
		w("\t\t%s meta l4proto %s th dport %s %s", match, proto, ports, verdict)
	}
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "ip"
	}
	return "ip6"
}

// ParseCounters reads `nft -j list counters` (or `list table`) and
// returns the packets of each counter of Hearth's table by name, e.g.
// "denied_host". A refused connection counts once per refused packet: a
// TCP connect is one SYN, a retrying UDP client more.
func ParseCounters(data []byte) (map[string]uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Family  string `json:"family"`
				Table   string `json:"table"`
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("nft counters: %w", err)
	}
	if doc.Nftables == nil {
		return nil, fmt.Errorf("nft counters: no \"nftables\" array")
	}
	out := map[string]uint64{}
	for _, o := range doc.Nftables {
		if c := o.Counter; c != nil && c.Family == "inet" && c.Table == Table {
			out[c.Name] = c.Packets
		}
	}
	return out, nil
}

// hostAddrs are the host's addresses as single-address prefixes: the
// host is refused, the rest of its subnets is the LAN, private but
// allowable.
func hostAddrs(host []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(host))
	for _, h := range host {
		a := h.Addr().Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}
