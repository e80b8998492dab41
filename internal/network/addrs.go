// The mechanism (this file and netns_linux.go): each execution
// environment has its own network: a network namespace (persisted by a bind mount under /run/netns, so a
// suspended environment costs no process) holding a TAP device whose
// descriptor QEMU is handed, and a veth pair to the host's namespace,
// which routes and masquerades the guests' traffic. The environment's
// egress policy is an nftables ruleset in its own namespace's forward
// path: a guest cannot change it, and one guest's rules never touch
// another's.

package network

import (
	"fmt"
	"net/netip"
)

// Addrs is what an environment's ruleset needs to know of the addresses
// around it.
type Addrs struct {
	// Guest is the guest's address in its /30; Gateway the namespace's side
	// of the TAP, the guest's default route.
	Guest, Gateway netip.Prefix
	// Host is every address of the host's root namespace, which the guest
	// must not reach.
	Host []netip.Prefix
	// GuestPool holds every guest's addresses: no guest reaches another.
	GuestPool netip.Prefix
	// DNS are the resolvers the guest is given, allowed on port 53.
	DNS []netip.Addr
}

// DefaultPool is where environments' addresses come from: 8 addresses per
// environment (the guest's /30 and the veth's /30), 8,191 environments.
var DefaultPool = netip.MustParsePrefix("10.200.0.0/16")

// blockBits is the size of one environment's block: a /29.
const blockBits = 3

// slot is environment number i's block of the pool (i from 1: block 0 is
// never handed out, so no guest holds the pool's own network address).
type slot struct {
	pool netip.Prefix
	i    int
}

func (s slot) valid() bool {
	return s.i >= 1 && s.i < 1<<(32-s.pool.Bits()-blockBits) && s.pool.Addr().Is4()
}

func (s slot) addr(off int) netip.Addr {
	b := s.pool.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(s.i<<blockBits + off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// The block's addresses: .1/.2 are the TAP link (gateway, guest), .5/.6
// the veth link (host's side, namespace's side).
func (s slot) gateway() netip.Prefix    { return netip.PrefixFrom(s.addr(1), 30) }
func (s slot) guest() netip.Prefix      { return netip.PrefixFrom(s.addr(2), 30) }
func (s slot) guestNet() netip.Prefix   { return netip.PrefixFrom(s.addr(0), 30) }
func (s slot) hostSide() netip.Prefix   { return netip.PrefixFrom(s.addr(5), 30) }
func (s slot) nsSide() netip.Prefix     { return netip.PrefixFrom(s.addr(6), 30) }
func (s slot) linkName() string         { return fmt.Sprintf("hv%x", s.i) }
func (s slot) mac() string              { return macOf(s.i) }
func (s slot) String() string           { return fmt.Sprintf("%s#%d", s.pool, s.i) }
func slotOf(p netip.Prefix, i int) slot { return slot{pool: p, i: i} }

// macOf is a locally administered, unicast MAC from a slot number, so that
// no two live environments share one.
func macOf(i int) string {
	return fmt.Sprintf("02:68:65:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
}

// Lease is an environment's network identity, recorded in its folder so a
// restarted daemon keeps it.
type Lease struct {
	// Netns is the namespace's name under /run/netns.
	Netns string `json:"netns"`
	// Slot numbers the environment's block of Pool.
	Slot int          `json:"slot"`
	Pool netip.Prefix `json:"pool"`
	// Link is the host's end of the veth pair; Tap the TAP in the
	// namespace.
	Link     string       `json:"link"`
	Tap      string       `json:"tap"`
	MAC      string       `json:"mac"`
	Hostname string       `json:"hostname"`
	Guest    netip.Prefix `json:"guest"`
	Gateway  netip.Prefix `json:"gateway"`
	DNS      []netip.Addr `json:"dns,omitempty"`
}

// NetnsPath is where the namespace is bound.
func (l Lease) NetnsPath() string { return netnsDir + "/" + l.Netns }
