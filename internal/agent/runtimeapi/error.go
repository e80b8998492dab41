package runtimeapi

import (
	"encoding/json"
	"io"
)

// HeaderErrorType is the header in which a runtime names its error's type.
const HeaderErrorType = "Lambda-Runtime-Function-Error-Type"

// invocationError takes POST /invocation/{id}/error: the function failed.
func (s *Server) invocationError(w *responseWriter, r *request) {
	errType, body, ok := readErrorPost(w, r)
	if !ok {
		return
	}
	if err := s.inv.Fail(r.PathValue("id"), errType, body); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}

// readErrorPost reads an error post. The body should be Lambda's error
// object; a body that is not is wrapped into one so the caller always gets
// the documented shape.
func readErrorPost(w *responseWriter, r *request) (string, []byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	if err != nil {
		writeError(w, statusBadRequest, "InvalidRequest", err.Error())
		return "", nil, false
	}
	if len(body) > MaxResponseBytes {
		body = body[:MaxResponseBytes]
	}
	errType := r.Header.Get(HeaderErrorType)
	var obj struct {
		ErrorMessage *string `json:"errorMessage"`
		ErrorType    string  `json:"errorType"`
	}
	if json.Unmarshal(body, &obj) != nil || obj.ErrorMessage == nil {
		if errType == "" {
			errType = "Runtime.Unknown"
		}
		body = errorObject(errType, string(body))
	} else if errType == "" {
		errType = obj.ErrorType
	}
	if errType == "" {
		errType = "Runtime.Unknown"
	}
	return errType, body, true
}

func errorObject(errorType, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorMessage": msg, "errorType": errorType})
	return b
}

func writeError(w *responseWriter, status int, errorType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorObject(errorType, msg))
}

func writeAccepted(w *responseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}
