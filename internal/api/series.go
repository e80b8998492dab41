package api

import (
	"context"
	"net/http"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
)

// series answers GET /hearth/v1/usage/series?since=1h&step=1m&function=NAME:
// the meter's records and the MicroVMs' running periods in equal steps
// (meter.Series), for the web console's charts: GB-s per function beside
// the always-on line, and start latency by start type. since defaults to
// one hour; step to a sixtieth of the period.
func (a *API) series(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	q := r.URL.Query()
	sinceArg := q.Get("since")
	if sinceArg == "" {
		sinceArg = "1h"
	}
	since, err := parseSince(sinceArg, now)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var step time.Duration
	if s := q.Get("step"); s != "" {
		if step, err = time.ParseDuration(s); err != nil || step <= 0 {
			a.writeError(w, lambdaerr.InvalidParameter("step must be a positive duration (10s, 1m), not %q", s))
			return
		}
	}
	function := q.Get("function")
	ctx := r.Context()
	recs, err := a.cfg.Store.Records(ctx, function, since, now)
	if err != nil {
		a.writeError(w, err)
		return
	}
	runs, err := a.cfg.Store.MicroVMRuns(ctx, since)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if function != "" {
		runs = filter(runs, func(x meter.EnvSpan) bool { return x.Function == function })
	}
	memory, err := a.functionMemory(ctx)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, meter.BuildSeries(since, now, step, recs, runs, memory))
}

// functionMemory is each function's memory now.
func (a *API) functionMemory(ctx context.Context) (map[string]int, error) {
	fns, _, err := a.cfg.Store.ListFunctions(ctx, "", 10000)
	if err != nil {
		return nil, err
	}
	memory := make(map[string]int, len(fns))
	for _, f := range fns {
		memory[f.FunctionName] = f.MemorySize
	}
	return memory, nil
}

// Buckets lists the daemon's buckets, for GET /hearth/v1/buckets: the S3
// endpoint is on a listener of its own, which a page served by the API's
// listener would have to reach across origins.
type Buckets interface {
	ListBucketSummaries(ctx context.Context) ([]BucketSummary, error)
}

// BucketSummary is one bucket in GET /hearth/v1/buckets.
type BucketSummary struct {
	Name         string    `json:"name"`
	CreationDate time.Time `json:"creationDate"`
}

// buckets answers GET /hearth/v1/buckets.
func (a *API) buckets(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Buckets []BucketSummary `json:"buckets"`
	}{Buckets: []BucketSummary{}}
	if a.cfg.Buckets != nil {
		bs, err := a.cfg.Buckets.ListBucketSummaries(r.Context())
		if err != nil {
			a.writeError(w, err)
			return
		}
		if bs != nil {
			out.Buckets = bs
		}
	}
	writeJSON(w, http.StatusOK, out)
}
