package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/invoke"
)

// The stream and its consumer.
const (
	StreamName    = "ASYNC"
	subjectPrefix = "async."
	consumerName  = "workers"
)

// Config is the queue's stream and its workers' pace.
type Config struct {
	JetStream jetstream.JetStream
	// Replicas is how many copies the events' stream keeps
	// (broker.Broker.Replicas: 1 standalone, up to 3 in a cluster).
	Replicas int
	// Workers bounds the events run at once; 16 if zero.
	Workers int
	// RetryDelays are the waits after a function error, the first, the
	// second…; Lambda's 1 min and 2 min if empty. Tests shorten them.
	RetryDelays []time.Duration
	// BackoffMin and BackoffMax bound the back-off after a throttle or a
	// host error (doubling from the first to the second); Lambda's 1 s and
	// 5 min if zero.
	BackoffMin, BackoffMax time.Duration
	// AckWait is how long an event taken by a worker that says nothing
	// more stays taken (a worker's heartbeats keep it while it runs): a
	// daemon that dies mid-attempt gets it back that long after; 30 s if
	// zero.
	AckWait time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Region appears in the records' ARNs.
	Region string
	// Observer counts what happens to events; nil counts nothing.
	Observer Observer
	Log      *slog.Logger
}

func (c Config) retryDelay(n int) time.Duration {
	d := c.RetryDelays
	if n > len(d) {
		return d[len(d)-1]
	}
	return d[n-1]
}

func (c Config) backoff(n int) time.Duration {
	d := c.BackoffMin
	for i := 1; i < n && d < c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.BackoffMax)
}

// Deps are what the workers run events with.
type Deps struct {
	Invoker   Invoker
	Functions Functions
	// Queues sends to queues; nil when the daemon has none (a queue
	// destination then fails).
	Queues Queues
}

// Queue is the stream of asynchronous events and its workers.
type Queue struct {
	cfg      Config
	stream   jetstream.Stream
	consumer jetstream.Consumer

	mu      sync.Mutex
	cancel  context.CancelFunc
	loop    sync.WaitGroup
	running sync.WaitGroup
}

// New makes (or finds) the stream and its durable consumer.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("async: no JetStream")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if len(cfg.RetryDelays) == 0 {
		cfg.RetryDelays = []time.Duration{time.Minute, 2 * time.Minute}
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	var s jetstream.Stream
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		s, err = cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: StreamName, Subjects: []string{subjectPrefix + ">"},
			Replicas:  max(cfg.Replicas, 1),
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			// Lambda's largest asynchronous payload, with room for the
			// event's own fields and a last answer as large.
			MaxMsgSize: 3 * invoke.MaxAsyncPayload,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("async: stream: %w", err)
	}
	var c jetstream.Consumer
	err = broker.Retry(ctx, func(ctx context.Context) (err error) {
		c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: consumerName, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: cfg.AckWait, MaxDeliver: -1,
			// Events waiting for a retry stay taken (NakWithDelay): room
			// for many.
			MaxAckPending: 100000})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("async: consumer: %w", err)
	}
	return &Queue{cfg: cfg, stream: s, consumer: c}, nil
}

// Enqueue stores an event; when it returns nil the event is on disk (in
// the broker's store) and will run. It implements invoke.Queue.
func (q *Queue) Enqueue(ctx context.Context, qe invoke.QueuedEvent) error {
	e := Event{RequestID: qe.RequestID, Function: qe.Function, Qualifier: qe.Qualifier, Payload: qe.Payload,
		ClientContext: qe.ClientContext, TraceID: qe.TraceID, FirstSeen: q.cfg.Now()}
	if err := q.publish(ctx, &e); err != nil {
		return err
	}
	q.cfg.Observer.Queued(e.Function)
	return nil
}

func (q *Queue) publish(ctx context.Context, e *Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := broker.Publish(ctx, q.cfg.JetStream, &nats.Msg{Subject: subjectPrefix + e.Function, Data: b}); err != nil {
		return fmt.Errorf("async: storing an event: %w", err)
	}
	return nil
}

// Depth is the number of events kept (waiting, running, or waiting for a
// retry).
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// Start starts the workers; Stop stops them.
func (q *Queue) Start(ctx context.Context, deps Deps) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cancel != nil {
		return
	}
	w := &worker{cfg: q.cfg, invoker: deps.Invoker, functions: deps.Functions, queues: deps.Queues, observer: q.cfg.Observer}
	ctx, q.cancel = context.WithCancel(ctx)
	q.loop.Add(1)
	go func() {
		defer q.loop.Done()
		q.take(ctx, w)
	}()
}

// Stop stops taking events and waits (until ctx ends) for the attempts
// running; an attempt cut short runs again after the next start.
func (q *Queue) Stop(ctx context.Context) {
	q.mu.Lock()
	cancel := q.cancel
	q.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	done := make(chan struct{})
	go func() {
		q.loop.Wait()
		q.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// take fetches events as workers are free and hands each to one.
func (q *Queue) take(ctx context.Context, w *worker) {
	slots := make(chan struct{}, q.cfg.Workers)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < q.cfg.Workers {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := q.consumer.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			for range n {
				<-slots
			}
			if ctx.Err() == nil {
				q.cfg.Log.Warn("async: fetching events", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			n--
			q.running.Add(1)
			go func() {
				defer func() { <-slots; q.running.Done() }()
				q.handle(ctx, w, m)
			}()
		}
		for range n {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			q.cfg.Log.Warn("async: fetching events", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// handle runs one step of a taken event: it waits for its retry's time,
// or runs it and then stores what is to come (a retry, or deliveries left)
// before acknowledging it.
func (q *Queue) handle(ctx context.Context, w *worker, m jetstream.Msg) {
	var e Event
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		q.cfg.Log.Error("async: an unreadable event is dropped", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	if wait := e.NotBefore.Sub(q.cfg.Now()); wait > 0 {
		if err := m.NakWithDelay(wait); err != nil {
			q.cfg.Log.Warn("async: putting an event back", "request", e.RequestID, "err", err)
		}
		return
	}
	// The attempt runs to its end even when the daemon stops (as any
	// invocation does); heartbeats keep the event taken meanwhile.
	run := context.WithoutCancel(ctx)
	beat := make(chan struct{})
	go func() {
		t := time.NewTicker(q.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-beat:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	again := w.step(run, &e)
	close(beat)
	if again {
		// The next step is stored before this one is acknowledged: a
		// crash in between runs the event twice, never zero times.
		if err := q.publish(run, &e); err != nil {
			q.cfg.Log.Error("async: storing an event's retry", "request", e.RequestID, "err", err)
			_ = m.NakWithDelay(q.cfg.BackoffMin)
			return
		}
	}
	if err := m.DoubleAck(run); err != nil {
		q.cfg.Log.Warn("async: acknowledging an event", "request", e.RequestID, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

type nopObserver struct{}

func (nopObserver) Queued(string)                  {}
func (nopObserver) Retried(string, string)         {}
func (nopObserver) Delivered(string, string, bool) {}
