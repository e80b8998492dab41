package api

import (
	"net/http"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// putIdlePolicy takes PUT /hearth/v1/functions/{name}/idle-policy, Hearth's
// own setting beside Lambda's: how long idle environments stay warm, and
// how long they then stay paused (KeepPausedSeconds, 0 for no paused tier,
// absent for the daemon's default), and how long suspended ones are kept.
// Running environments keep going; the
// next idle period follows the new policy.
func (a *API) putIdlePolicy(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var p store.IdlePolicy
	if err := decode(r, &p); err != nil {
		a.writeError(w, err)
		return
	}
	if p.KeepWarmSeconds < 1 || p.KeepWarmSeconds > 86400 {
		a.writeError(w, lambdaerr.InvalidParameter("KeepWarmSeconds must be between 1 and 86400"))
		return
	}
	if k := p.KeepPausedSeconds; k != nil && (*k < 0 || *k > 86400) {
		a.writeError(w, lambdaerr.InvalidParameter("KeepPausedSeconds must be between 0 and 86400"))
		return
	}
	if p.KeepSuspendedHours < 1 || p.KeepSuspendedHours > 24*365 {
		a.writeError(w, lambdaerr.InvalidParameter("KeepSuspendedHours must be between 1 and 8760"))
		return
	}
	f, err := a.cfg.Store.UpdateFunction(r.Context(), name, func(f *store.Function) error {
		f.IdlePolicy = p
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, f.IdlePolicy)
}

// idlePolicyOut is GET idle-policy's answer: the policy as PUT set it, and
// what an absent KeepPausedSeconds means on this daemon.
type idlePolicyOut struct {
	store.IdlePolicy
	DefaultKeepPausedSeconds int `json:"DefaultKeepPausedSeconds"`
}

// getIdlePolicy answers GET /hearth/v1/functions/{name}/idle-policy: the
// policy PUT set and the daemon's keep-paused for a policy without one (the
// web console shows them beside Lambda's configuration).
func (a *API) getIdlePolicy(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	f, err := a.cfg.Store.GetFunction(r.Context(), name)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, idlePolicyOut{IdlePolicy: f.IdlePolicy, DefaultKeepPausedSeconds: int(a.cfg.DefaultKeepPaused.Seconds())})
}
