package runtimeapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Trailers a streaming runtime sets when its response fails midway.
const (
	TrailerErrorType = "Lambda-Runtime-Function-Error-Type"
	TrailerErrorBody = "Lambda-Runtime-Function-Error-Body"
)

// response takes POST /invocation/{id}/response: the function's result.
func (s *Server) response(w *responseWriter, r *request) {
	id := r.PathValue("id")
	if s.inv.Streaming(id) {
		s.streamResponse(w, r, id)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	if err != nil {
		writeError(w, statusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if len(body) > MaxResponseBytes {
		// Lambda fails the invocation and tells the runtime why.
		msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponseBytes)
		if err := s.inv.Fail(id, "Function.ResponseSizeTooLarge", errorObject("Function.ResponseSizeTooLarge", msg)); err != nil {
			s.writeStateError(w, err)
			return
		}
		writeError(w, statusRequestEntityTooLarge, "RequestEntityTooLarge", msg)
		return
	}
	// A runtime that streams (aws-lambda-go does for a streaming handler)
	// reports a failure midway in the trailers, also when its caller takes
	// the response whole.
	if errType, errBody, failed := trailerError(r); failed {
		if err := s.inv.Fail(id, errType, errBody); err != nil {
			s.writeStateError(w, err)
			return
		}
		writeAccepted(w)
		return
	}
	if err := s.inv.Respond(id, body); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}

// trailerError reads the error a runtime put in its response's trailers,
// once the body has been read to its end.
func trailerError(r *request) (string, []byte, bool) {
	errType := r.Trailer.Get(TrailerErrorType)
	if errType == "" {
		return "", nil, false
	}
	body, err := base64.StdEncoding.DecodeString(r.Trailer.Get(TrailerErrorBody))
	if err != nil || len(body) == 0 {
		body = errorObject(errType, "the function failed while streaming its response")
	}
	return errType, body, true
}

func (s *Server) writeStateError(w *responseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknownRequest):
		writeError(w, statusBadRequest, "InvalidRequestID", err.Error())
	case errors.Is(err, ErrInvalidState):
		writeError(w, statusForbidden, "InvalidStateTransition", err.Error())
	default:
		s.log.Error("runtime api", "err", err)
		writeError(w, statusInternalServerError, "InternalError", err.Error())
	}
}

// streamResponse forwards a response as the runtime writes it, for a caller
// that streams (a function URL in RESPONSE_STREAM mode). An error the
// runtime reports in the trailers ends the stream as a function error.
func (s *Server) streamResponse(w *responseWriter, r *request, id string) {
	buf := make([]byte, 32<<10)
	contentType := r.Header.Get("Content-Type")
	total := 0
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			total += n
			if total > guestproto.MaxStreamBytes {
				msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", guestproto.MaxStreamBytes)
				_ = s.inv.Fail(id, "Function.ResponseSizeTooLarge", errorObject("Function.ResponseSizeTooLarge", msg))
				writeError(w, statusRequestEntityTooLarge, "RequestEntityTooLarge", msg)
				return
			}
			if cerr := s.inv.Chunk(id, contentType, buf[:n]); cerr != nil {
				s.writeStateError(w, cerr)
				return
			}
			contentType = ""
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = s.inv.Fail(id, "Runtime.StreamError", errorObject("Runtime.StreamError", err.Error()))
			writeError(w, statusBadRequest, "InvalidRequest", err.Error())
			return
		}
	}
	if errType, body, failed := trailerError(r); failed {
		if err := s.inv.Fail(id, errType, body); err != nil {
			s.writeStateError(w, err)
			return
		}
		writeAccepted(w)
		return
	}
	if err := s.inv.Respond(id, nil); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}
