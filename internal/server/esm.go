package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/esm"
	"github.com/hearthdev/hearth/internal/queue"
)

// The manager is what the API's event source mapping routes drive.
var _ api.EventSources = (*esm.Manager)(nil)

// esmMetrics counts what the mappings' pollers do, per mapping, for
// /metrics.
type esmMetrics struct {
	messages *prometheus.CounterVec
	batches  *prometheus.CounterVec
}

func newESMMetrics(reg prometheus.Registerer) *esmMetrics {
	m := &esmMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_esm_messages_total",
			Help: "Messages of event source mappings by outcome: processed (deleted after the function's success), failed (back to the queue), filtered (deleted, never delivered).",
		}, []string{"mapping", "function", "outcome"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_esm_batches_total",
			Help: "Batches event source mappings gave their functions, by outcome: ok, partial (some items failed) or failed.",
		}, []string{"mapping", "function", "outcome"}),
	}
	reg.MustRegister(m.messages, m.batches)
	return m
}

// Batch implements esm.Observer.
func (m *esmMetrics) Batch(mapping string, b esm.BatchResult) {
	if b.Filtered > 0 {
		m.messages.WithLabelValues(mapping, b.Function, "filtered").Add(float64(b.Filtered))
	}
	if b.Messages == 0 {
		return
	}
	m.messages.WithLabelValues(mapping, b.Function, "processed").Add(float64(b.Messages - b.Failed))
	if b.Failed > 0 {
		m.messages.WithLabelValues(mapping, b.Function, "failed").Add(float64(b.Failed))
	}
	outcome := "ok"
	switch {
	case b.Failed == b.Messages:
		outcome = "failed"
	case b.Failed > 0:
		outcome = "partial"
	}
	m.batches.WithLabelValues(mapping, b.Function, outcome).Inc()
}

// esmQueues is the daemon's queues as the pollers use them.
func (s *Server) esmQueues() esm.Queues {
	if s.queues == nil {
		return nil
	}
	return esmQueueAdapter{s.queues}
}

// esmQueueAdapter turns queue.Service into esm.Queues: its messages into
// esm.Message, its ErrNotFound into esm.ErrNoQueue.
type esmQueueAdapter struct{ q *queue.Service }

func (a esmQueueAdapter) NameOf(arn string) (string, error) {
	name, err := a.q.NameOf(arn)
	if errors.Is(err, queue.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", esm.ErrNoQueue, err)
	}
	return name, err
}

func (a esmQueueAdapter) Receive(ctx context.Context, name string, max int, wait, visibility time.Duration) ([]esm.Message, error) {
	rs, err := a.q.Receive(ctx, name, max, wait, visibility)
	if errors.Is(err, queue.ErrNotFound) {
		err = fmt.Errorf("%w: %w", esm.ErrNoQueue, err)
	}
	out := make([]esm.Message, 0, len(rs))
	for _, r := range rs {
		m := esm.Message{MessageID: r.MessageID, ReceiptHandle: r.ReceiptHandle, Body: r.Body, MD5OfBody: r.MD5OfBody,
			MD5OfMessageAttributes: queue.MD5OfAttributes(r.MessageAttributes),
			Attributes:             r.Attributes, MessageAttributes: make(map[string]esm.MessageAttribute, len(r.MessageAttributes))}
		for k, v := range r.MessageAttributes {
			m.MessageAttributes[k] = esm.MessageAttribute{DataType: v.DataType, StringValue: v.StringValue, BinaryValue: v.BinaryValue}
		}
		out = append(out, m)
	}
	return out, err
}

func (a esmQueueAdapter) Delete(ctx context.Context, name, receiptHandle string) error {
	return a.q.Delete(ctx, name, receiptHandle)
}

func (a esmQueueAdapter) ChangeVisibility(ctx context.Context, name, receiptHandle string, d time.Duration) error {
	return a.q.ChangeVisibility(ctx, name, receiptHandle, d)
}

func (a esmQueueAdapter) Stats(ctx context.Context, name string) (esm.QueueStats, error) {
	st, err := a.q.Stats(ctx, name)
	return esm.QueueStats{Visible: st.Visible, InFlight: st.InFlight, Delayed: st.Delayed, OldestAge: st.OldestAge}, err
}

// openEventSources makes the event source mappings' manager over the
// daemon's queues; with no queues (nil) the daemon takes no mappings.
// Start starts it, Shutdown stops it before the queues go.
func (s *Server) openEventSources(queues esm.Queues) {
	if queues == nil {
		return
	}
	s.esm = esm.New(esm.Config{Mappings: s.store, Queues: queues, Invoker: s.invoke, Functions: s.store,
		Observer: newESMMetrics(s.metrics.registry), Region: s.cfg.Region, DefaultConcurrency: s.cfg.MaxConcurrency, Log: s.log})
}

// eventSources is the manager for the API; nil (no interface holding a
// nil pointer) when the daemon runs no queues.
func (s *Server) eventSources() api.EventSources {
	if s.esm == nil {
		return nil
	}
	return s.esm
}

// startEventSources starts the enabled mappings' pollers.
func (s *Server) startEventSources(ctx context.Context) {
	if s.esm == nil {
		return
	}
	if err := s.esm.Start(ctx); err != nil {
		s.log.Warn("starting the event source mappings", "err", err)
	}
}

// stopEventSources stops the pollers and waits (until ctx ends) for their
// invocations in flight to end and their messages to be deleted.
func (s *Server) stopEventSources(ctx context.Context) {
	if s.esm == nil {
		return
	}
	if err := s.esm.Shutdown(ctx); err != nil {
		s.log.Warn("stopping the event source mappings", "err", err)
	}
}

// EventSources is the daemon's event source mapping manager (nil without
// queues), for tests.
func (s *Server) EventSources() *esm.Manager { return s.esm }
