package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// Policy is a stand-in for the per-function egress policy (policy.go, on
// another branch): this one has no knobs, and Ruleset below denies exactly
// the defaults. Delete this file when policy.go and nft.go are merged.
type Policy struct{}

// privateRanges are denied by default besides the host and other guests.
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"}

// Ruleset is the environment's nftables script, applied in its namespace:
// the guest's traffic is forwarded unless it goes to the host, to another
// guest, to link-local or private ranges; DNS to the given resolvers is
// allowed first. Refusals are fast: a TCP reset, or ICMP administratively
// prohibited, and counted.
func Ruleset(_ Policy, a Addrs) (string, error) {
	if !a.Guest.IsValid() || !a.GuestPool.IsValid() {
		return "", fmt.Errorf("network: ruleset: guest address and pool are required")
	}
	deny := []string{a.GuestPool.Masked().String()}
	for _, h := range a.Host {
		if h.Addr().Is4() {
			deny = append(deny, netip.PrefixFrom(h.Addr(), 32).String())
		}
	}
	deny = append(deny, privateRanges...)
	var b strings.Builder
	fmt.Fprintf(&b, "table inet hearth\ndelete table inet hearth\n")
	fmt.Fprintf(&b, "table inet hearth {\n")
	fmt.Fprintf(&b, "\tcounter denied {}\n\tcounter allowed {}\n")
	fmt.Fprintf(&b, "\tset deny4 { type ipv4_addr; flags interval; auto-merge; elements = { %s } }\n", strings.Join(deny, ", "))
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	fmt.Fprintf(&b, "\t\tct state established,related accept\n")
	fmt.Fprintf(&b, "\t\tiifname != \"tap0\" accept\n")
	for _, d := range a.DNS {
		if d.Is4() {
			fmt.Fprintf(&b, "\t\tip daddr %s meta l4proto { tcp, udp } th dport 53 counter name allowed accept\n", d)
		}
	}
	fmt.Fprintf(&b, "\t\tip daddr @deny4 meta l4proto tcp counter name denied reject with tcp reset\n")
	fmt.Fprintf(&b, "\t\tip daddr @deny4 counter name denied reject with icmpx type admin-prohibited\n")
	fmt.Fprintf(&b, "\t\tmeta nfproto ipv6 counter name denied reject with icmpx type admin-prohibited\n")
	fmt.Fprintf(&b, "\t\tcounter name allowed accept\n\t}\n")
	// The namespace itself (its gateway addresses) is no service to the
	// guest: only what it forwards.
	fmt.Fprintf(&b, "\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname \"tap0\" meta l4proto tcp counter name denied reject with tcp reset\n")
	fmt.Fprintf(&b, "\t\tiifname \"tap0\" meta l4proto != icmp counter name denied reject with icmpx type admin-prohibited\n\t}\n")
	fmt.Fprintf(&b, "}\n")
	return b.String(), nil
}
