package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// storeMeter keeps the scheduler's usage in the store, and counts it in
// the metrics. It bills each invocation by its prices as it records it, so
// that a record says what was billed under the prices of its day.
type storeMeter struct {
	st     *store.Store
	m      *metrics
	log    *slog.Logger
	prices meter.Prices
}

func (s storeMeter) warn(what string, err error) {
	if err != nil {
		s.log.Warn("metering", "what", what, "err", err)
	}
}

func (s storeMeter) Invoked(r meter.Record) {
	r.Bill(s.prices)
	s.warn("record", s.st.AddRecord(context.Background(), r))
	s.m.gbSeconds.WithLabelValues(r.Function).Add(r.GBSeconds)
	if r.PlatformInitMs > 0 {
		s.m.platformInit.Observe(r.PlatformInitMs / 1000)
	}
}

func (s storeMeter) EnvStarted(id, function string, memoryMB int, at time.Time) {
	s.warn("env start", s.st.EnvStarted(context.Background(), id, function, memoryMB, at))
}

func (s storeMeter) EnvEnded(id string) {
	s.warn("env end", s.st.EnvEnded(context.Background(), id, time.Now()))
	s.m.snapshotGone(id)
}

func (s storeMeter) Suspended(id, function string, bytes int64, took time.Duration) {
	s.warn("suspend", s.st.Suspended(context.Background(), id, function, bytes, time.Now()))
	s.m.suspends.Inc()
	s.m.suspendTime.Observe(took.Seconds())
	s.m.snapshotKept(id, bytes)
}

func (s storeMeter) Resumed(id string) {
	s.warn("resume", s.st.Resumed(context.Background(), id, time.Now()))
	s.m.resumes.Inc()
	s.m.snapshotGone(id)
}

var (
	_ scheduler.Meter = storeMeter{}
	_ invoke.Meter    = storeMeter{}
)

// parseSince reads "1h", "30m" (a duration back from now) or an RFC 3339
// time; empty is the beginning.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, lambdaerr.InvalidParameter("since must be a duration (1h, 30m) or an RFC 3339 time, not %q", s)
}

// cost answers GET /hearth/v1/cost?since=1h&function=NAME.
func (s *Server) cost(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	since, err := parseSince(r.URL.Query().Get("since"), now)
	if err != nil {
		s.api.WriteError(w, err)
		return
	}
	function := r.URL.Query().Get("function")
	ctx := r.Context()
	recs, err := s.store.Records(ctx, function, since, now)
	if err != nil {
		s.api.WriteError(w, err)
		return
	}
	spans, susp, err := s.store.Usage(ctx, since)
	if err != nil {
		s.api.WriteError(w, err)
		return
	}
	memory := map[string]int{}
	fns, _, err := s.store.ListFunctions(ctx, "", 10000)
	if err != nil {
		s.api.WriteError(w, err)
		return
	}
	for _, f := range fns {
		memory[f.FunctionName] = f.MemorySize
	}
	if function != "" {
		spans = filter(spans, func(x meter.EnvSpan) bool { return x.Function == function })
		susp = filter(susp, func(x meter.Suspension) bool { return x.Function == function })
	}
	// Without --since, the period starts with the first use: the first
	// environment's boot, or the first record.
	if r.URL.Query().Get("since") == "" {
		first := now
		if len(recs) > 0 {
			first = recs[0].Time.Add(-time.Duration(recs[0].BilledMs) * time.Millisecond)
		}
		for _, sp := range spans {
			if sp.Start.Before(first) {
				first = sp.Start
			}
		}
		since = first
	}
	writeJSON(w, meter.Price(s.cfg.Prices, since, now, recs, spans, susp, memory))
}

func filter[T any](xs []T, keep func(T) bool) []T {
	var out []T
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// status answers GET /hearth/v1/status: environments per function by
// state, and invocations by start type since the daemon started.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	byFn := s.sched.StatsByFunction()
	type fnStatus struct {
		Name      string `json:"name"`
		Busy      int    `json:"busy"`
		Warm      int    `json:"warm"`
		Suspended int    `json:"suspended"`
	}
	out := struct {
		Functions   []fnStatus     `json:"functions"`
		Invocations map[string]int `json:"invocations"`
		Time        time.Time      `json:"time"`
	}{Invocations: s.metrics.byStartType(), Time: time.Now().UTC()}
	// Every function, with or without environments.
	if fns, _, err := s.store.ListFunctions(r.Context(), "", 10000); err == nil {
		for _, f := range fns {
			if _, ok := byFn[f.FunctionName]; !ok {
				byFn[f.FunctionName] = scheduler.Stats{}
			}
		}
	}
	for name, st := range byFn {
		out.Functions = append(out.Functions, fnStatus{name, st.Busy, st.Warm, st.Suspended})
	}
	for i := 1; i < len(out.Functions); i++ {
		for j := i; j > 0 && strings.Compare(out.Functions[j].Name, out.Functions[j-1].Name) < 0; j-- {
			out.Functions[j], out.Functions[j-1] = out.Functions[j-1], out.Functions[j]
		}
	}
	writeJSON(w, out)
}
