package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/scheduler"
)

type noPools struct{}

func (noPools) StatsByFunction() map[string]scheduler.Stats { return map[string]scheduler.Stats{} }
func (noPools) StartTypes() map[string]int                  { return map[string]int{} }

// MicroVMPools is a Pools that reports MicroVMs too: status (and `hearth
// top`) shows each image's as a "microvm:<image>" row, its running ones
// warm, those with a connection or exec open busy, and its suspended ones.
type MicroVMPools interface {
	StatsByImage() map[string]microvm.Stats
}

// QueuePools is a Pools that reports the queues too: status (and `hearth
// top`) shows each one's messages.
type QueuePools interface {
	QueueStatus(ctx context.Context) []QueueStatus
}

// QueueStatus is a queue's messages in GET /hearth/v1/status.
type QueueStatus struct {
	Name             string  `json:"name"`
	Visible          int     `json:"visible"`
	InFlight         int     `json:"inFlight"`
	Delayed          int     `json:"delayed"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
}

// Pools reports the daemon's environments and how invocations started, for
// GET /hearth/v1/status.
type Pools interface {
	StatsByFunction() map[string]scheduler.Stats
	// StartTypes counts invocations by start type since the daemon began.
	StartTypes() map[string]int
}

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
func (a *API) cost(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	since, err := parseSince(r.URL.Query().Get("since"), now)
	if err != nil {
		a.writeError(w, err)
		return
	}
	function := r.URL.Query().Get("function")
	ctx := r.Context()
	recs, err := a.cfg.Store.Records(ctx, function, since, now)
	if err != nil {
		a.writeError(w, err)
		return
	}
	spans, susp, err := a.cfg.Store.Usage(ctx, since)
	if err != nil {
		a.writeError(w, err)
		return
	}
	// MicroVMs' running periods, under "microvm:<image>" rows.
	runs, err := a.cfg.Store.MicroVMRuns(ctx, since)
	if err != nil {
		a.writeError(w, err)
		return
	}
	memory := map[string]int{}
	fns, _, err := a.cfg.Store.ListFunctions(ctx, "", 10000)
	if err != nil {
		a.writeError(w, err)
		return
	}
	for _, f := range fns {
		memory[f.FunctionName] = f.MemorySize
	}
	if function != "" {
		spans = filter(spans, func(x meter.EnvSpan) bool { return x.Function == function })
		susp = filter(susp, func(x meter.Suspension) bool { return x.Function == function })
		runs = filter(runs, func(x meter.EnvSpan) bool { return x.Function == function })
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
	if r.URL.Query().Get("by") == "host" {
		writeJSON(w, http.StatusOK, a.costByHost(since, now, recs, spans, susp, runs, memory))
		return
	}
	writeJSON(w, http.StatusOK, meter.PriceWithRuns(a.cfg.Prices, since, now, recs, spans, susp, runs, memory))
}

// HostCosts is GET /hearth/v1/cost?by=host's answer: the report of each
// host of a cluster (a standalone daemon's alone, as "local").
type HostCosts struct {
	Since  time.Time    `json:"since"`
	Until  time.Time    `json:"until"`
	Prices meter.Prices `json:"prices"`
	Hosts  []HostCost   `json:"hosts"`
}

// HostCost is one host's functions and total.
type HostCost struct {
	Host      string               `json:"host"`
	Functions []meter.FunctionCost `json:"functions"`
	Total     meter.FunctionCost   `json:"total"`
}

// costByHost prices each host's share of the meter apart (rows another
// host of a cluster made carry its name; this host's none). A function's
// always-on memory is split between the hosts it ran on, so that the
// hosts add up to the cluster.
func (a *API) costByHost(since, until time.Time, recs []meter.Record, spans []meter.EnvSpan, susp []meter.Suspension, runs []meter.EnvSpan, memory map[string]int) HostCosts {
	self := "local"
	if a.cfg.Cluster != nil {
		self = a.cfg.Cluster.Status().Node
	}
	name := func(h string) string {
		if h == "" {
			return self
		}
		return h
	}
	seen := map[string]bool{}
	for _, x := range recs {
		seen[name(x.Host)] = true
	}
	for _, x := range spans {
		seen[name(x.Host)] = true
	}
	for _, x := range runs {
		seen[name(x.Host)] = true
	}
	hosts := make([]string, 0, len(seen))
	for h := range seen {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	out := HostCosts{Since: since, Until: until, Prices: a.cfg.Prices}
	reps := make([]meter.Report, len(hosts))
	for i, h := range hosts {
		reps[i] = meter.PriceWithRuns(a.cfg.Prices, since, until,
			filter(recs, func(x meter.Record) bool { return name(x.Host) == h }),
			filter(spans, func(x meter.EnvSpan) bool { return name(x.Host) == h }),
			filter(susp, func(x meter.Suspension) bool { return name(x.Host) == h }),
			filter(runs, func(x meter.EnvSpan) bool { return name(x.Host) == h }), memory)
	}
	meter.ShareAlwaysOn(a.cfg.Prices, reps)
	for i, h := range hosts {
		out.Hosts = append(out.Hosts, HostCost{Host: h, Functions: reps[i].Functions, Total: reps[i].Total})
	}
	return out
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
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	pools := a.cfg.Pools
	if pools == nil {
		pools = noPools{}
	}
	byFn := pools.StatsByFunction()
	type fnStatus struct {
		Name      string `json:"name"`
		Busy      int    `json:"busy"`
		Warm      int    `json:"warm"`
		Paused    int    `json:"paused"`
		Suspended int    `json:"suspended"`
	}
	out := struct {
		Functions   []fnStatus     `json:"functions"`
		Queues      []QueueStatus  `json:"queues,omitempty"`
		Invocations map[string]int `json:"invocations"`
		Time        time.Time      `json:"time"`
	}{Invocations: pools.StartTypes(), Time: time.Now().UTC()}
	if qp, ok := pools.(QueuePools); ok {
		out.Queues = qp.QueueStatus(r.Context())
	}
	// Every function, with or without environments.
	if fns, _, err := a.cfg.Store.ListFunctions(r.Context(), "", 10000); err == nil {
		for _, f := range fns {
			if _, ok := byFn[f.FunctionName]; !ok {
				byFn[f.FunctionName] = scheduler.Stats{}
			}
		}
	}
	for name, st := range byFn {
		out.Functions = append(out.Functions, fnStatus{name, st.Busy, st.Warm, st.Paused, st.Suspended})
	}
	if mp, ok := pools.(MicroVMPools); ok {
		for name, st := range mp.StatsByImage() {
			out.Functions = append(out.Functions, fnStatus{"microvm:" + name, st.Active, st.Running - st.Active, 0, st.Suspended})
		}
	}
	slices.SortFunc(out.Functions, func(x, y fnStatus) int { return strings.Compare(x.Name, y.Name) })
	writeJSON(w, http.StatusOK, out)
}
