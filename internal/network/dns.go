package network

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// ParseDNS reads the resolvers guests are given: the IPv4 nameservers of
// a resolv.conf that are not loopback (a host's local resolver, such as
// systemd-resolved's 127.0.0.53, is the host's own and out of the guests'
// reach). skipped are the ones left out, to say so.
func ParseDNS(r io.Reader) (dns []netip.Addr, skipped []string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.IsLoopback() || !a.Unmap().Is4() {
			skipped = append(skipped, f[1])
			continue
		}
		dns = append(dns, a.Unmap())
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("network: resolv.conf: %w", err)
	}
	return dns, skipped, nil
}

// ParseDNSFlag reads --dns: IPv4 addresses, or "none".
func ParseDNSFlag(vals []string) ([]netip.Addr, error) {
	dns := []netip.Addr{}
	for _, v := range vals {
		if v == "none" {
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("--dns %q: not an IPv4 address", v)
		}
		dns = append(dns, a)
	}
	return dns, nil
}
