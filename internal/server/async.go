package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/hearthdev/hearth/internal/queue"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// AsyncOptions pace the asynchronous invocations; zero fields take
// Lambda's values (async.Config). Tests shorten the delays.
type AsyncOptions struct {
	// Workers bounds the events run at once.
	Workers int
	// RetryDelays are the waits after a function error (1 min, 2 min).
	RetryDelays []time.Duration
	// BackoffMin and BackoffMax bound the back-off after a throttle or
	// a host error (1 s to 5 min).
	BackoffMin, BackoffMax time.Duration
	// AckWait is how soon an event whose attempt a dead daemon left runs
	// again (30 s).
	AckWait time.Duration
}

// JetStreamDir is the broker's store, in dataDir.
func JetStreamDir(dataDir string) string { return filepath.Join(dataDir, "jetstream") }

// openBroker starts the embedded broker, unless the daemon has one
// already (the queues' wiring may start it first).
func (s *Server) openBroker(ctx context.Context) error {
	if s.broker != nil {
		return nil
	}
	b, err := broker.New(ctx, s.brokerConfig())
	if err != nil {
		return err
	}
	s.broker = b
	if err := s.joinCluster(ctx); err != nil {
		s.closeBroker(ctx)
		return err
	}
	return nil
}

// openAsync makes the stream of asynchronous invocations, before the
// invocation path that queues into it; startAsync starts its workers once
// the invocation path exists.
func (s *Server) openAsync(ctx context.Context) error {
	if err := s.openBroker(ctx); err != nil {
		return err
	}
	o := s.cfg.Async
	region := s.cfg.Region
	if region == "" {
		region = sandbox.DefaultRegion
	}
	m := newAsyncMetrics(s.metrics.registry)
	q, err := async.New(ctx, async.Config{JetStream: s.broker.JetStream(), Replicas: s.broker.Replicas(), Workers: o.Workers, RetryDelays: o.RetryDelays,
		BackoffMin: o.BackoffMin, BackoffMax: o.BackoffMax, AckWait: o.AckWait, Region: region, Observer: m, Log: s.log})
	if err != nil {
		return fmt.Errorf("asynchronous invocations: %w", err)
	}
	s.async = q
	s.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hearth_async_events",
		Help: "Asynchronous events kept: waiting, running, or waiting for a retry."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := q.Depth(ctx)
		if err != nil {
			return 0
		}
		return float64(n)
	}))
	return nil
}

// asyncQueues are the queues destinations and dead-letter queues name.
func (s *Server) asyncQueues() asyncQueues { return asyncQueues{s.queues} }

// asyncQueues is the daemon's queues as async.Queues (and api.Queues).
type asyncQueues struct{ q *queue.Service }

func (a asyncQueues) NameOf(arn string) (string, error) {
	name, err := a.q.NameOf(arn)
	if errors.Is(err, queue.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", async.ErrNoQueue, err)
	}
	return name, err
}

func (a asyncQueues) Send(ctx context.Context, name string, m async.Message) error {
	attrs := make(map[string]queue.MessageAttribute, len(m.Attributes))
	for k, v := range m.Attributes {
		attrs[k] = queue.MessageAttribute{DataType: v.DataType, StringValue: v.StringValue}
	}
	_, err := a.q.Send(ctx, name, queue.Message{Body: m.Body, Attributes: attrs})
	return err
}

// startAsync starts the workers: events a previous daemon left (queued,
// running, or waiting for a retry) run from now on.
func (s *Server) startAsync(ctx context.Context) {
	s.async.Start(ctx, async.Deps{Invoker: s.invoke, Functions: s.store, Queues: s.asyncQueues()})
}

// stopAsync stops the workers, waiting (until ctx ends) for the attempts
// running; then the broker stops.
func (s *Server) stopAsync(ctx context.Context) {
	if s.async != nil {
		s.async.Stop(ctx)
	}
}

func (s *Server) closeBroker(ctx context.Context) {
	s.leaveCluster(ctx)
	if s.broker != nil {
		s.broker.Shutdown(ctx)
		s.broker = nil
	}
}

// asyncMetrics counts asynchronous events for /metrics; it implements
// async.Observer.
type asyncMetrics struct {
	queued    *prometheus.CounterVec
	retries   *prometheus.CounterVec
	delivered *prometheus.CounterVec
}

func newAsyncMetrics(r *prometheus.Registry) *asyncMetrics {
	m := &asyncMetrics{
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hearth_async_events_queued_total",
			Help: "Asynchronous (Event) invocations accepted, by function."}, []string{"function"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hearth_async_retries_total",
			Help: "Attempts of asynchronous events that will be retried, by function and reason (function_error, throttled, error)."},
			[]string{"function", "reason"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hearth_async_deliveries_total",
			Help: "Deliveries of asynchronous events' records (on_success, on_failure) and events (dead_letter), by function, target and outcome (ok, failed)."},
			[]string{"function", "target", "outcome"}),
	}
	r.MustRegister(m.queued, m.retries, m.delivered)
	return m
}

func (m *asyncMetrics) Queued(function string) { m.queued.WithLabelValues(function).Inc() }

func (m *asyncMetrics) Retried(function, reason string) {
	m.retries.WithLabelValues(function, reason).Inc()
}

func (m *asyncMetrics) Delivered(function, target string, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	m.delivered.WithLabelValues(function, target, outcome).Inc()
}
