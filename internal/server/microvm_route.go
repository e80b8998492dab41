package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/vmproxy"
)

// A MicroVM runs on the host that created it (its disk, memory and
// snapshots are there), or on the one a drain moved it to (drain.go: the
// receiver records itself as the owner once it adopted it, before the
// sender forgets it); in a cluster any host serves its API and its
// endpoint. The replicated bucket OwnersBucket says which host runs each
// MicroVM; a host asked about one it does not run sends the request on,
// as it came, to the owner's API or URL listener (an HTTP reverse proxy:
// WebSockets and streams pass). Nothing is trusted on the way: the owner
// checks the request's SigV4 signature (keys are the cluster's, and the
// Host header is kept, so a request signed for this host verifies there)
// or its endpoint token (the token key is the cluster's). The one header
// the hop adds, HeaderForwarded, only stops a second hop: it grants
// nothing, so forging it gains nothing. ListMicrovms asks every live host
// for its MicroVMs over NATS (the cluster's own connection).

// OwnersBucket maps each MicroVM's id to the node that runs it.
const OwnersBucket = "hearth_microvm_owners"

// HeaderMicroVMNode names, on a forwarded answer, the host that runs the
// MicroVM.
const HeaderMicroVMNode = "X-Hearth-Microvm-Node"

// microVMOwners is the owners' record.
type microVMOwners struct {
	kv jetstream.KeyValue
}

func openMicroVMOwners(ctx context.Context, js jetstream.JetStream, replicas int) (*microVMOwners, error) {
	var kv jetstream.KeyValue
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: OwnersBucket,
			Description: "Which Hearth host runs each MicroVM", History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("microvm owners bucket: %w", err)
	}
	return &microVMOwners{kv: kv}, nil
}

// Set records that node runs MicroVM id.
func (o *microVMOwners) Set(ctx context.Context, id, node string) error {
	ctx, cancel := context.WithTimeout(ctx, broker.LeaderWait)
	defer cancel()
	if e, err := o.kv.Get(ctx, id); err == nil && string(e.Value()) == node {
		return nil
	}
	_, err := o.kv.Put(ctx, id, []byte(node))
	return err
}

// Forget drops the record of MicroVM id if it still names node: a
// MicroVM moved since is another host's to forget.
func (o *microVMOwners) Forget(ctx context.Context, id, node string) error {
	ctx, cancel := context.WithTimeout(ctx, broker.LeaderWait)
	defer cancel()
	e, err := o.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(e.Value()) != node {
		return nil
	}
	err = o.kv.Delete(ctx, id, jetstream.LastRevision(e.Revision()))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil // rewritten meanwhile (moved): no longer ours
	}
	return err
}

// Owner is the node that runs MicroVM id; ok is false when none is
// recorded.
func (o *microVMOwners) Owner(ctx context.Context, id string) (string, bool, error) {
	if !vmproxy.ValidID(id) { // a KV key's characters are a subset of an id's
		return "", false, nil
	}
	e, err := o.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(e.Value()), true, nil
}

// ownerLookup is what forwarding needs of the owners' record.
type ownerLookup interface {
	Owner(ctx context.Context, id string) (node string, ok bool, err error)
}

// microVMForwarder sends a request about a MicroVM another host runs to
// that host.
type microVMForwarder struct {
	node   string
	owners ownerLookup
	// hosts is the membership's view of a host.
	hosts func(node string) (cluster.HostStatus, bool)
	// local reports whether this host runs MicroVM id.
	local func(ctx context.Context, id string) bool
	proxy *hostProxy
}

func newMicroVMForwarder(node string, owners ownerLookup, hosts func(string) (cluster.HostStatus, bool), local func(context.Context, string) bool) *microVMForwarder {
	return &microVMForwarder{node: node, owners: owners, hosts: hosts, local: local, proxy: newHostProxy(node)}
}

// serviceError answers 502 with a ServiceException-shaped body: the host
// that runs the MicroVM cannot be reached.
func serviceError(w http.ResponseWriter, msg string) {
	serviceErrorStatus(w, http.StatusBadGateway, msg)
}

// ownerAwayRetry is the Retry-After of an answer about a MicroVM whose
// host is down, stopping or stopped: a restart or upgrade takes seconds.
const ownerAwayRetry = "5"

// serviceErrorStatus is serviceError with another status (503 when the
// host is known to be away and expected back).
func serviceErrorStatus(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", "ServiceException")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", ownerAwayRetry)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "Service", "message": msg})
}

// owner is where a request about MicroVM id goes: "" serves it here (this
// host runs it, or no host is recorded, or it was forwarded already).
func (f *microVMForwarder) owner(r *http.Request, id string) (node string, err error) {
	if r.Header.Get(HeaderForwarded) != "" || id == "" || f.local(r.Context(), id) {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	node, ok, err := f.owners.Owner(ctx, id)
	if err != nil {
		return "", fmt.Errorf("looking up the host that runs MicroVM %s: %w", id, err)
	}
	if !ok || node == f.node {
		return "", nil
	}
	return node, nil
}

// serve forwards r about MicroVM id to its owner, on the API listener
// (url false) or the URL listener; it reports false when r is to be
// served here.
func (f *microVMForwarder) serve(w http.ResponseWriter, r *http.Request, id string, url bool) bool {
	node, err := f.owner(r, id)
	if err != nil {
		serviceError(w, err.Error())
		return true
	}
	if node == "" {
		// Served here: the mark of a hop is not passed to the guest.
		r.Header.Del(HeaderForwarded)
		return false
	}
	h, ok := f.hosts(node)
	switch {
	case !ok:
		serviceError(w, fmt.Sprintf("MicroVM %s runs on host %s, which is not in the cluster", id, node))
		return true
	case h.State != cluster.StateUp:
		// Away (down, stopping, stopped), not broken: a client may retry.
		serviceErrorStatus(w, http.StatusServiceUnavailable, fmt.Sprintf("MicroVM %s runs on host %s, which is %s: it is back when that host is", id, node, h.State))
		return true
	}
	addr := h.API
	if url {
		addr = ""
		if len(h.URLs) > 0 {
			addr = h.URLs[0]
		}
	}
	if addr == "" {
		serviceError(w, fmt.Sprintf("MicroVM %s runs on host %s, which has not told its address", id, node))
		return true
	}
	f.proxy.forward(w, r, hop{node: node, addr: addr, answerHeader: HeaderMicroVMNode, unreachable: func(w http.ResponseWriter, err error) {
		serviceError(w, fmt.Sprintf("MicroVM %s runs on host %s, which did not answer at %s: %v", id, node, addr, err))
	}})
	return true
}

// apiMicroVMID is the MicroVM a request to the API is about: the {id} of
// the MicroVMs routes (control, exec and files); "" for any other.
func apiMicroVMID(r *http.Request) string {
	p := r.URL.Path
	for _, prefix := range []string{"/2025-09-09/microvms/", "/hearth/v1/microvms/"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			id, _, _ := strings.Cut(rest, "/")
			return id
		}
	}
	return ""
}

// apiHandler forwards the API's requests about another host's MicroVM.
func (f *microVMForwarder) apiHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := apiMicroVMID(r); id == "" || !f.serve(w, r, id, false) {
			next.ServeHTTP(w, r)
		}
	})
}

// endpointHandler forwards the endpoint's requests for another host's
// MicroVM, sends this host's to ep and any other request to next.
func (f *microVMForwarder) endpointHandler(ep *vmproxy.Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := ep.MicroVMID(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if !f.serve(w, r, id, true) {
			ep.ServeHTTP(w, r)
		}
	})
}

// clusterMicroVMs is the MicroVMs API in a cluster: this host's manager,
// with each MicroVM it runs recorded as its own, and a list of every
// live host's MicroVMs.
type clusterMicroVMs struct {
	*microvm.Manager
	node   string
	owners *microVMOwners
	nc     *nats.Conn
	hosts  func() []cluster.HostStatus
}

// Run runs a MicroVM here and records this host as its owner.
func (c *clusterMicroVMs) Run(ctx context.Context, in microvm.RunInput) (microvm.MicroVM, error) {
	v, err := c.Manager.Run(ctx, in)
	if err != nil {
		return v, err
	}
	if err := c.owners.Set(ctx, v.ID, c.node); err != nil {
		// It runs; only other hosts cannot find it until the next start
		// records it.
		return v, fmt.Errorf("MicroVM %s runs on host %s, but recording it for the other hosts failed: %w", v.ID, c.node, err)
	}
	return v, nil
}

// listSubject is where a host answers for its MicroVMs.
func listSubject(node string) string { return "hearth.microvms." + node + ".list" }

// listRequest is a ListMicrovms' filter, sent to each host.
type listRequest struct {
	Image   string `json:"image,omitempty"`
	Version string `json:"version,omitempty"`
}

type listReply struct {
	Items []microvm.MicroVM `json:"items"`
	Error string            `json:"error,omitempty"`
}

// listWait bounds a host's answer to a list.
const listWait = 5 * time.Second

// allLocal is every MicroVM of this host (node) that the filter picks,
// each marked with node.
func allLocal(ctx context.Context, m *microvm.Manager, node string, q listRequest) ([]microvm.MicroVM, error) {
	var out []microvm.MicroVM
	in := microvm.ListInput{ImageIdentifier: q.Image, ImageVersion: q.Version, MaxResults: 50}
	for {
		page, next, err := m.List(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, vm := range page {
			vm.Node = node
			out = append(out, vm)
		}
		if next == "" {
			return out, nil
		}
		in.NextToken = next
	}
}

// serveList answers other hosts' lists of this host's MicroVMs.
func serveList(nc *nats.Conn, node string, m *microvm.Manager) (*nats.Subscription, error) {
	return nc.Subscribe(listSubject(node), func(msg *nats.Msg) {
		var q listRequest
		var rep listReply
		if err := json.Unmarshal(msg.Data, &q); err != nil {
			rep.Error = err.Error()
		} else if rep.Items, err = allLocal(context.Background(), m, node, q); err != nil {
			rep.Error = err.Error()
		}
		b, _ := json.Marshal(rep)
		_ = msg.Respond(b)
	})
}

// List is every live host's MicroVMs, ordered and paged as one host's
// are (by start, then id; nextToken is the last id of a page). A host
// that does not answer is left out (its MicroVMs are back in the list
// when it is).
func (c *clusterMicroVMs) List(ctx context.Context, in microvm.ListInput) ([]microvm.MicroVM, string, error) {
	// This host's list checks the input as a standalone one does.
	if _, _, err := c.Manager.List(ctx, microvm.ListInput{ImageIdentifier: in.ImageIdentifier, ImageVersion: in.ImageVersion, MaxResults: in.MaxResults}); err != nil {
		return nil, "", err
	}
	q := listRequest{Image: in.ImageIdentifier, Version: in.ImageVersion}
	all, err := allLocal(ctx, c.Manager, c.node, q)
	if err != nil {
		return nil, "", err
	}
	body, _ := json.Marshal(q)
	for _, h := range c.hosts() {
		if h.Node == c.node || h.State != cluster.StateUp {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, listWait)
		msg, err := c.nc.RequestWithContext(rctx, listSubject(h.Node), body)
		cancel()
		if err != nil {
			continue
		}
		var rep listReply
		if json.Unmarshal(msg.Data, &rep) != nil || rep.Error != "" {
			continue
		}
		all = append(all, rep.Items...)
	}
	return pageMicroVMs(all, in.MaxResults, in.NextToken)
}

// pageMicroVMs orders vms (by start, then id) and gives the page after
// nextToken.
func pageMicroVMs(vms []microvm.MicroVM, max int, nextToken string) ([]microvm.MicroVM, string, error) {
	if max <= 0 {
		max = 50
	}
	slices.SortFunc(vms, func(a, b microvm.MicroVM) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	vms = slices.CompactFunc(vms, func(a, b microvm.MicroVM) bool { return a.ID == b.ID })
	start := 0
	if nextToken != "" {
		start = slices.IndexFunc(vms, func(v microvm.MicroVM) bool { return v.ID == nextToken })
		if start < 0 {
			return nil, "", fmt.Errorf("%w: nextToken %q is not one this API gave (or its MicroVM is forgotten)", microvm.ErrValidation, nextToken)
		}
		start++
	}
	rest := vms[start:]
	if len(rest) <= max {
		return rest, "", nil
	}
	return rest[:max], rest[max-1].ID, nil
}

// openMicroVMRoutes records this host's MicroVMs as its own, answers the
// others' lists, and makes the forwarder; standalone it does nothing.
func (s *Server) openMicroVMRoutes(ctx context.Context) error {
	if s.member == nil {
		return nil
	}
	owners, err := openMicroVMOwners(ctx, s.broker.JetStream(), s.broker.Replicas())
	if err != nil {
		return err
	}
	s.mvmOwners = owners
	// The MicroVMs this host ran before (standalone, or before a
	// restart) are its own.
	vms, err := allLocal(ctx, s.microvms, s.cfg.Cluster.Node, listRequest{})
	if err != nil {
		return err
	}
	for _, v := range vms {
		if err := owners.Set(ctx, v.ID, s.cfg.Cluster.Node); err != nil {
			return fmt.Errorf("recording MicroVM %s: %w", v.ID, err)
		}
	}
	if _, err := serveList(s.broker.Conn(), s.cfg.Cluster.Node, s.microvms); err != nil {
		return fmt.Errorf("microvm lists: %w", err)
	}
	s.mvmForward = newMicroVMForwarder(s.cfg.Cluster.Node, owners, s.hostStatus, func(ctx context.Context, id string) bool {
		_, err := s.microvms.Get(ctx, id)
		return err == nil
	})
	return nil
}

// hostStatus is the membership's view of node.
func (s *Server) hostStatus(node string) (cluster.HostStatus, bool) {
	for _, h := range s.member.Status().Hosts {
		if h.Node == node {
			return h, true
		}
	}
	return cluster.HostStatus{}, false
}

// microVMsAPI is what the API's MicroVMs routes drive: the manager, or
// in a cluster the manager with the owners' record and the cluster's list.
func (s *Server) microVMsAPI() api.MicroVMs {
	if s.mvmOwners == nil {
		return s.microvms
	}
	return &clusterMicroVMs{Manager: s.microvms, node: s.cfg.Cluster.Node, owners: s.mvmOwners, nc: s.broker.Conn(),
		hosts: func() []cluster.HostStatus { return s.member.Status().Hosts }}
}

// routeMicroVMAPI forwards the API's requests about other hosts'
// MicroVMs, in a cluster.
func (s *Server) routeMicroVMAPI(next http.Handler) http.Handler {
	if s.mvmForward == nil {
		return next
	}
	return s.mvmForward.apiHandler(next)
}

// routeMicroVMEndpoint serves the MicroVMs' endpoint (forwarding, in a
// cluster, what another host runs) and sends the rest to next.
func (s *Server) routeMicroVMEndpoint(ep *vmproxy.Handler, next http.Handler) http.Handler {
	if s.mvmForward == nil {
		return ep.Route(next)
	}
	return s.mvmForward.endpointHandler(ep, next)
}
