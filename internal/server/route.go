package server

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// Routing between the hosts of a cluster: any host takes any invocation,
// and the invocation path (invoke.Forwarder) asks the router whether
// another host is better placed to run it — one with a warm environment
// of the function, then a paused or a suspended one (snapshots stay on
// their host), then, for a cold start, the least loaded. The router sends
// it there over NATS request/reply on the subject of that host's node;
// the host runs it through its own invocation path (never forwarding it
// again) and answers its Result. A message is at most the NATS server's
// max_payload (1 MB by default), so a request or an answer of up to 6 MB
// goes in parts.

// routeSubject is where a host takes the invocations forwarded to it.
func routeSubject(node string) string { return "hearth.invoke." + node }

// The message headers of a forwarded call.
const (
	hdrCall = "Hearth-Call" // the call's id (a part of which call)
	hdrPart = "Hearth-Part" // "i/n": this message is part i of n
	hdrKind = "Hearth-Kind" // an answer's: ack or result
	kindAck = "ack"
	kindRes = "result"
)

// Bounds of the wire.
const (
	// routeWire is the format of what is sent; a host refuses another.
	routeWire = 1
	// maxCallBytes bounds a request or an answer: a 6 MB payload (or
	// error object) and its description.
	maxCallBytes = guestproto.MaxResponseBytes + 256<<10
	// maxPendingCalls bounds the calls whose parts are still coming in.
	maxPendingCalls = 256
	// partsTimeout is how long a call's parts may take to all arrive.
	partsTimeout = 30 * time.Second
	// ackTimeout is how long the caller waits for the host to say it has
	// the whole call before running it here instead.
	ackTimeout = 5 * time.Second
	// answerMargin is how long past the function's timeout the caller
	// waits for the answer (a boot waiting for its turn, a resume).
	answerMargin = 2 * time.Minute
	// configWait bounds how long a host waits to have applied the
	// configuration the caller had, before running the call.
	configWait = 10 * time.Second
)

// wireRequest describes a forwarded invocation; its payload follows it.
type wireRequest struct {
	V             int    `json:"v"`
	From          string `json:"from"`
	Function      string `json:"function"`
	Qualifier     string `json:"qualifier,omitempty"`
	RequestID     string `json:"requestId"`
	ClientContext string `json:"clientContext,omitempty"`
	TraceID       string `json:"traceId,omitempty"`
	// ConfigSeq is the configuration log entry the caller had applied:
	// the host runs the call once it has it too, so that both see the
	// same revision.
	ConfigSeq uint64 `json:"configSeq"`
}

// wireResult is a forwarded invocation's answer; its payload follows it.
type wireResult struct {
	V         int                     `json:"v"`
	Node      string                  `json:"node"`
	RequestID string                  `json:"requestId,omitempty"`
	Version   string                  `json:"version,omitempty"`
	Error     *guestproto.ErrorObject `json:"error,omitempty"`
	StartType sandbox.StartType       `json:"startType,omitempty"`
	LogTail   []byte                  `json:"logTail,omitempty"`
	// HasResult is whether there is a Result (there may be one and a Go
	// error both, as the invocation path returns them).
	HasResult bool       `json:"hasResult"`
	Err       *wireError `json:"err,omitempty"`
}

// wireError is the platform's error: Lambda's shape when it has one.
type wireError struct {
	Type    string `json:"type,omitempty"`
	Message string `json:"message"`
	Status  int    `json:"status,omitempty"`
	Reason  string `json:"reason,omitempty"` // a throttle's
}

func toWireError(err error) *wireError {
	if err == nil {
		return nil
	}
	var th *lambdaerr.Throttled
	if errors.As(err, &th) {
		return &wireError{Type: th.Err.Type, Message: th.Err.Message, Status: th.Err.Status, Reason: th.Reason}
	}
	if le, ok := lambdaerr.As(err); ok {
		return &wireError{Type: le.Type, Message: le.Message, Status: le.Status}
	}
	return &wireError{Message: err.Error()}
}

func (w *wireError) err(node string) error {
	if w == nil {
		return nil
	}
	le := &lambdaerr.Error{Type: w.Type, Message: w.Message, Status: w.Status}
	switch {
	case w.Reason != "":
		return &lambdaerr.Throttled{Err: le, Reason: w.Reason}
	case w.Status != 0:
		return le
	}
	return fmt.Errorf("host %s: %s", node, w.Message)
}

// encodeCall is a description then a payload: the description's length
// (4 bytes, big-endian), the description in JSON, the payload.
func encodeCall(desc any, payload []byte) ([]byte, error) {
	d, err := json.Marshal(desc)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(d)+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(d)))
	out = append(out, d...)
	return append(out, payload...), nil
}

func decodeCall(data []byte, desc any) ([]byte, error) {
	if len(data) < 4 {
		return nil, errors.New("route: a call too short")
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return nil, errors.New("route: a call's description past its end")
	}
	if err := json.Unmarshal(data[4:4+n], desc); err != nil {
		return nil, fmt.Errorf("route: a call's description: %w", err)
	}
	return data[4+n:], nil
}

// sendParts publishes data to subject in parts of at most chunk bytes,
// each with the call's id and its place.
func sendParts(nc *nats.Conn, subject, reply, call, kind string, data []byte) error {
	chunk := partSize(nc)
	n := max(1, (len(data)+chunk-1)/chunk)
	for i := range n {
		part := data[i*chunk : min(len(data), (i+1)*chunk)]
		m := &nats.Msg{Subject: subject, Reply: reply, Data: part, Header: nats.Header{}}
		m.Header.Set(hdrCall, call)
		m.Header.Set(hdrPart, fmt.Sprintf("%d/%d", i, n))
		if kind != "" {
			m.Header.Set(hdrKind, kind)
		}
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	return nil
}

// partSize leaves room under the server's max_payload for the headers.
func partSize(nc *nats.Conn) int {
	return max(4<<10, int(nc.MaxPayload())-8<<10)
}

// parsePart reads "i/n", with n bounded by what a call may weigh.
func parsePart(h nats.Header, chunk int) (i, n int, err error) {
	a, b, ok := strings.Cut(h.Get(hdrPart), "/")
	if !ok {
		return 0, 0, errors.New("route: no part header")
	}
	if i, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	if n, err = strconv.Atoi(b); err != nil {
		return 0, 0, err
	}
	if n < 1 || i < 0 || i >= n || n > maxCallBytes/chunk+1 {
		return 0, 0, fmt.Errorf("route: part %d/%d out of bounds", i, n)
	}
	return i, n, nil
}

// assembly gathers the parts of one message in order (NATS keeps the
// order of one publisher's messages to one subscriber).
type assembly struct {
	next, n int
	data    []byte
	started time.Time
}

// add takes part i of n; done when it was the last.
func (a *assembly) add(i, n int, part []byte) (done bool, err error) {
	if n != a.n || i != a.next {
		return false, fmt.Errorf("route: part %d/%d when %d/%d was due", i, n, a.next, a.n)
	}
	if len(a.data)+len(part) > maxCallBytes {
		return false, errors.New("route: a call over its bound")
	}
	a.data = append(a.data, part...)
	a.next++
	return a.next == a.n, nil
}

// hostsView is the cluster as this host sees it (cluster.Member).
type hostsView interface {
	Status() cluster.Status
}

// localView is this host's environments now (its scheduler), fresher
// than its last heartbeat.
type localView interface {
	Stats() scheduler.Stats
	StatsByFunction() map[string]scheduler.Stats
	Usage() scheduler.Usage
}

// router is invoke.Forwarder for a host of a cluster, and the server of
// the invocations other hosts forward to it.
type router struct {
	node    string
	nc      *nats.Conn
	hosts   hostsView
	local   localView
	applied func() uint64 // the configuration log entry this host applied
	// ready and cpu are this host's, as its heartbeats tell them
	// (placement.go); nil knows nothing.
	ready  *cluster.ReadySet
	cpu    *cpuMeter
	invoke func(context.Context, invoke.Request) (*invoke.Result, error)
	log    *slog.Logger

	mu sync.Mutex
	// sent counts the calls this host has forwarded to each host and not
	// had answered yet: added to what the host's last heartbeat said, so
	// that a burst of cold starts between two heartbeats spreads.
	sent    map[string]int
	pending map[string]*assembly
	sub     *nats.Subscription
}

// start subscribes to the calls forwarded to this host.
func (r *router) start() error {
	r.sent, r.pending = map[string]int{}, map[string]*assembly{}
	sub, err := r.nc.Subscribe(routeSubject(r.node), r.onPart)
	if err != nil {
		return fmt.Errorf("route: %w", err)
	}
	// A burst of 6 MB calls must not make this subscriber a slow one.
	_ = sub.SetPendingLimits(-1, 256<<20)
	r.sub = sub
	return r.nc.Flush()
}

// stop takes no more forwarded calls (those running finish).
func (r *router) stop() {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
}

// Forward implements invoke.Forwarder.
func (r *router) Forward(ctx context.Context, fn scheduler.Function, requestID string, req invoke.Request) (*invoke.Result, bool, error) {
	live := r.liveSelf(fn.Name)
	if live.Load.Functions[fn.Name].Warm > 0 {
		return nil, false, nil // the best there is: here, warm
	}
	hosts := r.view(live)
	target := place(r.node, hosts, coldStart(fn))
	if target == r.node || target == "" {
		return nil, false, nil
	}
	res, reached, err := r.call(ctx, target, fn, requestID, req)
	if !reached {
		r.log.Info("route: running here, the host picked did not take the call", "function", fn.Name, "host", target, "err", err)
		return nil, false, nil
	}
	return res, true, err
}

// liveSelf is this host as its scheduler sees it now.
func (r *router) liveSelf(function string) cluster.HostStatus {
	st := r.local.StatsByFunction()[function]
	all := r.local.Stats()
	u := r.local.Usage()
	return cluster.HostStatus{Host: cluster.Host{Node: r.node, Protocol: cluster.Protocol, Load: cluster.Load{
		Busy: all.Busy, Warm: all.Warm, Paused: all.Paused, Suspended: all.Suspended, InFlight: all.Busy,
		MemoryMB: u.MemoryMB, MemoryLimitMB: u.Limits.MaxMemoryMB, Ready: r.ready.Ready(), CPU: r.cpu.Share(),
		Functions: map[string]cluster.FunctionLoad{function: {Busy: st.Busy, Warm: st.Warm, Paused: st.Paused, Suspended: st.Suspended}}}},
		State: cluster.StateUp, Compatible: true}
}

// view is the hosts for placement: this one as it is now, the others as
// their last heartbeats said plus what was sent them since.
func (r *router) view(self cluster.HostStatus) []cluster.HostStatus {
	st := r.hosts.Status()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]cluster.HostStatus, 0, len(st.Hosts)+1)
	for _, h := range st.Hosts {
		if h.Node == r.node {
			self.Draining, self.DrainRequested = h.Draining, h.DrainRequested
			if h.State == cluster.StateStopping {
				self.State = cluster.StateStopping
			}
			continue
		}
		h.Load.InFlight += r.sent[h.Node]
		out = append(out, h)
	}
	return append(out, self)
}

// want is what placement knows of an invocation.
type want struct {
	Function string
	MemoryMB int
	// Code and Root name what its cold start needs ready on a host
	// (cluster.CodeKey, cluster.RootKey): "" when every host has it.
	Code, Root string
}

// coldStart is what placing an invocation of fn needs.
func coldStart(fn scheduler.Function) want {
	w := want{Function: fn.Name, MemoryMB: fn.MemoryMB, Code: cluster.CodeKey(fn.CodeDigest, fn.LayerDigests)}
	if fn.Root != nil {
		w.Root = cluster.RootKey(fn.Root.Digest)
	}
	return w
}

// ready reports whether h has what a cold start of w needs ready.
func (w want) ready(h cluster.HostStatus) bool {
	return (w.Code == "" || h.Load.Ready.HasCode(w.Code)) && (w.Root == "" || h.Load.Ready.HasRoot(w.Root))
}

// The tolerances of a cold start's placement. A host with the function's
// code image built (and root cached, for a container image) starts it
// without fetching and building first (measured in README: 0.1-0.3 s
// here for zips of 3-50 MB, more for a large root over a real network),
// so it takes the cold start unless it is clearly more loaded than the
// least loaded host: more than readySlack invocations more in flight
// (small, as what it saves is: each invocation in flight shares the
// CPU a boot needs), or its guest memory over memoryHigh of its bound
// with this one while the other's is not, or its CPU saturated while
// the other's is not.
const (
	readySlack = 1
	memoryHigh = 0.85
	// cpuSaturated is a CPU busy enough that a boot there crawls; the
	// CPU decides only against a host with cpuSpare to spare (two hosts
	// measured a moment apart differ by less).
	cpuSaturated = 0.9
	cpuSpare     = 0.3
)

// place picks the host to run an invocation on: one with an idle warm
// environment of the function, then one with a paused, then one running
// it, then one with a suspended one (this host first within a tier: no
// hop), then for a cold start, among the hosts with room for its memory,
// the least loaded of those that have its code (and root) ready unless
// it is clearly more loaded than the least loaded of all (the
// tolerances above), else the least loaded of all: least loaded is a CPU
// not saturated, then the fewest invocations in flight, then the least
// guest memory committed for its bound, this host on a tie. Never a host
// that is down, stopped, drained, of another protocol or that does not
// take forwarded calls; a drained or stopping self serves only from the
// environments it has (a stopping one would boot a machine only to
// suspend it, and its stop would wait for the boot).
func place(self string, hosts []cluster.HostStatus, w want) string {
	function, memoryMB := w.Function, w.MemoryMB
	var me *cluster.HostStatus
	var cands []cluster.HostStatus
	for i, h := range hosts {
		if h.Node == self {
			me = &hosts[i]
			cands = append(cands, h)
			continue
		}
		if h.State != cluster.StateUp || h.Stopped || !h.Compatible || h.Draining || h.DrainRequested || h.Protocol < cluster.ForwardProtocol {
			continue
		}
		cands = append(cands, h)
	}
	tiers := []func(cluster.FunctionLoad) int{
		func(l cluster.FunctionLoad) int { return l.Warm },
		func(l cluster.FunctionLoad) int { return l.Paused },
		// Only busy ones: a heartbeat taken during an invocation counts
		// its environment busy, and most invocations are short, so it is
		// likely free when the call arrives (else that host starts one).
		func(l cluster.FunctionLoad) int { return l.Busy },
		func(l cluster.FunctionLoad) int { return l.Suspended },
	}
	for _, count := range tiers {
		var best *cluster.HostStatus
		for i := range cands {
			h := &cands[i]
			n := count(h.Load.Functions[function])
			if n == 0 {
				continue
			}
			if h.Node == self {
				return self
			}
			if best == nil || n > count(best.Load.Functions[function]) ||
				(n == count(best.Load.Functions[function]) && before(*h, *best, self)) {
				best = h
			}
		}
		if best != nil {
			return best.Node
		}
	}
	// A cold start: not on a drained self, and where the memory fits when
	// any host has room.
	var cold []cluster.HostStatus
	for _, h := range cands {
		if h.Node == self && me != nil && (me.Draining || me.DrainRequested || me.State == cluster.StateStopping) {
			continue
		}
		cold = append(cold, h)
	}
	var room []cluster.HostStatus
	for _, h := range cold {
		if l := h.Load; l.MemoryLimitMB <= 0 || l.MemoryMB+memoryMB <= l.MemoryLimitMB {
			room = append(room, h)
		}
	}
	if len(room) > 0 {
		cold = room
	}
	best := leastLoaded(cold, self, func(cluster.HostStatus) bool { return true })
	if best == nil {
		return self // nowhere else: here, whatever it answers
	}
	if r := leastLoaded(cold, self, w.ready); r != nil && !clearlyMoreLoaded(*r, *best, memoryMB) {
		return r.Node
	}
	return best.Node
}

// leastLoaded is the best placed of the hosts that ok takes (before);
// nil when it takes none.
func leastLoaded(hosts []cluster.HostStatus, self string, ok func(cluster.HostStatus) bool) *cluster.HostStatus {
	var best *cluster.HostStatus
	for i := range hosts {
		h := &hosts[i]
		if ok(*h) && (best == nil || before(*h, *best, self)) {
			best = h
		}
	}
	return best
}

// clearlyMoreLoaded reports whether a host a, with the cold start's code
// ready, is too loaded to take it from b, the least loaded (the
// tolerances above).
func clearlyMoreLoaded(a, b cluster.HostStatus, memoryMB int) bool {
	after := func(l cluster.Load) float64 {
		if l.MemoryLimitMB <= 0 {
			return 0
		}
		return float64(l.MemoryMB+memoryMB) / float64(l.MemoryLimitMB)
	}
	return a.Load.InFlight > b.Load.InFlight+readySlack ||
		(after(a.Load) > memoryHigh && after(b.Load) <= memoryHigh) ||
		cpuBusier(a.Load, b.Load)
}

// cpuBusier reports whether a's CPU is saturated and b's has room.
func cpuBusier(a, b cluster.Load) bool {
	return a.CPU >= cpuSaturated && b.CPU <= a.CPU-cpuSpare
}

// before reports whether a is better placed than b: less loaded, or as
// loaded and this host (no hop), or else first by name (so that every
// host picks alike).
func before(a, b cluster.HostStatus, self string) bool {
	if c := lessLoaded(a, b); c != 0 {
		return c < 0
	}
	if a.Node == self || b.Node == self {
		return a.Node == self
	}
	return a.Node < b.Node
}

// lessLoaded orders hosts by whether their CPU is saturated (when the
// other's has room), then by invocations in flight, then by the share of
// their guest memory bound committed (an unbounded host as empty).
func lessLoaded(a, b cluster.HostStatus) int {
	switch {
	case cpuBusier(a.Load, b.Load):
		return 1
	case cpuBusier(b.Load, a.Load):
		return -1
	}
	if c := cmp.Compare(a.Load.InFlight, b.Load.InFlight); c != 0 {
		return c
	}
	share := func(l cluster.Load) float64 {
		if l.MemoryLimitMB <= 0 {
			return 0
		}
		return float64(l.MemoryMB) / float64(l.MemoryLimitMB)
	}
	// Within 5% of each other, memory does not decide: a host is not sent
	// a cold start for one environment's difference.
	if sa, sb := share(a.Load), share(b.Load); sa < sb-0.05 {
		return -1
	} else if sb < sa-0.05 {
		return 1
	}
	return 0
}

// call sends the invocation to node and waits for its answer. reached
// false means node did not take it (nothing ran there): run it here.
func (r *router) call(ctx context.Context, node string, fn scheduler.Function, requestID string, req invoke.Request) (*invoke.Result, bool, error) {
	data, err := encodeCall(wireRequest{V: routeWire, From: r.node, Function: req.Function, Qualifier: req.Qualifier, RequestID: requestID,
		ClientContext: req.ClientContext, TraceID: req.TraceID, ConfigSeq: r.applied()}, req.Payload)
	if err != nil {
		return nil, false, err
	}
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 256<<20)
	r.mu.Lock()
	r.sent[node]++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.sent[node]--
		r.mu.Unlock()
	}()
	call := uuid.NewString()
	if err := sendParts(r.nc, routeSubject(node), inbox, call, "", data); err != nil {
		return nil, false, err
	}
	// The host says it has the whole call, or NATS says no one listens.
	m, err := sub.NextMsg(ackTimeout)
	if err != nil {
		return nil, false, fmt.Errorf("no acknowledgement: %w", err)
	}
	if m.Header.Get("Status") == "503" {
		return nil, false, errors.New("no host listens on " + routeSubject(node))
	}
	if m.Header.Get(hdrKind) != kindAck || m.Header.Get(hdrCall) != call {
		return nil, false, errors.New("route: an answer before the acknowledgement")
	}
	deadline := time.Now().Add(fn.Timeout + answerMargin)
	a := &assembly{}
	for {
		m, err := sub.NextMsg(time.Second)
		if errors.Is(err, nats.ErrTimeout) {
			if time.Now().After(deadline) {
				return nil, true, lambdaerr.Service("host %s did not answer invocation %s in time", node, requestID)
			}
			if !r.up(node) {
				return nil, true, lambdaerr.Service("host %s went down during invocation %s", node, requestID)
			}
			continue
		}
		if err != nil {
			return nil, true, fmt.Errorf("route: waiting for host %s: %w", node, err)
		}
		if m.Header.Get(hdrCall) != call || m.Header.Get(hdrKind) != kindRes {
			continue
		}
		i, n, err := parsePart(m.Header, partSize(r.nc))
		if err != nil {
			return nil, true, err
		}
		if a.n == 0 {
			a.n = n
		}
		done, err := a.add(i, n, m.Data)
		if err != nil {
			return nil, true, err
		}
		if done {
			break
		}
	}
	var w wireResult
	payload, err := decodeCall(a.data, &w)
	if err != nil {
		return nil, true, err
	}
	if w.V != routeWire {
		return nil, true, fmt.Errorf("route: host %s answered wire format %d", node, w.V)
	}
	perr := w.Err.err(node)
	var th *lambdaerr.Throttled
	if !w.HasResult && errors.As(perr, &th) {
		// Throttled there (drained, or its limits): nothing ran; try here.
		return nil, false, perr
	}
	if !w.HasResult {
		return nil, true, perr
	}
	return &invoke.Result{RequestID: w.RequestID, Version: w.Version, Payload: payload, Error: w.Error, StartType: w.StartType,
		LogTail: w.LogTail, Node: w.Node}, true, perr
}

// up reports whether node is up as this host sees it.
func (r *router) up(node string) bool {
	for _, h := range r.hosts.Status().Hosts {
		if h.Node == node {
			// A stopping host finishes the calls it has.
			return (h.State == cluster.StateUp || h.State == cluster.StateStopping) && !h.Stopped
		}
	}
	return false
}

// onPart takes one message of a forwarded call; once the call is whole
// it runs.
func (r *router) onPart(m *nats.Msg) {
	call := m.Header.Get(hdrCall)
	i, n, err := parsePart(m.Header, partSize(r.nc))
	if err != nil || call == "" || m.Reply == "" {
		r.log.Warn("route: a malformed forwarded call dropped", "err", err)
		return
	}
	var whole []byte
	r.mu.Lock()
	now := time.Now()
	for id, a := range r.pending {
		if now.Sub(a.started) > partsTimeout {
			delete(r.pending, id)
		}
	}
	a := r.pending[call]
	if a == nil {
		if len(r.pending) >= maxPendingCalls {
			r.mu.Unlock()
			r.log.Warn("route: too many forwarded calls arriving at once: one dropped (its host runs it itself)")
			return
		}
		a = &assembly{n: n, started: now}
		r.pending[call] = a
	}
	done, err := a.add(i, n, m.Data)
	if err != nil || done {
		delete(r.pending, call)
		whole = a.data
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("route: a forwarded call dropped", "err", err)
		return
	}
	if done {
		go r.serve(m.Reply, call, whole)
	}
}

// serve runs a whole forwarded call through this host's invocation path
// and answers it.
func (r *router) serve(reply, call string, data []byte) {
	var w wireRequest
	payload, err := decodeCall(data, &w)
	if err == nil && w.V != routeWire {
		err = fmt.Errorf("route: wire format %d from %s", w.V, w.From)
	}
	if err != nil {
		r.log.Warn("route: a forwarded call refused", "err", err)
		return // the caller runs it itself
	}
	ack := &nats.Msg{Subject: reply, Header: nats.Header{}}
	ack.Header.Set(hdrCall, call)
	ack.Header.Set(hdrKind, kindAck)
	if err := r.nc.PublishMsg(ack); err != nil {
		r.log.Warn("route: acknowledging a forwarded call", "err", err)
		return
	}
	ctx := context.Background()
	r.waitConfig(ctx, w.ConfigSeq)
	res, ierr := r.invoke(ctx, invoke.Request{Function: w.Function, Qualifier: w.Qualifier, Payload: payload,
		ClientContext: w.ClientContext, TraceID: w.TraceID, RequestID: w.RequestID, NoForward: true})
	out := wireResult{V: routeWire, Node: r.node, Err: toWireError(ierr)}
	var body []byte
	if res != nil {
		out.HasResult = true
		out.RequestID, out.Version, out.Error, out.StartType, out.LogTail = res.RequestID, res.Version, res.Error, res.StartType, res.LogTail
		body = res.Payload
	}
	enc, err := encodeCall(out, body)
	if err == nil {
		err = sendParts(r.nc, reply, "", call, kindRes, enc)
	}
	if err != nil {
		r.log.Warn("route: answering a forwarded call", "from", w.From, "request", w.RequestID, "err", err)
	}
}

// waitConfig waits (bounded) until this host has applied the
// configuration log up to seq.
func (r *router) waitConfig(ctx context.Context, seq uint64) {
	deadline := time.Now().Add(configWait)
	for r.applied() < seq {
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.log.Warn("route: running a forwarded call before this host has the caller's configuration", "want", seq, "applied", r.applied())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// functionLoads is the heartbeat's per-function load.
func functionLoads(by map[string]scheduler.Stats) map[string]cluster.FunctionLoad {
	if len(by) == 0 {
		return nil
	}
	out := make(map[string]cluster.FunctionLoad, len(by))
	for fn, st := range by {
		if st.Busy+st.Warm+st.Paused+st.Suspended > 0 {
			out[fn] = cluster.FunctionLoad{Busy: st.Busy, Warm: st.Warm, Paused: st.Paused, Suspended: st.Suspended}
		}
	}
	return out
}

// lastEntry is the configuration log's last entry (configlog.Log).
type lastEntry interface {
	Last(ctx context.Context) (uint64, error)
}

// configSync is invoke.ConfigSync for a host of a cluster: catching up is
// waiting until this host has applied the log's last entry. The last
// entry read is reused for lastReuse, so that a flood of calls for
// functions or URLs that exist nowhere costs the log one read per
// lastReuse, not one each.
type configSync struct {
	log     lastEntry
	applied func() uint64

	mu     sync.Mutex
	last   uint64
	readAt time.Time
}

const lastReuse = 20 * time.Millisecond

func (c *configSync) lastEntry(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.readAt) < lastReuse {
		return c.last, nil
	}
	last, err := c.log.Last(ctx)
	if err != nil {
		return 0, err
	}
	c.last, c.readAt = last, time.Now()
	return last, nil
}

func (c *configSync) CatchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, configWait)
	defer cancel()
	last, err := c.lastEntry(ctx)
	if err != nil {
		return fmt.Errorf("the configuration log's last entry: %w", err)
	}
	for c.applied() < last {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for configuration log entry %d (applied %d): %w", last, c.applied(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// openRouter makes the router of a host of a cluster (nil standalone);
// routeStart subscribes it once the invocation path exists.
func (s *Server) openRouter() {
	if s.member == nil {
		return
	}
	s.router = &router{node: s.cfg.Cluster.Node, nc: s.broker.Conn(), hosts: s.member, local: s.sched,
		applied: s.store.AppliedSequence, ready: s.readySet(), log: s.log.With("part", "route")}
	if s.load != nil {
		s.router.cpu = s.load.cpu
	}
}

// forwarder is the invocation path's Forwarder: nil standalone (a nil
// *router in the interface would not be).
func (s *Server) forwarder() invoke.Forwarder {
	if s.router == nil {
		return nil
	}
	return s.router
}

// configSync is the invocation path's ConfigSync: nil when the
// configuration is this host's alone.
func (s *Server) configSync() invoke.ConfigSync {
	if s.configLog == nil {
		return nil
	}
	if s.sync == nil {
		s.sync = &configSync{log: s.configLog, applied: s.store.AppliedSequence}
	}
	return s.sync
}

// startRouter takes the calls other hosts forward here.
func (s *Server) startRouter() error {
	if s.router == nil {
		return nil
	}
	s.router.invoke = s.invoke.Invoke
	return s.router.start()
}

// stopRouter takes no more forwarded calls.
func (s *Server) stopRouter() {
	if s.router != nil {
		s.router.stop()
	}
}

// urlConfigs finds function URLs in the store; on a host of a cluster, a
// URL not found is looked for again once this host has caught up with
// the shared configuration (one made through another host a moment ago).
type urlConfigs struct {
	st   *store.Store
	sync invoke.ConfigSync // nil: the configuration is this host's alone
	log  *slog.Logger
}

func (u urlConfigs) URLConfigByID(ctx context.Context, id string) (store.URLConfig, error) {
	cfg, err := u.st.URLConfigByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) && u.sync != nil {
		if cerr := u.sync.CatchUp(ctx); cerr != nil {
			u.log.Warn("catching up with the shared configuration", "url", id, "err", cerr)
			return cfg, err
		}
		return u.st.URLConfigByID(ctx, id)
	}
	return cfg, err
}
