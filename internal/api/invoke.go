package api

import (
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/spans"
)

// A caller that sends spansHeader (any value) is answered with the host's
// share of its invocation, in µs, in hostShareHeader, and each mark's time
// from the request's arrival in spansHeader: what `hearth bench load`
// reports. Only when asked, so that an answer tells no stranger about the
// host's timing.
const (
	spansHeader     = "X-Hearth-Spans"
	hostShareHeader = "X-Hearth-Host-Us"
	// NodeHeader names the host of a cluster that ran the invocation
	// (this one, or the one it was forwarded to).
	NodeHeader = "X-Hearth-Node"
)

// answerWrite bounds how long an invocation's answer may take to send.
const answerWrite = 2 * time.Minute

// invoke answers Invoke: the request becomes an invocation on the one
// invocation path, and its result Lambda's answer.
func (a *API) invoke(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	typ := invoke.Type(r.Header.Get("X-Amz-Invocation-Type"))
	limit := int64(invoke.MaxSyncPayload)
	if typ == invoke.Event {
		limit = invoke.MaxAsyncPayload
	}
	// Read one byte past the limit, so that a payload over it is refused
	// without reading the rest.
	payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		a.writeError(w, err)
		return
	}
	if int64(len(payload)) > limit {
		a.writeError(w, lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", limit))
		return
	}
	res, err := a.cfg.Invoker.Invoke(r.Context(), invoke.Request{Function: name, Qualifier: qualifier, Type: typ,
		Payload: payload, ClientContext: r.Header.Get("X-Amz-Client-Context")})
	if err != nil {
		a.writeError(w, err)
		return
	}
	// The invocation is over: a caller that does not read its answer may
	// hold this handler for a bounded time only, not the daemon's 20 min.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(answerWrite))
	h := w.Header()
	h.Set("X-Amz-Executed-Version", res.Version)
	h.Set("X-Amzn-RequestId", res.RequestID)
	switch typ {
	case invoke.DryRun:
		w.WriteHeader(http.StatusNoContent)
		return
	case invoke.Event:
		w.WriteHeader(http.StatusAccepted)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Hearth-Start-Type", string(res.StartType))
	if res.Node != "" {
		h.Set(NodeHeader, res.Node)
	}
	rec := spans.From(r.Context())
	rec.Mark(spans.Answered)
	host, measured := rec.Host()
	if measured && a.cfg.HostShares != nil {
		a.cfg.HostShares.HostShare(host)
	}
	if r.Header.Get(spansHeader) != "" {
		if measured {
			h.Set(hostShareHeader, strconv.FormatInt(host.Microseconds(), 10))
		}
		h.Set(spansHeader, rec.String())
	}
	if res.Error != nil {
		h.Set("X-Amz-Function-Error", "Unhandled")
	}
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString(res.LogTail))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Payload)
}
