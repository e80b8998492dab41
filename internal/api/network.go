package api

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/store"
)

// putNetworkPolicy takes PUT /hearth/v1/functions/{name}/network-policy,
// Hearth's own setting beside Lambda's: where the function's environments
// may connect (network.Policy says in what order the rules apply). It
// applies to $LATEST; published versions keep the policy they were
// published with, as they keep the rest of their configuration.
//
// Unlike the idle policy, a new network policy makes a new revision: the
// environments running the old one are retired, so that no connection
// the new policy refuses outlives the change.
func (a *API) putNetworkPolicy(w http.ResponseWriter, r *http.Request) {
	var p network.Policy
	name, qualifier, err := refWithBody(r, &p)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if qualifier != "" && qualifier != "$LATEST" {
		a.writeError(w, lambdaerr.InvalidParameter("a network policy is set on $LATEST; a published version keeps its own (qualifier %s)", qualifier))
		return
	}
	if err := p.Validate(); err != nil {
		a.writeError(w, err)
		return
	}
	f, err := a.cfg.Store.UpdateFunction(r.Context(), name, func(f *store.Function) error {
		f.NetworkPolicy = &p
		f.LastModified, f.RevisionID = lastModified(), uuid.NewString()
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	a.cfg.Invoker.Retire(r.Context(), name)
	writeJSON(w, http.StatusOK, f.NetworkPolicy)
}

// getNetworkPolicy answers GET /hearth/v1/functions/{name}/network-policy
// with $LATEST's policy, or a version's or alias's with ?Qualifier=.
func (a *API) getNetworkPolicy(w http.ResponseWriter, r *http.Request) {
	f, err := a.resolve(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f.NetworkPolicy)
}
