package api

import (
	"net/http"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

type concurrencyBody struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

func (a *API) putConcurrency(w http.ResponseWriter, r *http.Request) {
	var body concurrencyBody
	name, _, err := refWithBody(r, &body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if body.ReservedConcurrentExecutions == nil || *body.ReservedConcurrentExecutions < 0 {
		a.writeError(w, lambdaerr.InvalidParameter("ReservedConcurrentExecutions must be 0 or more"))
		return
	}
	if err := a.cfg.Store.SetConcurrency(r.Context(), name, body.ReservedConcurrentExecutions); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) deleteConcurrency(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.cfg.Store.SetConcurrency(r.Context(), name, nil); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) getConcurrency(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	n, err := a.cfg.Store.Concurrency(r.Context(), name)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, concurrencyBody{ReservedConcurrentExecutions: n})
}
