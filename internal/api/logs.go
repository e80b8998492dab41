package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// logs answers GET /hearth/v1/functions/{name}/logs: the last ?tail= lines
// (default 100) of the function's log; with ?follow=1 it then streams what
// is appended until the client goes away.
func (a *API) logs(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.cfg.Store.GetFunction(r.Context(), name); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	if a.cfg.Logs == nil {
		a.writeError(w, lambdaerr.Service("logs are not kept by this daemon"))
		return
	}
	tail := 100
	if s := r.URL.Query().Get("tail"); s != "" {
		if tail, err = strconv.Atoi(s); err != nil || tail < 0 {
			a.writeError(w, lambdaerr.InvalidParameter("tail must be a number of lines"))
			return
		}
	}
	b, off, err := a.cfg.Logs.Tail(name, tail)
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if r.URL.Query().Get("follow") == "" {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			var more []byte
			if more, off, err = a.cfg.Logs.ReadFrom(name, off); err != nil {
				return
			}
			if len(more) > 0 {
				if _, err := w.Write(more); err != nil {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
	}
}
