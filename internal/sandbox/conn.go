package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// conn is this process's connection to one incarnation of an environment's
// VMM: the machine, the framed agent channel, and a reader that sorts what
// the agent sends until the channel ends. A boot, a restore or an attach
// makes one; a stop, a snapshot or a detach ends it. What must outlive it
// goes to the guest, the log sink and the stream route it is given.
//
// Everything read from the agent is untrusted: frames are bounded per type
// (guestproto.AgentLimit), what nobody waits for is dropped as it is read,
// and a channel that ends while this process did not end it (a frame over
// its limit, garbage, a guest that hung up) stops the VMM at once: a VMM
// whose agent cannot be trusted or reached is of no use to anyone.
type conn struct {
	m    vmm.Machine
	out  *guestproto.Writer
	gone chan struct{} // the agent channel ended, and the VMM too unless this process ends it

	guest  *guest
	logs   *logSink
	stream *streamRoute
	// streams is the session of connections into the guest (streams.go).
	streams streamLink
	log     *slog.Logger
	ending  atomic.Bool // this process ends it: the channel's end is no news
	// lost is told, after the VMM was stopped, that the channel ended
	// under this process.
	lost func(*conn)

	// What the agent sends, for whoever waits for it; one of each at most.
	hello   chan guestproto.Hello
	initEnd chan guestproto.Frame // TypeReady or TypeInitError
	results chan result           // TypeResponse or TypeFunctionError for the expected request
	idle    chan string           // the runtime asked for its next event after the expected request
	resumed chan guestproto.Resumed
	pong    chan struct{}

	mu       sync.Mutex
	expected string // the request whose result is awaited, "" for none
	endErr   error  // why the channel ended

	// initing is true until the runtime's init ends, on a machine that
	// boots: an init error until then fails the boot, and after it (or on
	// a restored machine) means an after-restore hook failed. Only the
	// reader touches it.
	initing bool
}

// result is a result frame with its header decoded.
type result struct {
	guestproto.Result
	frame guestproto.Frame
}

// newConn connects to m and starts reading its agent channel.
func newConn(m vmm.Machine, initing bool, g *guest, logs *logSink, stream *streamRoute, log *slog.Logger, lost func(*conn)) *conn {
	c := &conn{
		m: m, out: guestproto.NewWriter(m.Agent()), gone: make(chan struct{}),
		guest: g, logs: logs, stream: stream, log: log, lost: lost, initing: initing,
		hello:   make(chan guestproto.Hello, 1),
		initEnd: make(chan guestproto.Frame, 1),
		results: make(chan result, 1),
		idle:    make(chan string, 1),
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

// snapshotGrace bounds the wait for the reader once a snapshot ended the
// VMM: its channel then ends at once, unless the reader is held up.
const snapshotGrace = 5 * time.Second

// snapshot writes the machine's state to statePath; the VMM then ends.
func (c *conn) snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	c.ending.Store(true)
	snap, err := c.m.Snapshot(ctx, statePath)
	if err != nil {
		c.ending.Store(false)
		return snap, err
	}
	select {
	case <-c.gone:
	case <-time.After(snapshotGrace):
		// The VMM has ended; closing its channel frees the reader.
		c.m.Disconnect()
		c.log.Warn("agent channel still open after the snapshot; closed")
	}
	return snap, nil
}

// errGuestDeadline is returned when the guest did not take a frame in time.
var errGuestDeadline = errors.New("the guest did not read its channel in time")

// send writes one frame to the agent, by deadline: a guest that stops
// reading must not hold its caller, nor the host's slot the caller holds.
// Past the deadline, or when ctx ends first, the VMM is stopped (which
// ends the write) and the error says why; the caller ends the environment.
func (c *conn) send(ctx context.Context, deadline time.Time, t guestproto.Type, header any, body []byte) error {
	done := make(chan error, 1)
	go func() { done <- c.out.Write(t, header, body) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		_ = c.stop(context.Background())
		return fmt.Errorf("%s: %w", t, errGuestDeadline)
	case <-ctx.Done():
		_ = c.stop(context.Background())
		return ctx.Err()
	}
}

// expect names the request whose result and idle notice the reader keeps;
// "" drops them all. It also drops what an earlier request left.
func (c *conn) expect(id string) {
	c.mu.Lock()
	c.expected = id
	c.mu.Unlock()
	for {
		select {
		case <-c.results:
		case <-c.idle:
		default:
			return
		}
	}
}

func (c *conn) expecting(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return id != "" && id == c.expected
}

// err is why the channel ended, once gone is closed.
func (c *conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// read dispatches the agent's frames until the channel ends.
func (c *conn) read() {
	r := guestproto.NewLimitedReader(c.m.Agent(), guestproto.AgentLimit)
	for {
		f, err := r.Read()
		if err != nil {
			c.end(err)
			return
		}
		c.dispatch(f)
	}
}

// end records why the channel ended; one this process did not end stops
// the VMM before anyone waiting hears of it.
func (c *conn) end(err error) {
	c.mu.Lock()
	c.endErr = err
	c.mu.Unlock()
	if c.ending.Load() {
		close(c.gone)
		return
	}
	if !errors.Is(err, io.EOF) {
		c.log.Warn("agent channel broken; stopping the VMM", "err", err)
	} else {
		c.log.Debug("agent channel ended; stopping the VMM")
	}
	_ = c.stop(context.Background())
	close(c.gone)
	if c.lost != nil {
		c.lost(c)
	}
}

func (c *conn) dispatch(f guestproto.Frame) {
	switch f.Type {
	case guestproto.TypeHello:
		var h guestproto.Hello
		_ = f.Decode(&h)
		offer(c.hello, h)
	case guestproto.TypeReady, guestproto.TypeInitError:
		if f.Type == guestproto.TypeInitError && !c.initing {
			// After init, only an after-restore hook can fail.
			c.guest.restoreFailed(restoreError(f.Body))
			return
		}
		c.initing = false
		offer(c.initEnd, f)
	case guestproto.TypeResponse, guestproto.TypeFunctionError:
		var r guestproto.Result
		if err := f.Decode(&r); err != nil || !c.expecting(r.RequestID) {
			// Stale, or unasked for: not kept.
			c.log.Debug("result nobody waits for dropped", "type", f.Type, "bytes", len(f.Body))
			return
		}
		offer(c.results, result{Result: r, frame: f})
	case guestproto.TypeIdle:
		var idle guestproto.Idle
		if f.Decode(&idle) == nil && c.expecting(idle.After) {
			offer(c.idle, idle.After)
		}
	case guestproto.TypeResumed:
		var r guestproto.Resumed
		_ = f.Decode(&r)
		offer(c.resumed, r)
	case guestproto.TypeLog:
		var l guestproto.Log
		_ = f.Decode(&l)
		c.logs.write(l.Stream, f.Body)
	case guestproto.TypeResponseChunk:
		var ch guestproto.Chunk
		if f.Decode(&ch) == nil {
			c.stream.write(ch, f.Body)
		}
	case guestproto.TypeExit:
		var x guestproto.Exit
		_ = f.Decode(&x)
		c.guest.exit(printable(x.Status, 200))
	case guestproto.TypePong:
		offer(c.pong, struct{}{})
	default:
		c.log.Warn("unexpected frame from agent", "type", f.Type)
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
