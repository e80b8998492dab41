package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// netIface is the guest's one network card.
const netIface = "eth0"

// configureNet gives eth0 the host's identity for this environment: MAC,
// address, default route, hostname, /etc/hosts and /etc/resolv.conf. It
// runs at init and after every restore; on a clone everything changes,
// and connections open before are simply gone. The files are rewritten
// in place, so a function root's bind of them sees the new contents.
func configureNet(n *guestproto.Net) error {
	if n == nil {
		return nil
	}
	addr, err := netip.ParsePrefix(n.Address)
	if err != nil || !addr.Addr().Is4() {
		return fmt.Errorf("net: address %q: not an IPv4 prefix", n.Address)
	}
	gw, err := netip.ParseAddr(n.Gateway)
	if err != nil || !gw.Is4() {
		return fmt.Errorf("net: gateway %q: not an IPv4 address", n.Gateway)
	}
	mac, err := net.ParseMAC(n.MAC)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("net: MAC %q: %v", n.MAC, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("net: %w", err)
	}
	defer unix.Close(fd)
	if err := setMAC(fd, mac); err != nil {
		return err
	}
	ifr, err := unix.NewIfreq(netIface)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(addr.Addr().AsSlice()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("net: set address: %w", err)
	}
	mask := net.CIDRMask(addr.Bits(), 32)
	if err := ifr.SetInet4Addr(mask); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("net: set netmask: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("net: flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("net: up: %w", err)
	}
	// A clone's old default route may survive its old address: replace it.
	_ = defaultRoute(fd, unix.SIOCDELRT, netip.Addr{})
	if err := defaultRoute(fd, unix.SIOCADDRT, gw); err != nil {
		return fmt.Errorf("net: default route via %s: %w", gw, err)
	}
	if n.Hostname != "" {
		if err := unix.Sethostname([]byte(n.Hostname)); err != nil {
			return fmt.Errorf("net: hostname: %w", err)
		}
	}
	return writeNetFiles("/etc", n, addr.Addr())
}

// writeNetFiles writes hosts and resolv.conf into etc.
func writeNetFiles(etc string, n *guestproto.Net, addr netip.Addr) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	if n.Hostname != "" {
		hosts += fmt.Sprintf("%s\t%s\n", addr, n.Hostname)
	}
	var resolv strings.Builder
	for _, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("net: DNS server %q: %w", d, err)
		}
		fmt.Fprintf(&resolv, "nameserver %s\n", d)
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	for name, body := range map[string]string{"hosts": hosts, "resolv.conf": resolv.String()} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("net: %w", err)
		}
	}
	return nil
}

// bindNetFiles shows the agent's /etc/hosts and /etc/resolv.conf in a
// function's own root, over the image's, where the image has them.
func bindNetFiles(root string) error {
	var errs []error
	for _, name := range []string{"hosts", "resolv.conf"} {
		target := filepath.Join(root, "etc", name)
		if _, err := os.Stat(target); err != nil {
			continue // a read-only root without the file: nothing to bind over
		}
		if err := unix.Mount(filepath.Join("/etc", name), target, "", unix.MS_BIND, ""); err != nil {
			errs = append(errs, fmt.Errorf("bind %s: %w", target, err))
		}
	}
	return errors.Join(errs...)
}

// setMAC sets eth0's hardware address (SIOCSIFHWADDR; virtio-net takes it
// while up).
func setMAC(fd int, mac net.HardwareAddr) error {
	var ifr struct {
		name   [unix.IFNAMSIZ]byte
		family uint16
		data   [14]byte
		_      [8]byte
	}
	copy(ifr.name[:], netIface)
	ifr.family = unix.ARPHRD_ETHER
	copy(ifr.data[:], mac)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("net: set MAC: %w", errno)
	}
	return nil
}

// rtentry is struct rtentry of <net/route.h> on 64-bit Linux.
type rtentry struct {
	pad1    uint64
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uint64
	pad4    uintptr
	metric  int16
	dev     *byte
	mtu     uint64
	window  uint64
	irtt    uint16
}

// defaultRoute adds (SIOCADDRT) or deletes (SIOCDELRT) the default route
// through eth0, via gw when adding.
func defaultRoute(fd int, req uint, gw netip.Addr) error {
	dev := append([]byte(netIface), 0)
	rt := rtentry{flags: unix.RTF_UP, dev: &dev[0]}
	rt.dst.Family, rt.genmask.Family, rt.gateway.Family = unix.AF_INET, unix.AF_INET, unix.AF_INET
	if gw.IsValid() {
		rt.gateway.Addr = gw.As4()
		rt.flags |= unix.RTF_GATEWAY
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&rt))); errno != 0 {
		return errno
	}
	return nil
}
