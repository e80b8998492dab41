package runtimeapi

// restoreNext answers GET /restore/next once the environment has been
// restored from a snapshot. A runtime calls it after its before-snapshot
// hooks, as the last step of init, and runs its after-restore hooks when it
// returns.
func (s *Server) restoreNext(w *responseWriter, r *request) {
	if err := s.inv.RestoreNext(r.Context()); err != nil {
		if r.Context().Err() != nil {
			s.log.Debug("restore/next ended", "err", err)
			return
		}
		s.log.Error("restore/next", "err", err)
		writeError(w, statusInternalServerError, "InternalError", err.Error())
		return
	}
	w.WriteHeader(statusOK)
}

// restoreError takes POST /restore/error: an after-restore hook failed.
func (s *Server) restoreError(w *responseWriter, r *request) {
	errType, body, ok := readErrorPost(w, r)
	if !ok {
		return
	}
	if err := s.inv.RestoreFail(errType, body); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}
