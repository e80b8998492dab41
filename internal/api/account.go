package api

import (
	"net/http"
)

// accountLimit and accountUsage are GetAccountSettings' shapes.
type accountLimit struct {
	TotalCodeSize                  int64 `json:"TotalCodeSize"`
	CodeSizeUnzipped               int64 `json:"CodeSizeUnzipped"`
	CodeSizeZipped                 int64 `json:"CodeSizeZipped"`
	ConcurrentExecutions           int   `json:"ConcurrentExecutions"`
	UnreservedConcurrentExecutions int   `json:"UnreservedConcurrentExecutions"`
}

type accountUsage struct {
	TotalCodeSize int64 `json:"TotalCodeSize"`
	FunctionCount int64 `json:"FunctionCount"`
}

// getAccountSettings reports this host's real limits and usage: the
// daemon's --max-concurrency, the code sizes it accepts, the bytes of code
// it stores and may still store (the free space of the disk that holds
// them), and how many functions there are.
func (a *API) getAccountSettings(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	count, err := a.cfg.Store.FunctionCount(ctx)
	if err != nil {
		a.writeError(w, err)
		return
	}
	reserved, err := a.cfg.Store.ReservedConcurrency(ctx)
	if err != nil {
		a.writeError(w, err)
		return
	}
	used, free, err := a.cfg.Store.CodeStorage()
	if err != nil {
		a.writeError(w, err)
		return
	}
	limit := accountLimit{
		TotalCodeSize: used + free, CodeSizeUnzipped: a.cfg.MaxUnzippedBytes, CodeSizeZipped: a.cfg.MaxZipBytes,
		ConcurrentExecutions: a.cfg.MaxConcurrency, UnreservedConcurrentExecutions: max(a.cfg.MaxConcurrency-reserved, 0),
	}
	writeJSON(w, http.StatusOK, map[string]any{"AccountLimit": limit, "AccountUsage": accountUsage{TotalCodeSize: used, FunctionCount: count}})
}

// getCodeSigningConfig answers GetFunctionCodeSigningConfig: Hearth has no
// code signing, so every function has none, in Lambda's shape for none.
func (a *API) getCodeSigningConfig(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.cfg.Store.GetFunction(r.Context(), name); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"CodeSigningConfigArn": "", "FunctionName": name})
}
