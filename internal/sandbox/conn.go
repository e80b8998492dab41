package sandbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// conn is this process's connection to one incarnation of an environment's
// VMM: the machine, the framed agent channel, and a reader that sorts what
// the agent sends until the channel ends. A boot, a restore or an attach
// makes one; a stop, a snapshot or a detach ends it. What must outlive it
// goes to the guest, the log sink and the stream route it is given.
type conn struct {
	m    vmm.Machine
	out  *guestproto.Writer
	gone chan struct{} // the agent channel or the VMM ended

	guest  *guest
	logs   *logSink
	stream *streamRoute
	log    *slog.Logger
	ending atomic.Bool // this process ends it: the channel's end is no news

	// What the agent sends, for whoever waits for it.
	hello   chan guestproto.Hello
	initEnd chan guestproto.Frame // TypeReady or TypeInitError
	results chan guestproto.Frame // TypeResponse or TypeFunctionError
	idle    chan string           // the runtime asked for its next event after this request
	resumed chan guestproto.Resumed
	pong    chan struct{}

	// initing is true until the runtime's init ends, on a machine that
	// boots: an init error until then fails the boot, and after it (or on
	// a restored machine) means an after-restore hook failed. Only the
	// reader touches it.
	initing bool
}

// newConn connects to m and starts reading its agent channel.
func newConn(m vmm.Machine, initing bool, g *guest, logs *logSink, stream *streamRoute, log *slog.Logger) *conn {
	c := &conn{
		m: m, out: guestproto.NewWriter(m.Agent()), gone: make(chan struct{}),
		guest: g, logs: logs, stream: stream, log: log, initing: initing,
		hello:   make(chan guestproto.Hello, 1),
		initEnd: make(chan guestproto.Frame, 1),
		results: make(chan guestproto.Frame, 4),
		idle:    make(chan string, 4),
		resumed: make(chan guestproto.Resumed, 1),
		pong:    make(chan struct{}, 1),
	}
	go c.read()
	return c
}

func (c *conn) pid() int { return c.m.PID() }

// stop ends the VMM.
func (c *conn) stop(ctx context.Context) error {
	c.ending.Store(true)
	return c.m.Stop(ctx)
}

// disconnect leaves the VMM running without this process.
func (c *conn) disconnect() {
	c.ending.Store(true)
	c.m.Disconnect()
}

// snapshot writes the machine's state to statePath; the VMM then ends.
func (c *conn) snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	c.ending.Store(true)
	snap, err := c.m.Snapshot(ctx, statePath)
	if err != nil {
		c.ending.Store(false)
		return snap, err
	}
	<-c.gone
	return snap, nil
}

// read dispatches the agent's frames until the channel ends.
func (c *conn) read() {
	defer close(c.gone)
	r := guestproto.NewReader(c.m.Agent())
	for {
		f, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !c.ending.Load() {
				c.log.Debug("agent channel ended", "err", err)
			}
			return
		}
		switch f.Type {
		case guestproto.TypeHello:
			var h guestproto.Hello
			_ = f.Decode(&h)
			offer(c.hello, h)
		case guestproto.TypeReady, guestproto.TypeInitError:
			if f.Type == guestproto.TypeInitError && !c.initing {
				// After init, only an after-restore hook can fail.
				c.guest.restoreFailed(errorObject("Runtime.RestoreError", f.Body))
				continue
			}
			c.initing = false
			offer(c.initEnd, f)
		case guestproto.TypeResponse, guestproto.TypeFunctionError:
			offer(c.results, f)
		case guestproto.TypeIdle:
			var idle guestproto.Idle
			_ = f.Decode(&idle)
			offer(c.idle, idle.After)
		case guestproto.TypeResumed:
			var r guestproto.Resumed
			_ = f.Decode(&r)
			offer(c.resumed, r)
		case guestproto.TypeLog:
			c.logs.write(f.Body)
		case guestproto.TypeResponseChunk:
			var ch guestproto.Chunk
			_ = f.Decode(&ch)
			c.stream.write(ch, f.Body)
		case guestproto.TypeExit:
			var x guestproto.Exit
			_ = f.Decode(&x)
			c.guest.exit(x.Status)
		case guestproto.TypePong:
			offer(c.pong, struct{}{})
		default:
			c.log.Warn("unexpected frame from agent", "type", f.Type)
		}
	}
}

// offer sends v unless the channel is full: a frame nobody waits for (a
// stale one) must not block the reader.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
