package api

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Lambda's payload limits: a synchronous event, an asynchronous one.
const (
	maxSyncPayload  = 6 << 20
	maxAsyncPayload = 1 << 20
)

func (a *API) invoke(w http.ResponseWriter, r *http.Request) {
	f, err := a.resolve(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	invType := r.Header.Get("X-Amz-Invocation-Type")
	if invType == "" {
		invType = "RequestResponse"
	}
	limit := int64(maxSyncPayload)
	if invType == "Event" {
		limit = maxAsyncPayload
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		a.writeError(w, err)
		return
	}
	if int64(len(payload)) > limit {
		a.writeError(w, lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", limit))
		return
	}
	concurrency, err := a.cfg.Store.Concurrency(r.Context(), f.FunctionName)
	if err != nil {
		a.writeError(w, err)
		return
	}
	req := sandbox.Request{Payload: payload, ClientContext: r.Header.Get("X-Amz-Client-Context")}
	switch invType {
	case "DryRun":
		w.Header().Set("X-Amz-Executed-Version", f.Version)
		w.WriteHeader(http.StatusNoContent)
		return
	case "Event":
		// Queued and run after the answer, as Lambda's asynchronous
		// invocations are.
		go func() {
			res, err := a.cfg.Invoker.Invoke(context.WithoutCancel(r.Context()), f, concurrency, req)
			if err != nil {
				a.cfg.Log.Warn("asynchronous invocation failed", "function", f.FunctionName, "err", err)
			} else if res.Error != nil {
				a.cfg.Log.Warn("asynchronous invocation: function error", "function", f.FunctionName, "type", res.Error.ErrorType)
			}
		}()
		w.WriteHeader(http.StatusAccepted)
		return
	case "RequestResponse":
	default:
		a.writeError(w, lambdaerr.InvalidParameter("X-Amz-Invocation-Type must be RequestResponse, Event or DryRun"))
		return
	}
	// As on Lambda, an invocation runs to its end (or its timeout) even if
	// the caller hangs up: cancelling it would kill a healthy environment.
	res, err := a.cfg.Invoker.Invoke(context.WithoutCancel(r.Context()), f, concurrency, req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeResult(w, r, f, res)
}

// writeResult answers an invocation as Lambda does: 200 with the payload;
// a function error flagged in X-Amz-Function-Error; the log tail on request.
func writeResult(w http.ResponseWriter, r *http.Request, f store.Function, res *sandbox.Result) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amz-Executed-Version", f.Version)
	h.Set("X-Amzn-RequestId", res.RequestID)
	h.Set("X-Hearth-Start-Type", string(res.StartType))
	if res.Error != nil {
		h.Set("X-Amz-Function-Error", "Unhandled")
	}
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString(res.LogTail))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Payload)
}
