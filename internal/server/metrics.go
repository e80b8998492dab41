package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/queue"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// metrics counts what the daemon does, for /metrics, on a registry of its
// own (no global state: two daemons in one test process stay apart).
type metrics struct {
	registry    *prometheus.Registry
	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	restore     *prometheus.HistogramVec
	gbSeconds   *prometheus.CounterVec
	// platformInit is the cold starts' platform part, unbilled by default:
	// beside the billed GB-s, what making sandboxes costs the host.
	platformInit prometheus.Histogram
	// hostShare is the host's own share of each synchronous invocation
	// that reached a guest (spans.Recorder.Host): Hearth's code, not the
	// function's.
	hostShare   prometheus.Histogram
	suspends    prometheus.Counter
	resumes     prometheus.Counter
	suspendTime prometheus.Histogram
	throttles   *prometheus.CounterVec
	// egressDenied counts the connections the guests' egress policies
	// refused; the network mechanism reads them from each environment's
	// nftables counters and reports them through EgressDenied.
	egressDenied *prometheus.CounterVec

	mu        sync.Mutex
	starts    map[string]int   // invocations by start type, for hearth top
	snapshots map[string]int64 // suspended env → its snapshot's bytes on disk
}

func (m *metrics) snapshotKept(id string, bytes int64) {
	m.mu.Lock()
	m.snapshots[id] = bytes
	m.mu.Unlock()
}

func (m *metrics) snapshotGone(id string) {
	m.mu.Lock()
	delete(m.snapshots, id)
	m.mu.Unlock()
}

func (m *metrics) snapshotBytes() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, b := range m.snapshots {
		n += b
	}
	return float64(n)
}

func (m *metrics) byStartType() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.starts))
	for k, v := range m.starts {
		out[k] = v
	}
	return out
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_invocations_total", Help: "Invocations by function, start type and outcome.",
		}, []string{"function", "start_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_invocation_duration_seconds", Help: "Invocation durations (the function's run), by start type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"start_type"}),
		restore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_restore_duration_seconds", Help: "Time to resume or clone an environment.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"start_type"}),
		gbSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_billed_gb_seconds_total", Help: "Billed GB-seconds (init and restore included, as Lambda bills; platform init only with prices.billPlatformInit).",
		}, []string{"function"}),
		platformInit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hearth_platform_init_duration_seconds",
			Help:    "Cold starts' platform init (VMM start and kernel boot), outside Lambda's Init Duration; billed only with prices.billPlatformInit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		hostShare: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hearth_invocation_host_seconds",
			Help:    "The host's share of each synchronous Invoke that reached a guest: from the request in to the answer out, less the time the guest held it.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 12),
		}),
		suspends: prometheus.NewCounter(prometheus.CounterOpts{Name: "hearth_suspends_total", Help: "Environments suspended."}),
		resumes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "hearth_resumes_total", Help: "Suspended environments taken to be resumed."}),
		suspendTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hearth_suspend_duration_seconds",
			Help: "Time to suspend an environment (state written, VMM gone, page cache released).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hearth_throttles_total",
			Help: "Invocations refused with 429, by function."}, []string{"function"}),
		egressDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hearth_egress_denied_total",
			Help: "Connections from guests refused by the egress policy, by function and reason (policy, disabled, host, guest, link_local, private)."},
			[]string{"function", "reason"}),
		starts:    map[string]int{},
		snapshots: map[string]int64{},
	}
	m.registry.MustRegister(m.invocations, m.duration, m.restore, m.gbSeconds, m.platformInit, m.hostShare, m.suspends, m.resumes, m.suspendTime, m.throttles, m.egressDenied,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_suspended_snapshot_bytes",
			Help: "Disk held by the snapshots of suspended environments (state and sparse memory)."}, m.snapshotBytes))
	return m
}

// watch adds the scheduler's gauges.
func (m *metrics) watch(sched *scheduler.Scheduler) {
	envs := func(pick func(scheduler.Stats) int) func() float64 {
		return func() float64 { return float64(pick(sched.Stats())) }
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_environments_busy", Help: "Environments running an invocation."},
			envs(func(s scheduler.Stats) int { return s.Busy })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_environments_warm", Help: "Idle environments kept warm."},
			envs(func(s scheduler.Stats) int { return s.Warm })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_environments_paused", Help: "Idle environments paused: a VMM process, its guest memory out of host RAM."},
			envs(func(s scheduler.Stats) int { return s.Paused })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_environments_suspended", Help: "Suspended environments: no process, no RAM."},
			envs(func(s scheduler.Stats) int { return s.Suspended })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hearth_boots_given_up_total",
			Help: "Calls that took an environment released while they waited for their boot's turn (the boot given up)."},
			func() float64 { return float64(sched.Usage().Handed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hearth_calls_retaken_total",
			Help: "Calls moved to another environment: the one they took had stopped before their event reached it."},
			func() float64 { return float64(sched.Usage().Retaken) }),
	)
}

// watchQueues adds the queues' gauges, read at each scrape.
func (m *metrics) watchQueues(q *queue.Service) {
	m.registry.MustRegister(queueCollector{q})
}

var (
	queueMessagesDesc = prometheus.NewDesc("hearth_queue_messages",
		"Messages in each queue, by state: visible, in_flight (received, not deleted, hidden), delayed.", []string{"queue", "state"}, nil)
	queueOldestDesc = prometheus.NewDesc("hearth_queue_oldest_message_age_seconds",
		"Age of each queue's oldest message.", []string{"queue"}, nil)
)

// queueCollector reports each queue's depth and oldest message.
type queueCollector struct{ q *queue.Service }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMessagesDesc
	ch <- queueOldestDesc
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qs, err := c.q.List(ctx, "")
	if err != nil {
		return
	}
	for _, q := range qs {
		st, err := c.q.Stats(ctx, q.Name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(queueMessagesDesc, prometheus.GaugeValue, float64(st.Visible), q.Name, "visible")
		ch <- prometheus.MustNewConstMetric(queueMessagesDesc, prometheus.GaugeValue, float64(st.InFlight), q.Name, "in_flight")
		ch <- prometheus.MustNewConstMetric(queueMessagesDesc, prometheus.GaugeValue, float64(st.Delayed), q.Name, "delayed")
		ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, st.OldestAge.Seconds(), q.Name)
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// HostShare observes the host's share of one invocation (api.HostShares).
func (m *metrics) HostShare(d time.Duration) { m.hostShare.Observe(d.Seconds()) }

// Invocation counts an invocation as it ends; it implements
// invoke.Observer.
func (m *metrics) Invocation(function string, res *sandbox.Result, err error) {
	outcome, start := "ok", "none"
	var th *lambdaerr.Throttled
	switch {
	case errors.As(err, &th):
		outcome = "throttled"
		m.throttles.WithLabelValues(function).Inc()
	case err != nil:
		outcome = "refused"
	case res.Error != nil:
		outcome = "function_error"
	}
	if res != nil {
		start = string(res.StartType)
		if res.Duration > 0 {
			m.duration.WithLabelValues(start).Observe(res.Duration.Seconds())
		}
		if res.Restore > 0 {
			m.restore.WithLabelValues(start).Observe(res.Restore.Seconds())
		}
	}
	m.invocations.WithLabelValues(function, start, outcome).Inc()
	m.mu.Lock()
	m.starts[start]++
	m.mu.Unlock()
}

// EgressDenied adds n refused connections of function for reason (one of
// network.Reasons); it implements network.DeniedCounter.
func (m *metrics) EgressDenied(function, reason string, n uint64) {
	if n > 0 {
		m.egressDenied.WithLabelValues(function, reason).Add(float64(n))
	}
}

var _ network.DeniedCounter = (*metrics)(nil)
