// Package cluster is Hearth's host membership: every host of a cluster
// heartbeats its record (version, addresses, load, whether it obeys a
// drain) into a replicated JetStream key-value bucket, watches the others'
// and reports those whose heartbeats stopped as down; a drain is a key in
// a second bucket that the drained host watches. JetStream's Raft keeps
// the buckets: Hearth runs no consensus of its own.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hearthdev/hearth/internal/broker"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Protocol is the version of what hosts tell each other (these records,
// and the forwarded invocations). A host speaks Protocol and understands
// every version from MinProtocol up: a host joins only when every live
// host's range and its own meet, so that a rolling upgrade (N+1 that
// still reads N) keeps serving, and a host two versions apart is refused.
//
// 2: hosts answer forwarded invocations and tell their load by function;
// a host of protocol 1 is never sent one (ForwardProtocol).
// 3: hosts apply the configuration log's checkpoints; none is written
// while a host of an older protocol is known (CheckpointProtocol).
const (
	Protocol    = 3
	MinProtocol = 1
)

// CheckpointProtocol is the first protocol whose hosts apply checkpoints
// of the configuration log (a host before it would skip the entries a
// checkpoint's purge removed).
const CheckpointProtocol = 3

// ForwardProtocol is the first protocol whose hosts answer invocations
// forwarded to them.
const ForwardProtocol = 2

// The buckets.
const (
	HostsBucket  = "hearth_hosts"
	DrainsBucket = "hearth_drains"
)

// Defaults: a heartbeat every second, and a host whose last one is four
// seconds old is down (three missed beats and a margin for a slow put).
const (
	DefaultInterval  = time.Second
	DefaultDownAfter = 4 * time.Second
	// forgetAfter drops the record of a host gone this long (the hosts
	// bucket's TTL): a host removed for good leaves the status a day
	// later.
	forgetAfter = 24 * time.Hour
)

// Errors.
var (
	ErrIncompatible = errors.New("incompatible protocol version")
	ErrNodeInUse    = errors.New("node name in use by a live host")
	ErrUnknownHost  = errors.New("no such host in the cluster")
)

// Load is what a host carries, for status and placement.
type Load struct {
	Busy      int `json:"busy"`
	Warm      int `json:"warm"`
	Paused    int `json:"paused"`
	Suspended int `json:"suspended"`
	// MemoryMB is the guest memory committed to environments holding a
	// VMM; MemoryLimitMB the host's bound on it.
	MemoryMB      int `json:"memoryMB"`
	MemoryLimitMB int `json:"memoryLimitMB"`
	// InFlight counts the invocations running.
	InFlight int `json:"inFlight"`
	// MicroVMs counts the MicroVMs running on the host.
	MicroVMs int `json:"microVMs"`
	// Functions counts the environments of each function the host has
	// any of, for placement: a warm one here beats a cold start there.
	Functions map[string]FunctionLoad `json:"functions,omitempty"`
	// Ready is what the host has ready for a cold start (ready.go): a
	// host that must fetch and build a function's code or root first
	// starts it seconds later.
	Ready *Ready `json:"ready,omitempty"`
	// CPU is the share of the host's CPU time that was busy lately (0 to
	// 1, all its cores together); 0 when unknown.
	CPU float64 `json:"cpu,omitempty"`
}

// FunctionLoad is a host's environments of one function, by state.
type FunctionLoad struct {
	Busy      int `json:"busy,omitempty"`
	Warm      int `json:"warm,omitempty"`
	Paused    int `json:"paused,omitempty"`
	Suspended int `json:"suspended,omitempty"`
}

// Host is the record a host heartbeats.
type Host struct {
	Node        string   `json:"node"`
	Instance    string   `json:"instance"` // this process's, to tell a restart from a twin
	Protocol    int      `json:"protocol"`
	MinProtocol int      `json:"minProtocol"`
	Version     string   `json:"version"`
	API         string   `json:"api,omitempty"`
	URLs        []string `json:"urls,omitempty"`
	Load        Load     `json:"load"`
	// Draining is set while the host obeys a drain (takes no new work).
	Draining bool `json:"draining"`
	// Drain is how its move of suspended environments goes, while it
	// obeys a drain.
	Drain *DrainProgress `json:"drain,omitempty"`
	// Stopping is set from the start of a clean shutdown: the host
	// finishes what it has (invocations in flight, forwarded ones
	// included) and should be sent nothing new.
	Stopping bool `json:"stopping,omitempty"`
	// Stopped is the last record of a host shut down cleanly.
	Stopped bool      `json:"stopped,omitempty"`
	Started time.Time `json:"started"`
	Beat    time.Time `json:"beat"`
}

// LoadSource is where a host's load comes from (the server's scheduler).
type LoadSource interface {
	Load() Load
}

// Gate is what a drain switches on this host: while draining it takes no
// new work. The server implements it over its scheduler and workers.
type Gate interface {
	SetDraining(draining bool)
}

// Config is a member's.
type Config struct {
	JetStream jetstream.JetStream
	// Replicas is the buckets' replica count (broker.Replicas).
	Replicas int
	// Cluster names the cluster, for status.
	Cluster string
	Node    string
	// API and URLs are this host's addresses, told to the others.
	API  string
	URLs []string
	// Version is the binary's; BinaryVersion() when empty. Protocol and
	// MinProtocol are the constants when zero (tests set others).
	Version               string
	Protocol, MinProtocol int
	// Ahead, when not zero, makes this host act as a release Ahead
	// protocol versions newer than this binary (older when negative): it
	// speaks Protocol+Ahead, reads from the version before that, and
	// reports its version with "+ahead<N>". A testing aid only (hearth
	// serve's hidden --test-protocol-ahead): a rolling upgrade, and a
	// host refused for being two versions apart, are tested end to end
	// without a second binary. Protocol and MinProtocol, when set, win.
	Ahead int
	Load  LoadSource
	Gate  Gate
	// Progress is a drain's, told in the heartbeats (progress.go).
	Progress ProgressSource
	// Interval is the heartbeats'; DownAfter how old a host's last one is
	// when it is reported down.
	Interval, DownAfter time.Duration
	Log                 *slog.Logger
}

// seen is a host's last record and when this member received it (its own
// monotonic clock: hosts' clocks need not agree).
type seen struct {
	host Host
	at   time.Time
	rev  uint64 // the bucket's revision of the record
}

// Member is this host in the cluster.
type Member struct {
	cfg    Config
	hosts  jetstream.KeyValue
	drains jetstream.KeyValue
	self   Host

	mu   sync.Mutex
	seen map[string]seen
	// viewed: the hosts' records as they were at the watch's start are
	// all in seen.
	viewed   bool
	drained  map[string]bool // drain flags, by node
	draining bool            // this host obeys a drain
	// beatLast is when the last heartbeat written was begun; beatSince
	// when the first of the unbroken run of written ones was (zero after
	// a failed one). Slots fence on them.
	beatLast, beatSince time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Join checks that this host may join (its protocol meets every live
// host's, and no live host has its name), publishes its first heartbeat,
// and keeps heartbeating and watching until Leave.
func Join(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.JetStream == nil || cfg.Node == "" {
		return nil, errors.New("cluster: a JetStream and a node name are needed")
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = DefaultDownAfter
	}
	if cfg.Protocol == 0 {
		cfg.Protocol, cfg.MinProtocol = Protocol, MinProtocol
		if cfg.Ahead != 0 {
			cfg.Protocol, cfg.MinProtocol = max(1, Protocol+cfg.Ahead), max(1, Protocol+cfg.Ahead-1)
		}
	}
	if cfg.MinProtocol == 0 || cfg.MinProtocol > cfg.Protocol {
		cfg.MinProtocol = cfg.Protocol
	}
	if cfg.Version == "" {
		cfg.Version = BinaryVersion()
		if cfg.Ahead != 0 {
			cfg.Version += fmt.Sprintf("+ahead%d", cfg.Ahead)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var hosts, drains jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) (err error) {
		hosts, err = cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: HostsBucket,
			Description: "Hearth hosts' heartbeats", History: 1, TTL: forgetAfter, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: hosts bucket: %w", err)
	}
	err = retry(ctx, func(ctx context.Context) (err error) {
		drains, err = cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DrainsBucket,
			Description: "Hearth hosts drained", History: 1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: drains bucket: %w", err)
	}
	inst := make([]byte, 8)
	if _, err := rand.Read(inst); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	m := &Member{cfg: cfg, hosts: hosts, drains: drains, seen: map[string]seen{}, drained: map[string]bool{},
		self: Host{Node: cfg.Node, Instance: hex.EncodeToString(inst), Protocol: cfg.Protocol, MinProtocol: cfg.MinProtocol,
			Version: cfg.Version, API: cfg.API, URLs: cfg.URLs, Started: now}}
	if err := m.admit(ctx); err != nil {
		return nil, err
	}
	// The drain flag is read before the first heartbeat, so that a host
	// drained before a restart comes back drained.
	err = retry(ctx, func(ctx context.Context) error {
		e, err := drains.Get(ctx, cfg.Node)
		switch {
		case err == nil:
			m.drained[cfg.Node] = isDrained(e.Value())
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: drain flag: %w", err)
	}
	m.obey(m.drained[cfg.Node])
	begun := time.Now()
	if err := retry(ctx, m.beat); err != nil {
		return nil, fmt.Errorf("cluster: first heartbeat: %w", err)
	}
	m.beaten(begun, nil)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	hw, err := hosts.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: watching hosts: %w", err)
	}
	dw, err := drains.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: watching drains: %w", err)
	}
	m.wg.Add(3)
	go m.watchHosts(wctx, hw)
	go m.watchDrains(wctx, dw)
	go m.heartbeat(wctx)
	cfg.Log.Info("joined the cluster", "cluster", cfg.Cluster, "node", cfg.Node, "protocol", cfg.Protocol, "version", cfg.Version, "replicas", cfg.Replicas)
	return m, nil
}

// joinTimeout bounds Join's JetStream calls: a request that met a leader
// election is lost, not failed, and is tried again.
const joinTimeout = 30 * time.Second

// retry runs f, each try bounded, until it succeeds, ctx ends, or
// joinTimeout passes.
func retry(ctx context.Context, f func(context.Context) error) error {
	return broker.RetryFor(ctx, joinTimeout, f)
}

// admit refuses to join when a live host's protocol range and this one's
// do not meet, or a live host has this name. A record of this name that is
// not beating (a crash just before) is waited out: up to DownAfter.
func (m *Member) admit(ctx context.Context) error {
	deadline := time.Now().Add(m.cfg.DownAfter + m.cfg.Interval)
	for {
		twin := false
		var entries []seen
		err := retry(ctx, func(ctx context.Context) (err error) {
			entries, err = m.records(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("cluster: reading the hosts: %w", err)
		}
		for _, e := range entries {
			h := e.host
			if h.Stopped || time.Since(e.at) > m.cfg.DownAfter {
				continue
			}
			if h.Protocol < m.cfg.MinProtocol || m.cfg.Protocol < h.MinProtocol {
				return fmt.Errorf("cluster: %w: host %s (%s) speaks protocol %d..%d, this one (%s) %d..%d; upgrade one version at a time",
					ErrIncompatible, h.Node, h.Version, h.MinProtocol, h.Protocol, m.cfg.Version, m.cfg.MinProtocol, m.cfg.Protocol)
			}
			if h.Node == m.cfg.Node {
				twin = true
			}
		}
		if !twin {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %w: %s still heartbeats", ErrNodeInUse, m.cfg.Node)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.cfg.Interval / 2):
		}
	}
}

// records reads every host record from the bucket, dated by the server's
// time of its last heartbeat.
func (m *Member) records(ctx context.Context) ([]seen, error) {
	keys, err := m.hosts.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []seen
	for k := range keys.Keys() {
		e, err := m.hosts.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, err
		}
		var h Host
		if json.Unmarshal(e.Value(), &h) != nil {
			continue
		}
		out = append(out, seen{host: h, at: e.Created()})
	}
	return out, nil
}

// obey switches the gate when the drain flag of this host changes.
func (m *Member) obey(draining bool) {
	m.mu.Lock()
	changed := m.draining != draining
	m.draining = draining
	m.mu.Unlock()
	if !changed {
		return
	}
	if m.cfg.Gate != nil {
		m.cfg.Gate.SetDraining(draining)
	}
	if draining {
		m.cfg.Log.Warn("this host is drained: it takes no new work", "node", m.cfg.Node)
	} else {
		m.cfg.Log.Info("this host is no longer drained", "node", m.cfg.Node)
	}
}

// Draining reports whether this host obeys a drain.
func (m *Member) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining
}

// SetAddrs sets the API and function-URL addresses this host tells the
// others (once it listens).
func (m *Member) SetAddrs(api string, urls []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.self.API, m.self.URLs = api, slices.Clone(urls)
}

// beat puts this host's record.
func (m *Member) beat(ctx context.Context) error {
	m.mu.Lock()
	h := m.self
	m.mu.Unlock()
	if m.cfg.Load != nil {
		h.Load = m.cfg.Load.Load()
	}
	h.Draining = m.Draining()
	if m.cfg.Progress != nil && h.Draining {
		h.Drain = m.cfg.Progress.DrainProgress()
	}
	h.Beat = time.Now().UTC()
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = m.hosts.Put(ctx, m.cfg.Node, b)
	return err
}

func (m *Member) heartbeat(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, m.cfg.Interval*2)
		begun := time.Now()
		err := m.beat(bctx)
		m.beaten(begun, err)
		m.refresh(bctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			// Cut off from a quorum: the others will report this host
			// down; it says so once, and again when it is back.
			m.cfg.Log.Warn("heartbeat failed: the other hosts will see this one down", "err", err)
			failing = true
		case err == nil && failing:
			m.cfg.Log.Info("heartbeats reach the cluster again")
			failing = false
		}
	}
}

// beaten notes a heartbeat begun at begun, written unless err.
func (m *Member) beaten(begun time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.beatSince = time.Time{}
		return
	}
	if m.beatSince.IsZero() {
		m.beatSince = begun
	}
	m.beatLast = begun
}

// Heartbeats returns when the last heartbeat this host wrote was begun,
// and when the first of the unbroken run of written heartbeats ending
// with it was: the others receive each after it was begun, so a host
// whose last one is DownAfter old knows they may call it down.
func (m *Member) Heartbeats() (last, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.beatLast, m.beatSince
}

// host is one host's status as this member sees it.
func (m *Member) host(node string) (HostStatus, bool) {
	for _, h := range m.Status().Hosts {
		if h.Node == node {
			return h, true
		}
	}
	return HostStatus{}, false
}

// refresh reads the known hosts' records directly (any replica answers):
// the watcher's consumer lives on one server, and when that server dies
// the watcher is silent until the client notices (several seconds),
// while the records keep changing on the others.
func (m *Member) refresh(ctx context.Context) {
	m.mu.Lock()
	nodes := make([]string, 0, len(m.seen))
	for n := range m.seen {
		nodes = append(nodes, n)
	}
	m.mu.Unlock()
	for _, n := range nodes {
		e, err := m.hosts.Get(ctx, n)
		if err != nil {
			continue
		}
		var h Host
		if json.Unmarshal(e.Value(), &h) != nil {
			continue
		}
		m.mu.Lock()
		if e.Revision() > m.seen[n].rev {
			m.seen[n] = seen{host: h, at: time.Now(), rev: e.Revision()}
		}
		m.mu.Unlock()
	}
	// This host's drain flag too, for the same reason.
	e, err := m.drains.Get(ctx, m.cfg.Node)
	switch {
	case err == nil:
		on := isDrained(e.Value())
		m.mu.Lock()
		m.drained[m.cfg.Node] = on
		m.mu.Unlock()
		m.obey(on)
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		m.mu.Lock()
		m.drained[m.cfg.Node] = false
		m.mu.Unlock()
		m.obey(false)
	}
}

func (m *Member) watchHosts(ctx context.Context, w jetstream.KeyWatcher) {
	defer m.wg.Done()
	defer w.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				initial = false
				m.mu.Lock()
				m.viewed = true
				m.mu.Unlock()
				continue
			}
			m.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(m.seen, e.Key())
				m.mu.Unlock()
				continue
			}
			var h Host
			if json.Unmarshal(e.Value(), &h) == nil {
				// What was there before this member watched is dated by
				// the server; every later beat by its arrival here.
				at := time.Now()
				if initial {
					at = e.Created()
				}
				if e.Revision() > m.seen[e.Key()].rev {
					m.seen[e.Key()] = seen{host: h, at: at, rev: e.Revision()}
				}
			}
			m.mu.Unlock()
		}
	}
}

func (m *Member) watchDrains(ctx context.Context, w jetstream.KeyWatcher) {
	defer m.wg.Done()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			on := e.Operation() == jetstream.KeyValuePut && isDrained(e.Value())
			m.mu.Lock()
			m.drained[e.Key()] = on
			m.mu.Unlock()
			if e.Key() == m.cfg.Node {
				m.obey(on)
			}
		}
	}
}

// drainFlag is a drain key's value.
type drainFlag struct {
	Draining bool      `json:"draining"`
	At       time.Time `json:"at"`
	By       string    `json:"by"` // the host that took the request
}

func isDrained(v []byte) bool {
	var f drainFlag
	return json.Unmarshal(v, &f) == nil && f.Draining
}

// Drain sets (or, with on false, clears) a host's drain flag; the host
// obeys it within a heartbeat or so.
func (m *Member) Drain(ctx context.Context, node string, on bool) error {
	m.mu.Lock()
	_, known := m.seen[node]
	m.mu.Unlock()
	if !known {
		if _, err := m.hosts.Get(ctx, node); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
				return fmt.Errorf("cluster: %w: %s", ErrUnknownHost, node)
			}
			return fmt.Errorf("cluster: %w", err)
		}
	}
	b, err := json.Marshal(drainFlag{Draining: on, At: time.Now().UTC(), By: m.cfg.Node})
	if err != nil {
		return err
	}
	if _, err := m.drains.Put(ctx, node, b); err != nil {
		return fmt.Errorf("cluster: drain %s: %w", node, err)
	}
	return nil
}

// HostStatus is a host as this member sees it.
type HostStatus struct {
	Host
	// State is up, down (heartbeats stopped) or stopped (shut down
	// cleanly).
	State string `json:"state"`
	// DrainRequested is the drain flag; Draining (in Host) says whether
	// the host obeys it yet.
	DrainRequested bool `json:"drainRequested"`
	// LastSeenSeconds is how long ago this member received the host's
	// last heartbeat.
	LastSeenSeconds float64 `json:"lastSeenSeconds"`
	Compatible      bool    `json:"compatible"`
}

// Status is the cluster as one member sees it.
type Status struct {
	Cluster  string       `json:"cluster"`
	Node     string       `json:"node"` // the host that answered
	Protocol int          `json:"protocol"`
	Replicas int          `json:"replicas"`
	Hosts    []HostStatus `json:"hosts"`
	// ViewLagSeconds is how far behind this member's view is (its own
	// last heartbeat's age past one interval).
	ViewLagSeconds float64   `json:"viewLagSeconds"`
	Time           time.Time `json:"time"`
}

// The states.
const (
	StateUp      = "up"
	StateDown    = "down"
	StateStopped = "stopped"
	// StateStopping: shutting down cleanly; it finishes what it has but
	// takes nothing new (routers and load balancers leave it out).
	StateStopping = "stopping"
	// StateUnknown: this member's own heartbeats have not come back for
	// DownAfter; it cannot tell the others' state.
	StateUnknown = "unknown"
)

// Status reports every host this member has seen. A host is down when
// its last heartbeat reached this member DownAfter before this member's
// own last one did: its own heartbeats, which travel the same way, say
// how current this member's view is. So a pause of the whole bucket (a
// leader election after a host's loss, when no heartbeat arrives for a
// few seconds) does not make every host look down; and a member whose
// own heartbeats stopped coming back (cut off from the quorum) reports
// the others unknown rather than down.
func (m *Member) Status() Status {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Cluster: m.cfg.Cluster, Node: m.cfg.Node, Protocol: m.cfg.Protocol, Replicas: m.cfg.Replicas, Time: now.UTC()}
	var lag time.Duration
	if self, ok := m.seen[m.cfg.Node]; ok {
		// A heartbeat every Interval: up to one Interval old is current.
		lag = max(0, now.Sub(self.at)-m.cfg.Interval)
	}
	st.ViewLagSeconds = lag.Seconds()
	for node, s := range m.seen {
		age := now.Sub(s.at)
		hs := HostStatus{Host: s.host, State: StateUp, DrainRequested: m.drained[node], LastSeenSeconds: age.Seconds(),
			Compatible: s.host.Protocol >= m.cfg.MinProtocol && m.cfg.Protocol >= s.host.MinProtocol}
		switch {
		case s.host.Stopped:
			hs.State = StateStopped
		case node == m.cfg.Node && m.self.Stopping:
			hs.State = StateStopping
		case node == m.cfg.Node:
		case lag > m.cfg.DownAfter:
			hs.State = StateUnknown
		case age-lag > m.cfg.DownAfter:
			hs.State = StateDown
		case s.host.Stopping:
			hs.State = StateStopping
		}
		st.Hosts = append(st.Hosts, hs)
	}
	slices.SortFunc(st.Hosts, func(a, b HostStatus) int { return strings.Compare(a.Node, b.Node) })
	return st
}

// Stopping tells the other hosts that this one is shutting down cleanly,
// at once (not at the next heartbeat): they show it stopping and send it
// no new invocation, while it finishes those it has. Heartbeats go on
// (with the flag) until Leave.
func (m *Member) Stopping(ctx context.Context) {
	m.mu.Lock()
	m.self.Stopping = true
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, leaveWait)
	defer cancel()
	if err := m.beat(ctx); err != nil {
		m.cfg.Log.Warn("telling the cluster this host stops", "err", err)
	}
}

// leaveWait bounds Leave's record of the stop.
const leaveWait = 3 * time.Second

// Leave stops heartbeating and watching, and records that this host
// stopped cleanly (so it shows as stopped, not down).
func (m *Member) Leave(ctx context.Context) {
	m.cancel()
	// Bounded too: a watcher's Stop deletes its consumer with a request
	// that, with the quorum gone, waits on nats.go's own timeouts.
	stopped := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(leaveWait):
		m.cfg.Log.Warn("membership: heartbeats and watchers did not stop in time; leaving without them")
	}
	m.mu.Lock()
	h := m.self
	m.mu.Unlock()
	h.Stopped, h.Beat = true, time.Now().UTC()
	h.Draining = m.Draining()
	// Best effort, and short: with the bucket's quorum gone (the other
	// hosts stopping too) the write would hold the daemon's whole
	// shutdown; without it the host shows as down, not stopped.
	ctx, cancel := context.WithTimeout(ctx, leaveWait)
	defer cancel()
	if b, err := json.Marshal(h); err == nil {
		if _, err := m.hosts.Put(ctx, m.cfg.Node, b); err != nil {
			m.cfg.Log.Warn("recording this host's stop", "err", err)
		}
	}
}

// BinaryVersion is this binary's module version and VCS revision.
func BinaryVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "-dirty"
		}
	}
	return v
}

// AllSpeak reports whether every host this one knows of — up, down or
// stopped, for a stopped host may start again with its old binary — speaks
// protocol p or later.
func (m *Member) AllSpeak(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.viewed || m.cfg.Protocol < p {
		return false
	}
	for _, s := range m.seen {
		if s.host.Protocol < p {
			return false
		}
	}
	return true
}
