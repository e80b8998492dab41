package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// WriteError answers with Lambda's error shape, for Hearth's own routes.
func (a *API) WriteError(w http.ResponseWriter, err error) { a.writeError(w, err) }

// writeError answers with Lambda's error shape: the exception's name in
// X-Amzn-ErrorType, {"Type", "message"} in the body, the matching status,
// and a request id in X-Amzn-RequestId. An error that is not one of
// Lambda's is the daemon's own failure: its text may hold host paths or a
// guest's console, so the caller gets only a ServiceException with the
// request id, and the log the whole error under that id.
func (a *API) writeError(w http.ResponseWriter, err error) {
	requestID := w.Header().Get("X-Amzn-RequestId")
	if requestID == "" {
		requestID = uuid.NewString()
		w.Header().Set("X-Amzn-RequestId", requestID)
	}
	var le *lambdaerr.Error
	var th *lambdaerr.Throttled
	body := map[string]any{}
	switch {
	case errors.As(err, &th):
		le = th.Err
		body["Reason"] = th.Reason
		w.Header().Set("Retry-After", strconv.Itoa(1))
	case errors.As(err, &le):
	case errors.Is(err, store.ErrUnreachable):
		a.cfg.Log.Warn("api: configuration write refused: no quorum", "request_id", requestID, "err", err)
		le = lambdaerr.NoQuorum()
	case errors.Is(err, store.ErrNotFound):
		le = lambdaerr.ResourceNotFound("%s", err.Error())
	case errors.Is(err, store.ErrExists):
		le = lambdaerr.ResourceConflict("%s", err.Error())
	default:
		a.cfg.Log.Error("api: internal error", "request_id", requestID, "err", err)
		le = lambdaerr.Service("An internal error occurred. Request ID: %s", requestID)
	}
	if le.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(1))
	}
	body["message"] = le.Message
	body["Type"] = "User"
	if le.Status >= 500 {
		body["Type"] = "Service"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", le.Type)
	w.WriteHeader(le.Status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a JSON request body into v.
func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return lambdaerr.InvalidParameter("the request body is not valid JSON: %v", err)
	}
	return nil
}

// refWithBody reads the function a request names and decodes its JSON body
// into v: the start of every handler that changes something.
func refWithBody(r *http.Request, v any) (name, qualifier string, err error) {
	if name, qualifier, err = functionRef(r); err != nil {
		return "", "", err
	}
	return name, qualifier, decode(r, v)
}
