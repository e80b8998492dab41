package agent

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// DefaultLogLimit caps a phase's output when the host sets no limit.
const DefaultLogLimit = 8 << 20

// logPump forwards the runtime's stdout and stderr to the host as Log
// frames. It caps each phase (init, then each invocation) at a limit and
// drops the rest, still reading, so a function that floods its output
// neither blocks on a full pipe nor starves the channel.
type logPump struct {
	out *guestproto.Writer

	mu      sync.Mutex
	limit   int64
	used    int64
	dropped int64
	pipes   []*os.File
	done    chan struct{} // closed when every attached pipe reached EOF
	busy    atomic.Int32  // chunks read but not yet sent
}

func newLogPump(out *guestproto.Writer) *logPump {
	return &logPump{out: out, limit: DefaultLogLimit}
}

func (p *logPump) setLimit(n int64) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.limit = n
	p.mu.Unlock()
}

// newPhase starts counting again, at each invocation.
func (p *logPump) newPhase() {
	p.mu.Lock()
	p.used, p.dropped = 0, 0
	p.mu.Unlock()
}

func (p *logPump) attach(stdout, stderr *os.File) {
	p.mu.Lock()
	p.pipes = []*os.File{stdout, stderr}
	done := make(chan struct{})
	p.done = done
	p.mu.Unlock()
	var wg sync.WaitGroup
	for i, f := range []*os.File{stdout, stderr} {
		stream := [...]string{"stdout", "stderr"}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.pump(stream, f)
		}()
	}
	go func() { wg.Wait(); close(done) }()
}

func (p *logPump) pump(stream string, f *os.File) {
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			p.busy.Add(1)
			p.send(stream, buf[:n])
			p.busy.Add(-1)
		}
		if err != nil {
			return
		}
	}
}

func (p *logPump) send(stream string, b []byte) {
	p.mu.Lock()
	room := p.limit - p.used
	keep := int64(len(b))
	if keep > room {
		keep = max(room, 0)
	}
	first := keep < int64(len(b)) && p.dropped == 0
	p.used += keep
	p.dropped += int64(len(b)) - keep
	limit := p.limit
	p.mu.Unlock()
	if keep > 0 {
		_ = p.out.Write(guestproto.TypeLog, guestproto.Log{Stream: stream}, b[:keep])
	}
	if first {
		msg := fmt.Sprintf("\n[hearth] output over %d bytes in this phase; the rest is dropped\n", limit)
		_ = p.out.Write(guestproto.TypeLog, guestproto.Log{Stream: "agent"}, []byte(msg))
	}
}

// flush waits, briefly, until the output written so far has been sent, so
// that an invocation's logs reach the host before its result. It returns the
// bytes dropped in this phase.
func (p *logPump) flush() int64 {
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if p.busy.Load() == 0 && p.unread() == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// unread is how many bytes wait in the pipes (TIOCINQ is FIONREAD on Linux).
func (p *logPump) unread() int {
	p.mu.Lock()
	pipes := p.pipes
	p.mu.Unlock()
	total := 0
	for _, f := range pipes {
		rc, err := f.SyscallConn()
		if err != nil {
			continue
		}
		_ = rc.Control(func(fd uintptr) {
			if n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
				total += n
			}
		})
	}
	return total
}

// waitEOF waits until the pipes are closed by every writer, or d passes.
func (p *logPump) waitEOF(d time.Duration) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(d):
	}
}
