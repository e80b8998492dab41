// Package esm runs event source mappings: for each enabled mapping, pollers
// that take batches of messages from one of Hearth's queues, drop the
// messages its filter rejects, and invoke the function synchronously with
// an events.SQSEvent through the one invocation path; what the function
// processed is deleted, what failed returns to the queue after its
// visibility timeout. The pollers scale with the queue's backlog up to the
// mapping's MaximumConcurrency and back to one when the queue is empty, so
// that the function's environments go idle and are suspended.
//
// The mappings are rows in the store; the API writes a transitional state
// (Creating, Enabling, Updating, Disabling, Deleting) and calls Changed,
// and the manager settles it (Enabled, Disabled, or the row deleted) as it
// starts or stops the pollers. Start settles every mapping, so pollers
// come back with the daemon.
package esm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/store"
)

// Lambda's states of a mapping.
const (
	StateCreating  = "Creating"
	StateEnabling  = "Enabling"
	StateEnabled   = "Enabled"
	StateUpdating  = "Updating"
	StateDisabling = "Disabling"
	StateDisabled  = "Disabled"
	StateDeleting  = "Deleting"
)

// Mappings keeps the mappings; the store is one.
type Mappings interface {
	GetEventSourceMapping(ctx context.Context, uuid string) (store.EventSourceMapping, error)
	UpdateEventSourceMapping(ctx context.Context, uuid string, fn func(*store.EventSourceMapping) error) (store.EventSourceMapping, error)
	DeleteEventSourceMapping(ctx context.Context, uuid string) error
	ListEventSourceMappings(ctx context.Context, f store.ESMFilter, marker string, max int) ([]store.EventSourceMapping, string, error)
}

// Invoker is the invocation path; invoke.Service is it.
type Invoker interface {
	Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error)
}

// Functions reads a function's reserved concurrency (nil for none); the
// store is one.
type Functions interface {
	Concurrency(ctx context.Context, function string) (*int, error)
}

// Observer counts what the pollers do, for metrics.
type Observer interface {
	Batch(mapping string, b BatchResult)
}

// BatchResult is one batch's end.
type BatchResult struct {
	Function string
	// Messages is how many the function was given, Failed how many of
	// them return to the queue, Filtered how many the filter dropped.
	Messages, Failed, Filtered int
	// Err is the invocation's refusal or the platform's failure (then
	// every message failed); nil for a function error.
	Err error
}

// Config is what the manager needs.
type Config struct {
	Mappings  Mappings
	Queues    Queues
	Invoker   Invoker
	Functions Functions
	Observer  Observer
	// Region is the records' awsRegion.
	Region string
	// DefaultConcurrency caps a mapping without ScalingConfig (the host's
	// bound on invocations in flight); 0 is 5, Lambda's pollers at start.
	DefaultConcurrency int
	// ScaleEvery is how often a mapping's pollers are counted against
	// its backlog; 0 is a second.
	ScaleEvery time.Duration
	// IdleWait is a long poll's wait on an empty queue; 0 is 20 s, SQS's
	// longest.
	IdleWait time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Manager runs the mappings' pollers.
type Manager struct {
	cfg Config
	// ctx is the pollers' (Start's, until Shutdown).
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	runners map[string]*runner
	wg      sync.WaitGroup
}

// New returns a manager; Start starts it.
func New(cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DefaultConcurrency <= 0 {
		cfg.DefaultConcurrency = 5
	}
	if cfg.ScaleEvery <= 0 {
		cfg.ScaleEvery = time.Second
	}
	if cfg.IdleWait <= 0 {
		cfg.IdleWait = 20 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, ctx: ctx, cancel: cancel, runners: map[string]*runner{}}
}

// QueueName returns the name of the queue an event source ARN names; an
// error wrapping ErrNoQueue when it names none of Hearth's queues.
func (m *Manager) QueueName(arn string) (string, error) { return m.cfg.Queues.NameOf(arn) }

// Start settles every mapping: the enabled ones' pollers start.
func (m *Manager) Start(ctx context.Context) error {
	marker := ""
	for {
		page, next, err := m.cfg.Mappings.ListEventSourceMappings(ctx, store.ESMFilter{}, marker, 1000)
		if err != nil {
			return fmt.Errorf("esm: listing the mappings: %w", err)
		}
		for _, rec := range page {
			if err := m.Changed(ctx, rec.UUID); err != nil {
				m.cfg.Log.Warn("esm: starting a mapping", "uuid", rec.UUID, "err", err)
			}
		}
		if marker = next; next == "" {
			return nil
		}
	}
}

// Changed settles a mapping the API changed: its pollers start, restart
// with its new settings, or stop, and its state becomes Enabled or
// Disabled, or, when it was being deleted, its row goes.
func (m *Manager) Changed(ctx context.Context, uuid string) error {
	rec, err := m.cfg.Mappings.GetEventSourceMapping(ctx, uuid)
	if errors.Is(err, store.ErrNotFound) {
		m.stop(uuid)
		return nil
	}
	if err != nil {
		return err
	}
	if m.ctx.Err() != nil {
		return errors.New("esm: the manager is shut down")
	}
	switch {
	case rec.State == StateDeleting:
		m.stop(uuid)
		if err := m.cfg.Mappings.DeleteEventSourceMapping(ctx, uuid); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	case !rec.Enabled:
		m.stop(uuid)
		return m.settle(ctx, rec, StateDisabled)
	}
	m.run(rec)
	return m.settle(ctx, rec, StateEnabled)
}

// settle moves a mapping from the state it was read in to final, unless
// the API changed it meanwhile (its own Changed settles that).
func (m *Manager) settle(ctx context.Context, read store.EventSourceMapping, final string) error {
	if read.State == final {
		return nil
	}
	_, err := m.cfg.Mappings.UpdateEventSourceMapping(ctx, read.UUID, func(rec *store.EventSourceMapping) error {
		if rec.State == read.State && rec.LastModified.Equal(read.LastModified) {
			rec.State = final
		}
		return nil
	})
	return err
}

// run (re)starts a mapping's pollers with rec's settings; a running
// mapping whose settings are the same keeps its pollers.
func (m *Manager) run(rec store.EventSourceMapping) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.runners[rec.UUID]; r != nil {
		if sameSettings(r.rec, rec) {
			return
		}
		r.cancel()
	}
	filter, err := CompileFilter(rec.Filters)
	if err != nil {
		// The API compiled it before storing it.
		m.cfg.Log.Error("esm: a stored filter does not compile", "uuid", rec.UUID, "err", err)
		filter = &Filter{}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r := &runner{m: m, rec: rec, filter: filter, ctx: ctx, cancel: cancel, log: m.cfg.Log.With("esm", rec.UUID, "function", rec.Function)}
	m.runners[rec.UUID] = r
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.run()
	}()
}

// sameSettings says whether two records of a mapping poll alike.
func sameSettings(a, b store.EventSourceMapping) bool {
	return a.Function == b.Function && a.Qualifier == b.Qualifier && a.EventSourceArn == b.EventSourceArn &&
		a.BatchSize == b.BatchSize && a.MaximumBatchingWindowInSeconds == b.MaximumBatchingWindowInSeconds &&
		a.ReportBatchItemFailures == b.ReportBatchItemFailures && a.MaximumConcurrency == b.MaximumConcurrency &&
		fmt.Sprint(a.Filters) == fmt.Sprint(b.Filters)
}

// stop ends a mapping's pollers. An invocation in flight runs to its end
// and its messages are still deleted; Shutdown waits for it, stop does
// not.
func (m *Manager) stop(uuid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.runners[uuid]; r != nil {
		r.cancel()
		delete(m.runners, uuid)
	}
}

// Pollers is how many pollers a mapping runs now (0 when it runs none).
func (m *Manager) Pollers(uuid string) int {
	m.mu.Lock()
	r := m.runners[uuid]
	m.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.pollers()
}

// Shutdown stops every poller and waits, until ctx ends, for the
// invocations in flight and their deletes.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("esm: pollers still running: %w", ctx.Err())
	}
}
