package runtimeapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// response takes POST /invocation/{id}/response: the function's result.
func (s *Server) response(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if len(body) > MaxResponseBytes {
		// Lambda fails the invocation and tells the runtime why.
		msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponseBytes)
		if err := s.inv.Fail(id, "Function.ResponseSizeTooLarge", errorObject("Function.ResponseSizeTooLarge", msg)); err != nil {
			s.writeStateError(w, err)
			return
		}
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", msg)
		return
	}
	if err := s.inv.Respond(id, body); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}

func (s *Server) writeStateError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknownRequest):
		writeError(w, http.StatusBadRequest, "InvalidRequestID", err.Error())
	case errors.Is(err, ErrInvalidState):
		writeError(w, http.StatusForbidden, "InvalidStateTransition", err.Error())
	default:
		s.log.Error("runtime api", "err", err)
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
	}
}
