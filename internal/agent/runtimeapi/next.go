package runtimeapi

import (
	"strconv"
)

// Headers of /invocation/next.
const (
	HeaderRequestID       = "Lambda-Runtime-Aws-Request-Id"
	HeaderDeadlineMs      = "Lambda-Runtime-Deadline-Ms"
	HeaderFunctionARN     = "Lambda-Runtime-Invoked-Function-Arn"
	HeaderTraceID         = "Lambda-Runtime-Trace-Id"
	HeaderClientContext   = "Lambda-Runtime-Client-Context"
	HeaderCognitoIdentity = "Lambda-Runtime-Cognito-Identity"
)

// next answers GET /invocation/next with the next event; it blocks until
// there is one.
func (s *Server) next(w *responseWriter, r *request) {
	ev, err := s.inv.Next(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			// The runtime went away (its connection closed) or the agent
			// is stopping; nobody is there to read an answer.
			s.log.Debug("next ended", "err", err)
			return
		}
		// Left unanswered, the runtime would get a 200 with no event.
		s.log.Error("next", "err", err)
		writeError(w, statusInternalServerError, "InternalError", err.Error())
		return
	}
	h := w.Header()
	h.Set(HeaderRequestID, ev.RequestID)
	h.Set(HeaderDeadlineMs, strconv.FormatInt(ev.DeadlineMs, 10))
	h.Set(HeaderFunctionARN, ev.FunctionARN)
	if ev.TraceID != "" {
		h.Set(HeaderTraceID, ev.TraceID)
	}
	if ev.ClientContext != "" {
		h.Set(HeaderClientContext, ev.ClientContext)
	}
	if ev.CognitoIdentity != "" {
		h.Set(HeaderCognitoIdentity, ev.CognitoIdentity)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(statusOK)
	_, _ = w.Write(ev.Payload)
}
