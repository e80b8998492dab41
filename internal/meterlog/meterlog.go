// Package meterlog carries the meter across the hosts of a cluster: each
// host publishes the writes to its own meter tables (from the store's
// durable outbox) to a replicated JetStream stream, one subject per host,
// and follows the stream, keeping the other hosts' records in its own
// SQLite with their host. So `hearth cost`, the usage routes and the
// console's series cover the cluster, while each host's meter stays its
// own and an invocation never waits on the network to be metered.
package meterlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/store"
)

// The names the meter goes by on JetStream: a host publishes on
// SubjectPrefix + its node.
const (
	DefaultStream = "HEARTH_METER"
	SubjectPrefix = "hearth.meter."
)

// Store is the meter's side of the store (the outbox and the other
// hosts' rows).
type Store interface {
	EnableMeterOutbox(ctx context.Context) (string, error)
	MeterOutbox(ctx context.Context, limit int) ([]store.MeterEvent, error)
	MeterPublished(ctx context.Context, seq int64) error
	MeterFollowed(ctx context.Context) (uint64, error)
	ApplyMeterEvent(ctx context.Context, streamSeq uint64, host string, data []byte) (bool, error)
}

// Config is where the meter goes.
type Config struct {
	JetStream jetstream.JetStream
	// Replicas is the stream's (the broker's Replicas()).
	Replicas int
	// Node is this host's name: its subject.
	Node  string
	Store Store
	// Poll is how often the outbox is read while nothing nudges the
	// publisher (Nudge); 200 ms if zero.
	Poll time.Duration
	// Stream defaults to DefaultStream.
	Stream string
	Log    *slog.Logger
}

// Log publishes this host's meter and applies the others'.
type Log struct {
	cfg    Config
	epoch  string // this host's outbox's
	nudge  chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	stats Stats
}

// Stats count what the log did, for tests and status.
type Stats struct {
	Published int // events this host published
	Applied   int // other hosts' events that changed this host's meter
	Refused   int // events refused (ErrBadMeterEvent)
}

// batch bounds the events read from the outbox at once.
const batch = 256

// Open makes (or keeps) the stream, makes the store's local meter writes
// enter its outbox, and starts publishing and following until Close.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.JetStream == nil || cfg.Store == nil {
		return nil, errors.New("meterlog: no JetStream or no store")
	}
	if !broker.ValidNode(cfg.Node) {
		return nil, fmt.Errorf("meterlog: node %q", cfg.Node)
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	err := broker.Retry(ctx, func(ctx context.Context) error {
		_, err := cfg.JetStream.CreateOrUpdateStream(ctx, streamConfig(cfg))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("meterlog: stream %s: %w", cfg.Stream, err)
	}
	epoch, err := cfg.Store.EnableMeterOutbox(ctx)
	if err != nil {
		return nil, fmt.Errorf("meterlog: %w", err)
	}
	cfg.Log.Info("meter records go to the cluster", "stream", cfg.Stream, "node", cfg.Node, "epoch", epoch, "replicas", cfg.Replicas)
	l := &Log{cfg: cfg, epoch: epoch, nudge: make(chan struct{}, 1)}
	// The loops live until Close, whatever ctx (the daemon's start) does.
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.wg.Add(2)
	go l.publish(lctx)
	go l.follow(lctx)
	return l, nil
}

func streamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Hearth's meter: every host's meter writes, one subject per host",
		Subjects:    []string{SubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		// The stream refuses what the hosts would refuse anyway.
		MaxMsgSize: store.MaxMeterEventBytes,
		Discard:    jetstream.DiscardNew,
		// An event published again (its ack lost, the host restarted)
		// within this window is stored once; after it, the followers'
		// per-origin cursors skip it.
		Duplicates: 2 * time.Minute,
	}
}

// Nudge tells the publisher a write was made (it reads the outbox now
// rather than at its next poll). It never blocks.
func (l *Log) Nudge() {
	select {
	case l.nudge <- struct{}{}:
	default:
	}
}

// Stats returns the counts so far.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

func (l *Log) count(f func(*Stats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

// closeWait bounds Close: a publish or a consumer stuck in a cluster that
// lost its quorum must not hold the daemon's shutdown (what was not
// published stays in the outbox for the next start).
const closeWait = 3 * time.Second

// Close stops publishing and following, waiting a bounded time.
func (l *Log) Close() {
	l.cancel()
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		l.cfg.Log.Warn("meter log: did not stop in time; closing without it")
	}
}

// publish sends the outbox's events in order, one at a time, each
// acknowledged before the next (so a follower never sees an event before
// one it depends on: an environment's end before its start), and deletes
// them once the stream has them. A failure (no quorum, the stream
// electing) waits and tries again from the first event not acknowledged.
func (l *Log) publish(ctx context.Context) {
	defer l.wg.Done()
	subject := SubjectPrefix + l.cfg.Node
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		evs, err := l.cfg.Store.MeterOutbox(ctx, batch)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.cfg.Log.Warn("meter log: reading the outbox", "err", err)
			backoff = nextBackoff(backoff)
			continue
		}
		if len(evs) == 0 {
			backoff = 0
			select {
			case <-ctx.Done():
				return
			case <-l.nudge:
			case <-time.After(l.cfg.Poll):
			}
			continue
		}
		var last int64
		var perr error
		for _, ev := range evs {
			data, err := json.Marshal(ev)
			if err != nil {
				perr = err
				break
			}
			m := nats.NewMsg(subject)
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, ev.ID())
			if _, perr = broker.Publish(ctx, l.cfg.JetStream, m, jetstream.WithExpectStream(l.cfg.Stream)); perr != nil {
				break
			}
			last = ev.Seq
		}
		if last > 0 {
			// Deleted with a context of its own: an event acknowledged
			// and then left in the outbox would be published again.
			if err := l.cfg.Store.MeterPublished(context.WithoutCancel(ctx), last); err != nil {
				l.cfg.Log.Warn("meter log: forgetting published events", "err", err)
			}
			n := 0
			for _, ev := range evs {
				if ev.Seq <= last {
					n++
				}
			}
			l.count(func(s *Stats) { s.Published += n })
		}
		if ctx.Err() != nil {
			return
		}
		if perr != nil {
			l.cfg.Log.Warn("meter log: publishing (kept in the outbox, tried again)", "err", perr)
			backoff = nextBackoff(backoff)
			continue
		}
		backoff = 0
	}
}

// own reports whether data is an event of this host's outbox (not of an
// earlier data folder of a host with the same node).
func (l *Log) own(data []byte) bool {
	var e struct {
		Epoch string `json:"epoch"`
	}
	return json.Unmarshal(data, &e) == nil && e.Epoch == l.epoch
}

func nextBackoff(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 250 * time.Millisecond
	case d >= 5*time.Second:
		return 5 * time.Second
	}
	return 2 * d
}

// follow applies the stream's events after the last one this host
// followed, in order, as they come, until Close: a failure to read the
// stream or to write SQLite is retried from there, so nothing is skipped
// for a reason that may be this host's alone; a refused event is moved
// past (it would be refused again).
func (l *Log) follow(ctx context.Context) {
	defer l.wg.Done()
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		err := l.followOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		l.cfg.Log.Warn("meter log: following again", "err", err)
		backoff = nextBackoff(backoff)
	}
}

func (l *Log) followOnce(ctx context.Context) error {
	after, err := l.cfg.Store.MeterFollowed(ctx)
	if err != nil {
		return err
	}
	return broker.Follow(ctx, l.cfg.JetStream, l.cfg.Stream, SubjectPrefix+">", after, func(seq uint64, msg jetstream.Msg) error {
		host := strings.TrimPrefix(msg.Subject(), SubjectPrefix)
		if host == l.cfg.Node && l.own(msg.Data()) {
			// This host's own: nothing to apply, and no write to the
			// store for it (the cursor moves with the next other
			// host's event; a restart reads these again, and skips them).
			return nil
		}
		changed, err := l.cfg.Store.ApplyMeterEvent(ctx, seq, host, msg.Data())
		switch {
		case errors.Is(err, store.ErrBadMeterEvent):
			l.count(func(s *Stats) { s.Refused++ })
			l.cfg.Log.Warn("meter log: an event refused", "host", host, "seq", seq, "err", err)
		case err != nil:
			return err
		case changed:
			l.count(func(s *Stats) { s.Applied++ })
		}
		return nil
	})
}
