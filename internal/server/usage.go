package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/microvm"
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

// pools reports the scheduler's environments and the metrics' start types
// to the API's status.
type pools struct {
	sched *scheduler.Scheduler
	m     *metrics
	mv    *microvm.Manager
	srv   *Server // its queues, opened after the API
}

func (p pools) StatsByFunction() map[string]scheduler.Stats { return p.sched.StatsByFunction() }
func (p pools) StartTypes() map[string]int                  { return p.m.byStartType() }
func (p pools) StatsByImage() map[string]microvm.Stats      { return p.mv.StatsByImage() }

// QueueStatus reports each queue's messages.
func (p pools) QueueStatus(ctx context.Context) []api.QueueStatus {
	if p.srv == nil || p.srv.queues == nil {
		return nil
	}
	qs, err := p.srv.queues.List(ctx, "")
	if err != nil {
		return nil
	}
	var out []api.QueueStatus
	for _, q := range qs {
		if st, err := p.srv.queues.Stats(ctx, q.Name); err == nil {
			out = append(out, api.QueueStatus{Name: q.Name, Visible: st.Visible, InFlight: st.InFlight, Delayed: st.Delayed, OldestAgeSeconds: st.OldestAge.Seconds()})
		}
	}
	return out
}
