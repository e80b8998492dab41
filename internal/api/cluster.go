package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// Cluster is this host's membership (cluster.Member), for
// GET /hearth/v1/cluster and drains.
type Cluster interface {
	Status() cluster.Status
	Drain(ctx context.Context, node string, on bool) error
}

// ClusterStatus is GET /hearth/v1/cluster's answer: Standalone for a
// daemon in no cluster, else the hosts as the answering one sees them.
type ClusterStatus struct {
	Standalone bool `json:"standalone,omitempty"`
	cluster.Status
}

// DrainRequest is POST /hearth/v1/cluster/hosts/{node}/drain's body;
// an empty body drains.
type DrainRequest struct {
	Draining *bool `json:"draining,omitempty"`
}

func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Cluster == nil {
		writeJSON(w, http.StatusOK, ClusterStatus{Standalone: true})
		return
	}
	writeJSON(w, http.StatusOK, ClusterStatus{Status: a.cfg.Cluster.Status()})
}

// drainHost sets (or, with {"draining":false}, clears) a host's drain
// flag; the host obeys it within a heartbeat. It answers the cluster's
// status as this host then sees it.
func (a *API) drainHost(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if a.cfg.Cluster == nil {
		a.writeError(w, lambdaerr.InvalidParameter("this daemon runs standalone: there is no cluster to drain %s from", node))
		return
	}
	if !broker.ValidNode(node) {
		a.writeError(w, lambdaerr.InvalidParameter("host name %q: letters, digits, - and _ only", node))
		return
	}
	var req DrainRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		a.writeError(w, err)
		return
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			a.writeError(w, lambdaerr.InvalidParameter("the request body is not valid JSON: %v", err))
			return
		}
	}
	on := req.Draining == nil || *req.Draining
	if err := a.cfg.Cluster.Drain(r.Context(), node, on); err != nil {
		if errors.Is(err, cluster.ErrUnknownHost) {
			a.writeError(w, lambdaerr.ResourceNotFound("no host %s in the cluster", node))
			return
		}
		a.writeError(w, lambdaerr.Service("drain %s: %v", node, err))
		return
	}
	writeJSON(w, http.StatusOK, ClusterStatus{Status: a.cfg.Cluster.Status()})
}
