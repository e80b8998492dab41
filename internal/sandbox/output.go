package sandbox

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// DefaultLogLimit caps a phase's output when the function sets no limit:
// the agent's own default, enforced again here.
const DefaultLogLimit = 8 << 20

// maxNoticeBytes bounds the agent's own notices (stream "agent") per phase:
// they are apart from the function's output, so that the agent's notice of
// its cap is not itself cut by the host's.
const maxNoticeBytes = 16 << 10

// logSink takes the function's output as the agent forwards it: it passes
// it on and keeps the end of it for the invocation's result. It outlives
// the VMM incarnations that write into it. It enforces the log limit per
// phase (the init, then each invocation) itself: past it, output is
// counted, dropped, and noted once, whatever the agent does.
type logSink struct {
	w     io.Writer
	limit int64

	mu      sync.Mutex
	tail    tailBuffer
	used    int64
	notices int64
	dropped int64
}

func newLogSink(w io.Writer, limit int64) *logSink {
	if limit <= 0 {
		limit = DefaultLogLimit
	}
	return &logSink{w: w, limit: limit, tail: tailBuffer{max: 4096}}
}

func (s *logSink) write(stream string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stream == "agent" && s.notices+int64(len(b)) <= maxNoticeBytes {
		s.notices += int64(len(b))
		s.pass(b)
		return
	}
	keep := min(int64(len(b)), max(s.limit-s.used, 0))
	first := keep < int64(len(b)) && s.dropped == 0
	s.used += keep
	s.dropped += int64(len(b)) - keep
	s.pass(b[:keep])
	if first {
		s.pass([]byte(fmt.Sprintf("\n[hearth] output over %d bytes in this phase; the rest is dropped\n", s.limit)))
	}
}

func (s *logSink) pass(b []byte) {
	if len(b) == 0 {
		return
	}
	s.tail.Write(b)
	_, _ = s.w.Write(b)
}

// reset starts a phase: the tail and the counts begin again.
func (s *logSink) reset() {
	s.mu.Lock()
	s.tail.Reset()
	s.used, s.notices, s.dropped = 0, 0, 0
	s.mu.Unlock()
}

// last is the end of the output since the last reset.
func (s *logSink) last() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.Bytes()
}

// droppedBytes is the output this host dropped in the phase.
func (s *logSink) droppedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) {
	if len(b) >= t.max {
		t.buf = append(t.buf[:0], b[len(b)-t.max:]...)
		return
	}
	if over := len(t.buf) + len(b) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, b...)
}

func (t *tailBuffer) Bytes() []byte { return append([]byte(nil), t.buf...) }

func (t *tailBuffer) Reset() { t.buf = t.buf[:0] }

// Bounds of a streamed response on the host.
const (
	// maxStreamBuffer is what the host holds of a streamed response that
	// its consumer has not taken yet.
	maxStreamBuffer = 1 << 20
	// DefaultStreamStall is how long a consumer may take no bytes of a
	// streamed response before it is abandoned.
	DefaultStreamStall = 10 * time.Second
)

// streamRoute passes a streamed response's chunks to the invocation that
// asked for them, and drops any other's.
type streamRoute struct {
	mu  sync.Mutex
	cur *streamPump
}

// begin routes the chunks of request id to st, until end.
func (r *streamRoute) begin(id string, st ResponseStream, stall time.Duration, limit int) *streamPump {
	p := &streamPump{id: id, st: st, stall: stall, limit: limit,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{})}
	r.mu.Lock()
	r.cur = p
	r.mu.Unlock()
	go p.run()
	return p
}

// end stops routing to p; it waits, at most p's stall time, for its
// consumer to take what is buffered, and abandons it after.
func (r *streamRoute) end(p *streamPump) {
	r.mu.Lock()
	if r.cur == p {
		r.cur = nil
	}
	r.mu.Unlock()
	p.finish()
}

// write passes a chunk on. It runs on the agent channel's reader.
func (r *streamRoute) write(c guestproto.Chunk, b []byte) {
	r.mu.Lock()
	p := r.cur
	r.mu.Unlock()
	if p == nil || c.RequestID != p.id {
		return
	}
	p.write(c.ContentType, b)
}

// streamPump hands a streamed response to its consumer on a goroutine of
// its own, through a bounded buffer, so that a consumer that does not
// drain holds neither the agent channel's reader nor the invocation: the
// reader waits for room (the guest's stream slows down, as backpressure
// should) for at most the stall time, after which the stream is abandoned
// and the rest of it dropped.
type streamPump struct {
	id    string
	st    ResponseStream
	stall time.Duration
	limit int // the most bytes passed on (Lambda's streamed total)

	mu        sync.Mutex
	queue     []streamPart
	queued    int // bytes buffered or being written
	total     int // bytes accepted from the guest
	closed    bool
	abandoned bool
	tooLarge  bool
	begun     bool

	wake chan struct{} // to the pump: a part, or the end
	room chan struct{} // to the reader: the consumer took a part
	done chan struct{} // the pump returned
}

type streamPart struct {
	contentType string
	begin       bool
	b           []byte
}

// write queues a chunk, waiting for room for at most the stall time.
func (p *streamPump) write(contentType string, b []byte) {
	for {
		p.mu.Lock()
		if p.abandoned || p.closed || p.tooLarge {
			p.mu.Unlock()
			return
		}
		if p.total+len(b) > p.limit {
			// Past Lambda's total the stream ends, with an error the
			// invocation reports.
			p.tooLarge = true
			p.mu.Unlock()
			p.signal(p.wake)
			return
		}
		if p.queued == 0 || p.queued+len(b) <= maxStreamBuffer {
			part := streamPart{contentType: contentType, b: b}
			if !p.begun {
				p.begun, part.begin = true, true
			}
			p.queue = append(p.queue, part)
			p.queued += len(b)
			p.total += len(b)
			p.mu.Unlock()
			p.signal(p.wake)
			return
		}
		p.mu.Unlock()
		select {
		case <-p.room:
		case <-time.After(p.stall):
			p.abandon()
			return
		}
	}
}

func (p *streamPump) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// abandon gives up on the consumer: nothing more is passed on, and what is
// buffered is let go.
func (p *streamPump) abandon() {
	p.mu.Lock()
	if !p.abandoned {
		p.abandoned = true
		p.queue = nil
	}
	p.mu.Unlock()
	p.signal(p.wake)
	p.signal(p.room)
}

// run passes the buffered parts on until the stream ends or is abandoned.
func (p *streamPump) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		if p.abandoned || (len(p.queue) == 0 && (p.closed || p.tooLarge)) {
			p.mu.Unlock()
			return
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			<-p.wake
			continue
		}
		part := p.queue[0]
		p.queue[0] = streamPart{}
		p.queue = p.queue[1:]
		p.mu.Unlock()
		if part.begin {
			p.st.Begin(part.contentType)
		}
		_, _ = p.st.Write(part.b)
		p.mu.Lock()
		p.queued -= len(part.b)
		p.mu.Unlock()
		p.signal(p.room)
	}
}

// finish ends the stream and waits for the consumer to take what is
// buffered, for at most the stall time.
func (p *streamPump) finish() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal(p.wake)
	p.signal(p.room)
	select {
	case <-p.done:
	case <-time.After(p.stall):
		p.abandon()
	}
}

// state says whether the stream went over Lambda's total, or was abandoned.
func (p *streamPump) state() (tooLarge, abandoned bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tooLarge, p.abandoned
}

// printable is s cut to n bytes, without control characters: text a
// guest gives that goes into a log line or an error message.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
