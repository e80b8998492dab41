package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSlotAddresses(t *testing.T) {
	tests := []struct {
		i                                int
		gateway, guest, hostSide, nsSide string
		link, mac                        string
	}{
		{1, "10.200.0.9/30", "10.200.0.10/30", "10.200.0.13/30", "10.200.0.14/30", "hv1", "02:68:65:00:00:01"},
		{32, "10.200.1.1/30", "10.200.1.2/30", "10.200.1.5/30", "10.200.1.6/30", "hv20", "02:68:65:00:00:20"},
		{8191, "10.200.255.249/30", "10.200.255.250/30", "10.200.255.253/30", "10.200.255.254/30", "hv1fff", "02:68:65:00:1f:ff"},
	}
	for _, tt := range tests {
		s := slotOf(DefaultPool, tt.i)
		if !s.valid() {
			t.Fatalf("slot %d invalid", tt.i)
		}
		got := []string{s.gateway().String(), s.guest().String(), s.hostSide().String(), s.nsSide().String(), s.linkName(), s.mac()}
		want := []string{tt.gateway, tt.guest, tt.hostSide, tt.nsSide, tt.link, tt.mac}
		for k := range got {
			if got[k] != want[k] {
				t.Errorf("slot %d: got %v, want %v", tt.i, got, want)
				break
			}
		}
	}
	for _, i := range []int{0, 8192} {
		if slotOf(DefaultPool, i).valid() {
			t.Errorf("slot %d valid", i)
		}
	}
}

// TestCreateRemove makes an environment's network for real (root only)
// and removes it, leaving no namespace or link behind.
func TestCreateRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run the tests as root, as .ci/run does")
	}
	ctx := context.Background()
	denied := &fakeDenied{}
	m, err := New(ctx, Config{DNS: []netip.Addr{netip.MustParseAddr("203.0.113.2")}, Denied: denied})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Create(ctx, "env-nettest", "f", DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Remove(context.Background(), l) })
	if _, err := os.Stat(l.NetnsPath()); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	tap, err := OpenTap(l.NetnsPath(), l.Tap)
	if err != nil {
		t.Fatal(err)
	}
	tap.Close()
	if err := run(ctx, l.Netns, "", "nft", "list", "table", "inet", Table); err != nil {
		t.Fatalf("ruleset: %v", err)
	}
	counters, err := Counters(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := counters["denied_"+ReasonHost]; !ok {
		t.Errorf("counters %v lack denied", counters)
	}
	// The namespace itself refuses a connection, at once, and counts it;
	// the count reaches the metrics once.
	ns := slotOf(l.Pool, l.Slot).nsSide().Addr()
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ns, 1).String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("connected to the namespace itself")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial the namespace: %v, want ECONNREFUSED", err)
	}
	m.Collect(ctx)
	m.Collect(ctx)
	if got := denied.get("f", ReasonHost); got != 1 {
		t.Errorf("denied host %d, want 1", got)
	}
	if err := m.Remove(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.NetnsPath()); !os.IsNotExist(err) {
		t.Errorf("namespace left: %v", err)
	}
	if err := run(ctx, "", "", "ip", "link", "show", l.Link); err == nil {
		t.Errorf("link %s left", l.Link)
	}
}

type fakeDenied struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (f *fakeDenied) EgressDenied(function, reason string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]uint64{}
	}
	f.n[function+"/"+reason] += n
}

func (f *fakeDenied) get(function, reason string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[function+"/"+reason]
}
