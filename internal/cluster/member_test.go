package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/broker/brokertest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// gate records what a drain switched.
type gate struct {
	mu       sync.Mutex
	draining bool
	calls    int
}

func (g *gate) SetDraining(d bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining = d
	g.calls++
}

func (g *gate) get() (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.draining, g.calls
}

type fixedLoad Load

func (l fixedLoad) Load() Load { return Load(l) }

func join(t *testing.T, ctx context.Context, b *broker.Broker, node string, mod func(*Config)) (*Member, error) {
	t.Helper()
	cfg := Config{JetStream: b.JetStream(), Replicas: b.Replicas(), Cluster: "test", Node: node, API: "127.0.0.1:9000",
		Load: fixedLoad{Busy: 1, MemoryMB: 128}, Log: quiet}
	if mod != nil {
		mod(&cfg)
	}
	m, err := Join(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { m.Leave(context.Background()) })
	}
	return m, err
}

// poll calls f until it is true or the deadline passes.
func poll(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func hostState(m *Member, node string) (HostStatus, bool) {
	for _, h := range m.Status().Hosts {
		if h.Node == node {
			return h, true
		}
	}
	return HostStatus{}, false
}

// Three hosts see each other up with their load; one whose process dies
// (its broker gone, no goodbye) is reported down by the others within
// DownAfter and a heartbeat, at the default pace; one that stops cleanly
// is reported stopped.
func TestDeadHostReportedDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	var ms []*Member
	for i, node := range []string{"a", "b", "c"} {
		m, err := join(t, ctx, bs[i], node, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	poll(t, 10*time.Second, "a sees all three up", func() bool {
		n := 0
		for _, h := range ms[0].Status().Hosts {
			if h.State == StateUp {
				n++
			}
		}
		return n == 3
	})
	h, _ := hostState(ms[0], "c")
	if h.Load.Busy != 1 || h.Load.MemoryMB != 128 || h.API != "127.0.0.1:9000" || h.Protocol != Protocol || !h.Compatible {
		t.Fatalf("c as a sees it: %+v", h)
	}
	// c dies: its broker goes, its member never says goodbye.
	bs[2].Shutdown(ctx)
	killed := time.Now()
	took := poll(t, DefaultDownAfter+5*time.Second, "a reports c down", func() bool {
		h, ok := hostState(ms[0], "c")
		return ok && h.State == StateDown
	})
	t.Logf("a dead host was reported down after %s (heartbeat %s, down after %s)", took.Round(10*time.Millisecond), DefaultInterval, DefaultDownAfter)
	if took < DefaultDownAfter-DefaultInterval {
		t.Fatalf("c reported down after %s, before its heartbeats could have stopped for %s", took, DefaultDownAfter)
	}
	// b's view may lag a's by a heartbeat's read: it comes to the same.
	poll(t, 2*DefaultInterval, "b reports c down", func() bool {
		h, _ := hostState(ms[1], "c")
		return h.State == StateDown
	})
	if since := time.Since(killed); since < DefaultDownAfter-DefaultInterval {
		t.Fatalf("b reported c down after %s, before its heartbeats could have stopped for %s", since, DefaultDownAfter)
	}
	if h, _ := hostState(ms[0], "b"); h.State != StateUp {
		t.Fatalf("b is %s after c's death", h.State)
	}
	// b stops cleanly: stopped, at once.
	ms[1].Leave(ctx)
	poll(t, 5*time.Second, "a reports b stopped", func() bool {
		h, _ := hostState(ms[0], "b")
		return h.State == StateStopped
	})
}

// A host whose protocol range does not meet a live host's is refused; a
// rolling upgrade (N+1 that reads N) joins; a dead host's version does
// not matter.
func TestVersionCheckOnJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	short := func(c *Config) { c.Interval, c.DownAfter = 100*time.Millisecond, 500*time.Millisecond }
	if _, err := join(t, ctx, bs[0], "old", func(c *Config) { short(c); c.Protocol, c.MinProtocol, c.Version = 1, 1, "v1" }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		protocol, min int
		wantErr       error
	}{
		{"same", 1, 1, nil},
		{"next reading the old", 2, 1, nil},
		{"next without the old", 2, 2, ErrIncompatible},
		{"two ahead", 3, 2, ErrIncompatible},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := join(t, ctx, bs[1+i%2], fmt.Sprintf("new%d", i), func(c *Config) {
				short(c)
				c.Protocol, c.MinProtocol, c.Version = tt.protocol, tt.min, "vnew"
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("join: %v, want %v", err, tt.wantErr)
			}
			if m != nil {
				m.Leave(ctx) // stopped: its version no longer counts
			}
		})
	}
	// A dead host's version does not block: "old" stops beating (no
	// goodbye), and a protocol-2-only host joins once it is down.
	bs[0].Shutdown(ctx)
	poll(t, 30*time.Second, "a protocol-2-only host joins once the old one is down", func() bool {
		jctx, jcancel := context.WithTimeout(ctx, 3*time.Second)
		defer jcancel()
		_, err := join(t, jctx, bs[1], "late", func(c *Config) { short(c); c.Protocol, c.MinProtocol = 2, 2 })
		return err == nil
	})
}

// A drain set from any host reaches the drained host's gate, shows in
// every host's status (requested, then obeyed), survives the host's
// restart, and is cleared the same way; an unknown host cannot be
// drained.
func TestDrainReachesTheHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	short := func(c *Config) { c.Interval, c.DownAfter = 200*time.Millisecond, time.Second }
	a, err := join(t, ctx, bs[0], "a", short)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{}
	b, err := join(t, ctx, bs[1], "b", func(c *Config) { short(c); c.Gate = g })
	if err != nil {
		t.Fatal(err)
	}
	c, err := join(t, ctx, bs[2], "c", short)
	if err != nil {
		t.Fatal(err)
	}
	if d, n := g.get(); d || n != 0 {
		t.Fatalf("gate before any drain: %v after %d calls", d, n)
	}
	if err := a.Drain(ctx, "nope", true); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("drain of an unknown host: %v", err)
	}
	if err := a.Drain(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	took := poll(t, 5*time.Second, "b's gate drained", func() bool { d, _ := g.get(); return d })
	t.Logf("the drain reached b's gate after %s", took.Round(time.Millisecond))
	if !b.Draining() {
		t.Fatal("b does not say it is draining")
	}
	poll(t, 5*time.Second, "c sees b drain requested and obeyed", func() bool {
		h, _ := hostState(c, "b")
		return h.DrainRequested && h.Draining && h.State == StateUp
	})
	if h, _ := hostState(c, "a"); h.DrainRequested || h.Draining {
		t.Fatalf("a drained too: %+v", h)
	}
	// b restarts: it comes back drained before its first heartbeat.
	b.Leave(ctx)
	g2 := &gate{}
	b2, err := join(t, ctx, bs[1], "b", func(c *Config) { short(c); c.Gate = g2 })
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := g2.get(); !d || !b2.Draining() {
		t.Fatal("b restarted undrained")
	}
	if err := c.Drain(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "b's gate undrained", func() bool { d, _ := g2.get(); return !d })
	poll(t, 5*time.Second, "a sees b undrained", func() bool {
		h, _ := hostState(a, "b")
		return !h.DrainRequested && !h.Draining
	})
}

// A second live host with a taken name is refused; the name is free again
// once its holder's heartbeats stop.
func TestNodeNameTaken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	short := func(c *Config) { c.Interval, c.DownAfter = 100*time.Millisecond, 500*time.Millisecond }
	if _, err := join(t, ctx, bs[0], "a", short); err != nil {
		t.Fatal(err)
	}
	if _, err := join(t, ctx, bs[1], "a", short); !errors.Is(err, ErrNodeInUse) {
		t.Fatalf("a twin joined: %v", err)
	}
	// a's host dies without a goodbye: a new "a" waits its record out.
	bs[0].Shutdown(ctx)
	var err error
	poll(t, 30*time.Second, "a restarted host takes its name back", func() bool {
		jctx, jcancel := context.WithTimeout(ctx, 3*time.Second)
		defer jcancel()
		_, err = join(t, jctx, bs[1], "a", short)
		if errors.Is(err, ErrNodeInUse) {
			t.Fatalf("the dead host's name is still in use: %v", err)
		}
		return err == nil
	})
}

// Ahead (hearth serve's hidden --test-protocol-ahead) makes a host act as
// a newer release: one step ahead joins today's hosts and they call it
// compatible; two or more steps ahead is refused, naming both ranges.
func TestAheadActsAsANewerRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	short := func(c *Config) { c.Interval, c.DownAfter = 100*time.Millisecond, 500*time.Millisecond }
	today, err := join(t, ctx, bs[0], "today", short)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		ahead         int
		wantErr       error
		protocol, min int
	}{
		{"the next release", 1, nil, Protocol + 1, Protocol},
		{"two ahead", 2, ErrIncompatible, 0, 0},
		{"three ahead", 3, ErrIncompatible, 0, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := fmt.Sprintf("ahead%d", i)
			m, err := join(t, ctx, bs[1+i%2], node, func(c *Config) { short(c); c.Ahead = tt.ahead })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("join: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if want := fmt.Sprintf("this one (%s+ahead%d) %d..%d", BinaryVersion(), tt.ahead, Protocol+tt.ahead-1, Protocol+tt.ahead); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
				return
			}
			defer m.Leave(ctx)
			poll(t, 10*time.Second, "today's host sees "+node, func() bool {
				for _, h := range today.Status().Hosts {
					if h.Node == node {
						return h.Protocol == tt.protocol && h.MinProtocol == tt.min && h.Compatible &&
							h.Version == BinaryVersion()+fmt.Sprintf("+ahead%d", tt.ahead)
					}
				}
				return false
			})
		})
	}
}

// A host that begins a clean stop is reported stopping by the others at
// once (not at its next heartbeat), and by itself; it stays stopping while
// it keeps beating, and is stopped after Leave.
func TestStoppingHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	// Heartbeats slower than the poll below: the others see the stop
	// from Stopping's own write.
	slow := func(c *Config) { c.Interval, c.DownAfter = 10*time.Second, 40*time.Second }
	a, err := join(t, ctx, bs[0], "a", slow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := join(t, ctx, bs[1], "b", slow)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "a sees b up", func() bool {
		h, ok := hostState(a, "b")
		return ok && h.State == StateUp
	})
	b.Stopping(ctx)
	if h, _ := hostState(b, "b"); h.State != StateStopping {
		t.Errorf("b sees itself %s, want stopping", h.State)
	}
	poll(t, 3*time.Second, "a reports b stopping", func() bool {
		h, _ := hostState(a, "b")
		return h.State == StateStopping && h.Stopping
	})
	b.Leave(ctx)
	poll(t, 5*time.Second, "a reports b stopped", func() bool {
		h, _ := hostState(a, "b")
		return h.State == StateStopped
	})
}

// AllSpeak is false until the hosts' records were read, and then only
// when every known host, stopped ones included, speaks the protocol.
func TestAllSpeak(t *testing.T) {
	for _, tt := range []struct {
		name   string
		viewed bool
		self   int
		others []Host
		want   bool
	}{
		{name: "not yet viewed", viewed: false, self: 3, want: false},
		{name: "alone", viewed: true, self: 3, want: true},
		{name: "all new", viewed: true, self: 3, others: []Host{{Node: "b", Protocol: 3}, {Node: "c", Protocol: 4}}, want: true},
		{name: "one old", viewed: true, self: 3, others: []Host{{Node: "b", Protocol: 3}, {Node: "c", Protocol: 2}}, want: false},
		{name: "one old, stopped", viewed: true, self: 3, others: []Host{{Node: "c", Protocol: 2, Stopped: true}}, want: false},
		{name: "this one old", viewed: true, self: 2, want: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &Member{cfg: Config{Protocol: tt.self}, seen: map[string]seen{}, viewed: tt.viewed}
			for _, h := range tt.others {
				m.seen[h.Node] = seen{host: h}
			}
			if got := m.AllSpeak(3); got != tt.want {
				t.Errorf("AllSpeak(3) = %v, want %v", got, tt.want)
			}
		})
	}
}
