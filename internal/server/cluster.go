package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// ClusterOptions make the daemon one host of several: its embedded NATS
// routes to the others' (Name, Node, Listen, Routes), or it uses an
// existing NATS (NATS); either way it joins the membership (package
// cluster). Zero: standalone, as before.
type ClusterOptions struct {
	// Name is the cluster's; Node this host's (unique).
	Name, Node string
	// Listen is the routes' address; Routes the other hosts'
	// (nats://host:port).
	Listen string
	Routes []string
	// Secret, when set, authenticates the routes (the same on every host).
	Secret string
	// NATS is an existing NATS's URL to use instead of an embedded one
	// (Node is still needed; Name, Listen and Routes are not).
	NATS string
	// Interval and DownAfter pace the heartbeats (cluster's defaults when
	// zero).
	Interval, DownAfter time.Duration
	// ProtocolAhead makes the host act as a release that many protocol
	// versions newer (cluster.Config.Ahead): a testing aid for rolling
	// upgrades, never for production.
	ProtocolAhead int
}

// enabled reports whether the daemon runs as a host of a cluster.
func (o ClusterOptions) enabled() bool { return o.Name != "" || o.NATS != "" }

// brokerConfig is the broker's configuration: standalone, clustered, or
// an external NATS.
func (s *Server) brokerConfig() broker.Config {
	cfg := broker.Config{Dir: JetStreamDir(s.cfg.DataDir), Log: s.log}
	o := s.cfg.Cluster
	switch {
	case o.NATS != "":
		cfg.URL = o.NATS
	case o.Name != "":
		cfg.Cluster = &broker.Cluster{Name: o.Name, Node: o.Node, Listen: o.Listen, Routes: o.Routes, Secret: o.Secret}
	}
	return cfg
}

// joinCluster joins the membership once the broker is up: before the
// daemon makes its streams or serves, so that a host the cluster's
// version refuses changes nothing.
func (s *Server) joinCluster(ctx context.Context) error {
	o := s.cfg.Cluster
	if !o.enabled() {
		return nil
	}
	if !broker.ValidNode(o.Node) {
		return fmt.Errorf("cluster: node name %q: letters, digits, - and _ only (--node)", o.Node)
	}
	name := o.Name
	if name == "" {
		name = "external"
	}
	s.drain = &drainGate{}
	s.load = &hostLoad{sched: s.sched, ready: &cluster.ReadySet{}, cpu: &cpuMeter{}}
	s.moves = newMover(s, o.Node)
	m, err := cluster.Join(ctx, cluster.Config{JetStream: s.broker.JetStream(), Replicas: s.broker.Replicas(), Cluster: name, Node: o.Node,
		Load: s.load, Gate: s.drain, Progress: s.moves, Ahead: o.ProtocolAhead, Interval: o.Interval, DownAfter: o.DownAfter, Log: s.log})
	if err != nil {
		return err
	}
	s.member = m
	if err := s.openSlots(ctx); err != nil {
		return err
	}
	return s.openMeterLog(ctx)
}

// announce tells the other hosts this one's addresses, once it listens.
func (s *Server) announce() {
	if s.member != nil {
		s.load.microvms.Store(s.microvms)
		s.member.SetAddrs(s.Addr(), s.urlAddrs)
	}
}

// stopping begins a clean stop in a cluster: the other hosts are told at
// once (they route nothing new here, and `hearth cluster status` shows the
// host stopping), and the host keeps serving a grace of two heartbeats so
// that the others' routers and clients that follow the cluster's status
// (a load balancer) turn away before its listeners close. Without it a
// call sent in that moment is refused, or lost on a keep-alive
// connection the server closes as idle.
func (s *Server) stopping(ctx context.Context) {
	if s.member == nil {
		return
	}
	s.member.Stopping(ctx)
	grace := 2 * s.cfg.Cluster.Interval
	if grace <= 0 {
		grace = 2 * cluster.DefaultInterval
	}
	select {
	case <-ctx.Done():
	case <-time.After(grace):
	}
}

// leaveCluster records a clean stop, before the broker goes.
func (s *Server) leaveCluster(ctx context.Context) {
	s.closeSlots(ctx)
	s.closeMeterLog()
	// Also on New's failure paths, which end in closeBroker too.
	s.clusterKeys.stop()
	if s.member != nil {
		s.member.Leave(ctx)
		s.member = nil
	}
}

// clusterAPI is the membership for the API; nil standalone (a nil
// *cluster.Member in the interface would not be).
func (s *Server) clusterAPI() api.Cluster {
	if s.member == nil {
		return nil
	}
	return s.member
}

// Member is this host's membership; nil standalone.
func (s *Server) Member() *cluster.Member { return s.member }

// drainGate is what a drain switches on this host: while it is set, the
// scheduler (through drainingScheduler) starts no new environment, so
// this host serves only from the environments it has (warm, paused or
// suspended) and other hosts take the new work.
type drainGate struct {
	on atomic.Bool
	// gen counts the changes, so that the mover tells a new drain from
	// the one before even when it missed the undo between.
	gen atomic.Uint64
}

func (g *drainGate) SetDraining(d bool) {
	if g.on.Swap(d) != d {
		g.gen.Add(1)
	}
}

func (g *drainGate) draining() bool { return g != nil && g.on.Load() }

// ErrDrainingReason is the throttle reason a drained host answers a cold
// start with (a 429: the caller, or the routing to come, tries another
// host; an asynchronous event waits and is retried).
const ErrDrainingReason = "HostDraining"

// drainingScheduler refuses, while the host is drained, an acquire that
// would start a new environment: a function with none warm, paused or
// suspended here. (Per function, not per revision: an environment of an
// older revision may let a cold start of a newer one through.)
type drainingScheduler struct {
	*scheduler.Scheduler
	gate *drainGate
}

func (d drainingScheduler) Acquire(ctx context.Context, fn scheduler.Function) (*scheduler.Lease, error) {
	if d.gate.draining() {
		st := d.StatsByFunction()[fn.Name]
		if st.Warm+st.Paused+st.Suspended == 0 {
			return nil, lambdaerr.TooManyRequests(ErrDrainingReason, "this host is drained (hearth cluster drain): it starts no new environment for %s", fn.Name)
		}
	}
	return d.Scheduler.Acquire(ctx, fn)
}

// invokeScheduler is the scheduler the invocation path uses: gated by
// drains in a cluster.
func (s *Server) invokeScheduler() invoke.Scheduler {
	if s.drain == nil {
		return s.sched
	}
	// An image function's root is this host's copy (roots_cluster.go).
	return rootsScheduler{Scheduler: drainingScheduler{Scheduler: s.sched, gate: s.drain}, s: s}
}

// hostLoad is this host's load for its heartbeats, which start before
// the MicroVMs' manager exists (announce gives it).
type hostLoad struct {
	sched    *scheduler.Scheduler
	microvms atomic.Pointer[microvm.Manager]
	// What it has ready for a cold start, and its CPU (placement.go).
	ready *cluster.ReadySet
	cpu   *cpuMeter
}

func (h *hostLoad) Load() cluster.Load {
	var l cluster.Load
	st := h.sched.Stats()
	u := h.sched.Usage()
	l.Busy, l.Warm, l.Paused, l.Suspended = st.Busy, st.Warm, st.Paused, st.Suspended
	l.InFlight = st.Busy
	l.MemoryMB, l.MemoryLimitMB = u.MemoryMB, u.Limits.MaxMemoryMB
	l.Functions = functionLoads(h.sched.StatsByFunction())
	l.Ready, l.CPU = h.ready.Ready(), h.cpu.Share()
	if mv := h.microvms.Load(); mv != nil {
		for _, ms := range mv.StatsByImage() {
			l.MicroVMs += ms.Running
		}
	}
	return l
}
