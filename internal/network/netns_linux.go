package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	netnsDir = "/run/netns"
	// NetnsPrefix begins the name of every namespace Hearth makes.
	NetnsPrefix = "hearth-"
	tapName     = "tap0"
	vethName    = "veth0"
)

// ErrUnavailable is returned when networking cannot be given: the daemon
// is not root, or ip or nft is missing.
var ErrUnavailable = errors.New("networking is unavailable")

// Config configures a Manager.
type Config struct {
	// Pool holds the guests' addresses; DefaultPool if zero.
	Pool netip.Prefix
	// DNS are the resolvers every guest is given.
	DNS []netip.Addr
	// Denied, if set, is told the refusals each environment's ruleset
	// counted: every CollectEvery (0: only when Collect is called) and
	// when the environment's network is removed.
	Denied       DeniedCounter
	CollectEvery time.Duration
	Log          *slog.Logger
}

// Manager makes and removes environments' networks. One per daemon; the
// slots it hands out are also claimed on the host (the veth's name), so
// two processes sharing a host do not collide.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	used map[int]bool
	next int
	live map[string]*tracked // by namespace, when counting refusals
	stop context.CancelFunc  // ends the collector
}

// New checks that networking can be given here (root, ip and nft) and
// installs the host's table: forwarding on, the guests' traffic
// masqueraded out, and none of it into the host or to another guest.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if !cfg.Pool.IsValid() {
		cfg.Pool = DefaultPool
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: it needs root (network namespaces, TAP devices, nftables)", ErrUnavailable)
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s is not installed (scripts/install-deps.sh)", ErrUnavailable, bin)
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Log, used: map[int]bool{}, next: 1, live: map[string]*tracked{}}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("network: enable forwarding: %w", err)
	}
	if err := run(ctx, "", hostRuleset(cfg.Pool), "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("network: host table: %w", err)
	}
	m.stop = func() {}
	if cfg.Denied != nil && cfg.CollectEvery > 0 {
		// The collector lives as long as the Manager, not as New's ctx.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.stop = cancel
		go m.collectEvery(cctx, cfg.CollectEvery)
	}
	return m, nil
}

// Close counts the last refusals of the live environments and stops the
// collector; their networks stay (a suspended environment keeps its own).
func (m *Manager) Close(ctx context.Context) {
	m.stop()
	if m.cfg.Denied != nil {
		m.Collect(ctx)
	}
}

// DNS is what guests are given as resolvers.
func (m *Manager) DNS() []netip.Addr { return m.cfg.DNS }

// hostRuleset is the root namespace's table. Connections from the guests'
// links into the host itself are refused, whatever the address (so one
// added later too), while the answers to the host's own connections into
// a guest pass; guest to guest is refused; the rest leaves masqueraded.
func hostRuleset(pool netip.Prefix) string {
	return fmt.Sprintf(`table ip hearth
delete table ip hearth
table ip hearth {
	counter denied {}
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "hv*" ct state established,related accept
		iifname "hv*" meta l4proto tcp counter name denied reject with tcp reset
		iifname "hv*" counter name denied reject with icmp type admin-prohibited
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "hv*" oifname "hv*" counter name denied reject with icmp type admin-prohibited
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr %s oifname != "hv*" masquerade
	}
}
`, pool.Masked())
}

// Create makes envID's network: its namespace, veth pair and TAP, the
// routes, and the policy's ruleset in the namespace. Its refusals are
// counted for function.
func (m *Manager) Create(ctx context.Context, envID, function string, p Policy) (Lease, error) {
	ns := NetnsPrefix + envID
	if err := run(ctx, "", "", "ip", "netns", "add", ns); err != nil {
		return Lease{}, fmt.Errorf("network: %w", err)
	}
	for range 64 {
		s, err := m.claim()
		if err != nil {
			_ = RemoveNetns(ns)
			return Lease{}, err
		}
		l := m.lease(envID, s)
		// The host-side veth's name is the host-wide claim on the slot.
		if err := run(ctx, "", "", "ip", "link", "add", l.Link, "type", "veth", "peer", "name", vethName, "netns", ns); err != nil {
			m.release(s.i)
			if strings.Contains(err.Error(), "File exists") {
				continue // another process's
			}
			_ = RemoveNetns(ns)
			return Lease{}, fmt.Errorf("network: %w", err)
		}
		if err := m.build(ctx, l, s, p); err != nil {
			_ = m.Remove(context.Background(), l)
			return Lease{}, err
		}
		m.track(l, function)
		return l, nil
	}
	_ = RemoveNetns(ns)
	return Lease{}, errors.New("network: no free address block")
}

func (m *Manager) lease(envID string, s slot) Lease {
	host := strings.TrimPrefix(envID, "env-")
	return Lease{
		Netns: NetnsPrefix + envID, Slot: s.i, Pool: s.pool, Link: s.linkName(), Tap: tapName,
		MAC: s.mac(), Hostname: host, Guest: s.guest(), Gateway: s.gateway(), DNS: m.cfg.DNS,
	}
}

func (m *Manager) build(ctx context.Context, l Lease, s slot, p Policy) error {
	host := fmt.Sprintf(`addr add %[1]s dev %[2]s
link set %[2]s up
route add %[3]s via %[4]s dev %[2]s
`, s.hostSide(), l.Link, s.guestNet(), s.nsSide().Addr())
	if err := run(ctx, "", host, "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	inside := fmt.Sprintf(`link set lo up
addr add %[1]s dev %[2]s
link set %[2]s up
tuntap add dev %[3]s mode tap
addr add %[4]s dev %[3]s
link set %[3]s up
route add default via %[5]s dev %[2]s
`, s.nsSide(), vethName, l.Tap, s.gateway(), s.hostSide().Addr())
	if err := run(ctx, "", inside, "ip", "-n", l.Netns, "-batch", "-"); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := InNetns(l.NetnsPath(), func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("network: forwarding in %s: %w", l.Netns, err)
	}
	all, err := HostAddrs()
	if err != nil {
		return err
	}
	// The host's side of every environment's veth is in the pool, which
	// the ruleset refuses as a whole: listing each would grow every
	// ruleset with the number of environments. This environment's own is
	// listed: it is where the host's connections into the guest come from.
	hostAddrs := []netip.Prefix{netip.PrefixFrom(s.hostSide().Addr(), 32)}
	for _, h := range all {
		if !s.pool.Contains(h.Addr()) {
			hostAddrs = append(hostAddrs, h)
		}
	}
	rules, err := Ruleset(p, Addrs{Guest: l.Guest, Gateway: l.Gateway, Host: hostAddrs, GuestPool: s.pool, DNS: l.DNS})
	if err != nil {
		return err
	}
	if err := run(ctx, l.Netns, rules, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("network: ruleset of %s: %w", l.Netns, err)
	}
	// Strict tracking: a TCP packet in the middle of a connection the
	// namespace does not know is invalid (and reset by the ruleset), not
	// taken up as established. That is what resets, at a resume, the
	// connections open at the suspend.
	if err := InNetns(l.NetnsPath(), func() error {
		return os.WriteFile("/proc/sys/net/netfilter/nf_conntrack_tcp_loose", []byte("0\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("network: strict tracking in %s: %w", l.Netns, err)
	}
	return nil
}

// Resumed forgets the connections l's namespace tracked before its
// environment was suspended: their next packets are answered with resets
// (see the ruleset), as Fly does, and new connections work at once.
func (m *Manager) Resumed(ctx context.Context, l Lease) error {
	if err := run(ctx, l.Netns, "", "conntrack", "-F"); err != nil && !strings.Contains(err.Error(), "0 flow entries") {
		return fmt.Errorf("network: forgetting the connections of %s: %w", l.Netns, err)
	}
	return nil
}

// Adopt records a lease a previous process made (an environment resumed
// by a restarted daemon), so its slot is not handed out again.
func (m *Manager) Adopt(l Lease, function string) {
	m.mu.Lock()
	m.used[l.Slot] = true
	m.mu.Unlock()
	m.track(l, function)
}

// Remove ends a lease's network: the namespace (which takes the veth pair
// and the TAP and the ruleset with it) and its slot.
func (m *Manager) Remove(ctx context.Context, l Lease) error {
	m.untrack(ctx, l)
	var errs []error
	if err := run(ctx, "", "", "ip", "link", "del", l.Link); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	if err := RemoveNetns(l.Netns); err != nil {
		errs = append(errs, err)
	}
	m.release(l.Slot)
	return errors.Join(errs...)
}

// RemoveNetns unbinds a namespace (the kernel frees it with its devices
// once nothing holds it). A missing one is no error.
func RemoveNetns(name string) error {
	p := netnsDir + "/" + name
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// Namespaces are the names of Hearth's namespaces on this host.
func Namespaces() []string {
	entries, _ := os.ReadDir(netnsDir)
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

func (m *Manager) claim() (slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range 1 << (32 - m.cfg.Pool.Bits() - blockBits) {
		s := slotOf(m.cfg.Pool, m.next)
		m.next++
		if !s.valid() {
			m.next = 1
			continue
		}
		if !m.used[s.i] {
			m.used[s.i] = true
			return s, nil
		}
	}
	return slot{}, errors.New("network: address pool exhausted")
}

func (m *Manager) release(i int) {
	m.mu.Lock()
	delete(m.used, i)
	m.mu.Unlock()
}

// HostAddrs are the root namespace's addresses (the caller's namespace).
func HostAddrs() ([]netip.Prefix, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("network: host addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range ifaddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Addr().BitLen()))
		}
	}
	return out, nil
}

// run runs a command, in the namespace netns if set, with stdin; its
// output becomes the error's text.
func run(ctx context.Context, netns, stdin, name string, args ...string) error {
	if netns != "" {
		args = append([]string{"netns", "exec", netns, name}, args...)
		name = "ip"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// InNetns runs fn on a thread moved into the namespace bound at path, and
// moves the thread back. Sockets and devices opened by fn stay in that
// namespace after.
func InNetns(path string, fn func() error) error {
	ns, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer unix.Close(ns)
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network: %w", err)
	}
	defer unix.Close(self)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network: setns %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and ends with its goroutine: it must
		// never run anything else in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("network: back from %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// OpenTap opens the TAP device name in the namespace bound at netnsPath,
// for QEMU: frames written to the descriptor leave through that namespace,
// whichever namespace the holder is in, so QEMU needs no privilege.
func OpenTap(netnsPath, name string) (*os.File, error) {
	var f *os.File
	err := InNetns(netnsPath, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(ifr))); errno != 0 {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, errno)
		}
		f = os.NewFile(uintptr(fd), "tap:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network: open tap: %w", err)
	}
	return f, nil
}

// RemoveEnvNetworks removes the namespaces of the environments whose
// folders are in envsDir: what a daemon's shutdown keeps for the next
// daemon (its suspended environments' networks), removed by a test that
// starts no next daemon.
func RemoveEnvNetworks(envsDir string) error {
	entries, err := os.ReadDir(envsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, RemoveNetns(NetnsPrefix+e.Name()))
	}
	return errors.Join(errs...)
}
