// Package broker runs NATS JetStream inside the daemon: the durable streams
// that carry asynchronous invocations, queues and event-source polling.
// Standalone, it listens on no port (clients connect in-process) and its
// store is a folder of the data folder, so one binary does everything.
// In cluster mode (cluster.go) the embedded server routes to the other
// hosts' and JetStream is clustered (its own Raft: Hearth adds no
// consensus of its own), or the daemon uses an existing NATS (URL) and
// embeds none. Replicas says how many copies the streams' creators ask
// for.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config is where and how the broker keeps its streams.
type Config struct {
	// Dir is JetStream's store.
	Dir string
	// SyncAlways makes every write reach the disk before it is
	// acknowledged (slower). Without it, writes are in the kernel's cache
	// when acknowledged, so a killed daemon loses none, and a machine that
	// loses power loses at most SyncInterval's.
	SyncAlways bool
	// SyncInterval is how often the store is flushed to disk; 10 s if
	// zero.
	SyncInterval time.Duration
	// ReadyTimeout bounds the server's start; 30 s if zero.
	ReadyTimeout time.Duration
	// Cluster, when set, joins the embedded server to a cluster of
	// Hearth hosts (cluster.go).
	Cluster *Cluster
	// URL, when set, is an existing NATS (with JetStream) to use instead
	// of an embedded server: Dir and Cluster are then unused.
	URL string
	// Replicas is the streams' replica count; 0 picks it: 1 standalone,
	// min(3, the hosts known) in a cluster.
	Replicas int
	Log      *slog.Logger
}

// Broker is a running embedded NATS server with JetStream and the
// daemon's connection to it.
type Broker struct {
	ns       *server.Server // nil with an external NATS
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	shared   bool // streams shared with other hosts (cluster or external NATS)
	log      *slog.Logger
}

// New starts the server on cfg.Dir (made if missing) and connects to it;
// with cfg.URL it connects to that NATS instead.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.URL != "" {
		return connectExternal(ctx, cfg)
	}
	if cfg.Dir == "" {
		return nil, errors.New("broker: no store folder")
	}
	if cfg.Cluster != nil {
		return startClustered(ctx, cfg)
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 10 * time.Second
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	opts := &server.Options{
		ServerName: "hearth",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// In-process clients only: no port, nothing to reach from outside.
		DontListen:   true,
		NoSigs:       true,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	ns.SetLoggerV2(logger{cfg.Log.With("part", "broker")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("broker: not ready after %s", cfg.ReadyTimeout)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("hearth"), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("broker: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("broker: JetStream: %w", err)
	}
	return &Broker{ns: ns, nc: nc, js: js, replicas: 1, log: cfg.Log}, nil
}

// JetStream is the daemon's JetStream context.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Conn is the daemon's connection (core NATS: advisories, requests).
func (b *Broker) Conn() *nats.Conn { return b.nc }

// Replicas is the replica count for the streams, key-value buckets and
// object stores the daemon creates: 1 standalone, min(3, hosts) in a
// cluster (three copies survive one host's loss; more only slow writes).
func (b *Broker) Replicas() int { return b.replicas }

// Shared reports whether the streams are shared with other hosts (a
// cluster, or an external NATS).
func (b *Broker) Shared() bool { return b.shared }

// Shutdown drains the connection (until ctx ends) and stops the server,
// which flushes its store.
func (b *Broker) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		_ = b.nc.Drain()
		for b.nc.IsDraining() {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	b.nc.Close()
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// logger writes the server's log with slog: its notices at Info.
type logger struct{ l *slog.Logger }

func (l logger) Noticef(format string, v ...any) { l.l.Info(fmt.Sprintf(format, v...)) }
func (l logger) Warnf(format string, v ...any)   { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l logger) Fatalf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l logger) Errorf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l logger) Debugf(format string, v ...any)  { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l logger) Tracef(format string, v ...any)  { l.l.Debug(fmt.Sprintf(format, v...)) }
