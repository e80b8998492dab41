package runtimeapi

import "strings"

// The Runtime API's routes, as in AWS Lambda's runtime interface.
const prefix = "/2018-06-01/runtime"

// route is one endpoint: its method, its path under prefix (where {id}
// stands for one path segment) and its handler.
type route struct {
	method, path string
	handle       func(w *responseWriter, r *request)
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/invocation/next", s.next},
		{"POST", "/invocation/{id}/response", s.response},
		{"POST", "/invocation/{id}/error", s.invocationError},
		{"POST", "/init/error", s.initError},
		{"GET", "/restore/next", s.restoreNext},
		{"POST", "/restore/error", s.restoreError},
	}
}

// serve routes r: a path no route has is 404, a known path with another
// method 405.
func (s *Server) serve(w *responseWriter, r *request) {
	rest, ok := strings.CutPrefix(r.path, prefix)
	pathKnown := false
	if ok {
		for _, rt := range s.table {
			id, match := matchPath(rt.path, rest)
			if !match {
				continue
			}
			pathKnown = true
			if rt.method == r.method {
				r.id = id
				rt.handle(w, r)
				return
			}
		}
	}
	if pathKnown {
		writeError(w, statusMethodNotAllowed, "MethodNotAllowed", r.method+" "+r.path)
		return
	}
	writeError(w, statusNotFound, "NotFound", r.path)
}

// matchPath matches path against pattern, returning the segment {id}
// stood for (never empty, never with a slash).
func matchPath(pattern, path string) (string, bool) {
	before, after, wild := strings.Cut(pattern, "{id}")
	if !wild {
		return "", path == pattern
	}
	if !strings.HasPrefix(path, before) || !strings.HasSuffix(path, after) || len(path) <= len(before)+len(after) {
		return "", false
	}
	id := path[len(before) : len(path)-len(after)]
	if strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}
