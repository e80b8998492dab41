package runtimeapi

import "net/http"

// The Runtime API's routes, as in AWS Lambda's runtime interface.
const prefix = "/2018-06-01/runtime"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/invocation/next", s.next)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/response", s.response)
	mux.HandleFunc("POST "+prefix+"/invocation/{id}/error", s.invocationError)
	mux.HandleFunc("POST "+prefix+"/init/error", s.initError)
	mux.HandleFunc("GET "+prefix+"/restore/next", s.restoreNext)
	mux.HandleFunc("POST "+prefix+"/restore/error", s.restoreError)
	return mux
}
