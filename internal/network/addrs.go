package network

import "net/netip"

// Addrs are the addresses an environment's network is built from: the
// guest's /30 and the netns side of it, every address of the host's root
// namespace, the range all guests are given, and the DNS servers the guest
// may use.
type Addrs struct {
	Guest, Gateway netip.Prefix
	Host           []netip.Prefix
	GuestPool      netip.Prefix
	DNS            []netip.Addr
}
