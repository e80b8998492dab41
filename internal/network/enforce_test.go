package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRulesetEnforced loads rulesets into a router namespace between a
// "guest" namespace and a "world" namespace the test makes (no traffic
// leaves this machine), connects from the guest to addresses of every
// kind held by the world, and checks that each connection does what Allows
// says: accepted, or refused at once with a reset, and counted.
func TestRulesetEnforced(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		t.Fatal("needs nft and root to make network namespaces: run the tests as root after scripts/install-deps.sh, as .ci/run does")
	}
	id := os.Getpid() % 100000
	guest, router, world := fmt.Sprintf("hnp-g%d", id), fmt.Sprintf("hnp-r%d", id), fmt.Sprintf("hnp-w%d", id)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{guest, router, world} {
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	in := func(ns string, args ...string) {
		t.Helper()
		sh(append([]string{"ip", "netns", "exec", ns}, args...)...)
	}
	sh("ip", "link", "add", "g0", "netns", guest, "type", "veth", "peer", "r0", "netns", router)
	sh("ip", "link", "add", "r1", "netns", router, "type", "veth", "peer", "w0", "netns", world)
	in(guest, "ip", "addr", "add", "10.200.0.2/30", "dev", "g0")
	in(guest, "ip", "link", "set", "g0", "up")
	in(guest, "ip", "route", "add", "default", "via", "10.200.0.1")
	in(router, "ip", "addr", "add", "10.200.0.1/30", "dev", "r0")
	in(router, "ip", "addr", "add", "10.250.0.1/24", "dev", "r1")
	in(router, "ip", "link", "set", "r0", "up")
	in(router, "ip", "link", "set", "r1", "up")
	in(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	in(router, "ip", "route", "add", "default", "via", "10.250.0.2")
	in(world, "ip", "addr", "add", "10.250.0.2/24", "dev", "w0")
	in(world, "ip", "link", "set", "w0", "up")
	in(world, "ip", "route", "add", "10.200.0.0/16", "via", "10.250.0.1")
	// The world holds a public address (TEST-NET-3), a LAN machine, the
	// "host", another guest and a link-local address.
	targets := map[string]string{"public": "203.0.113.7", "lan": "192.168.77.7", "host": "10.250.0.9",
		"guest": "10.200.5.6", "linklocal": "169.254.7.7"}
	for _, a := range targets {
		in(world, "ip", "addr", "add", a+"/32", "dev", "lo")
	}
	// Listen in the world on every address (port 8080 and 5432).
	var lns []net.Listener
	inNS(t, world, func() {
		for _, port := range []string{"8080", "5432"} {
			ln, err := net.Listen("tcp4", ":"+port)
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
	})
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	a := Addrs{Guest: netip.MustParsePrefix("10.200.0.2/30"), Gateway: netip.MustParsePrefix("10.200.0.1/30"),
		Host: []netip.Prefix{netip.MustParsePrefix("10.250.0.9/24")}, GuestPool: netip.MustParsePrefix("10.200.0.0/16")}

	for _, tc := range []struct {
		name string
		p    Policy
	}{
		{"default", DefaultPolicy()},
		{"lan database", Policy{Enabled: true, Allow: []Rule{{Cidr: "192.168.77.7", Ports: []string{"5432"}}, {Cidr: "0.0.0.0/0"}}}},
		{"deny public", Policy{Enabled: true, AllowPrivate: true, Deny: []Rule{{Cidr: "203.0.113.0/24", Ports: []string{"8080"}}}}},
		{"disabled", Policy{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := Ruleset(tc.p, a)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("ip", "netns", "exec", router, nft, "-f", "-")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft -f: %v: %s", err, out)
			}
			want := map[string]uint64{}
			for _, name := range []string{"public", "lan", "host", "guest", "linklocal"} {
				for _, port := range []uint16{8080, 5432} {
					dst := netip.AddrPortFrom(netip.MustParseAddr(targets[name]), port)
					reason, allowed := tc.p.decide(a, dst, "tcp")
					if !allowed {
						want["denied_"+reason]++
					}
					start := time.Now()
					var err error
					inNS(t, guest, func() {
						var c net.Conn
						if c, err = net.DialTimeout("tcp4", dst.String(), 3*time.Second); err == nil {
							c.Close()
						}
					})
					switch {
					case allowed && err != nil:
						t.Errorf("%s (%s): %v, want a connection", name, dst, err)
					case !allowed && !errors.Is(err, syscall.ECONNREFUSED):
						t.Errorf("%s (%s): %v, want refused (%s)", name, dst, err, reason)
					case !allowed && time.Since(start) > time.Second:
						t.Errorf("%s (%s): refused after %v, not at once", name, dst, time.Since(start))
					}
				}
			}
			out, err := exec.Command("ip", "netns", "exec", router, nft, "-j", "list", "counters").Output()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseCounters(out)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range got {
				if v != want[k] {
					t.Errorf("counter %s = %d, want %d (all: %v, want %v)", k, v, want[k], got, want)
				}
			}
		})
	}
}

// inNS runs fn on a thread in the named network namespace: sockets made
// there stay in it.
func inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("back to the test's network namespace: %v", err)) // the thread is unusable
		}
	}()
	fn()
}
