package runtimeapi

// initError takes POST /init/error: the runtime could not initialise.
func (s *Server) initError(w *responseWriter, r *request) {
	errType, body, ok := readErrorPost(w, r)
	if !ok {
		return
	}
	if err := s.inv.InitFail(errType, body); err != nil {
		s.writeStateError(w, err)
		return
	}
	writeAccepted(w)
}
