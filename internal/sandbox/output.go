package sandbox

import (
	"io"
	"sync"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// logSink takes the function's output as the agent forwards it: it passes
// it on and keeps the end of it for the invocation's result. It outlives
// the VMM incarnations that write into it.
type logSink struct {
	w io.Writer

	mu   sync.Mutex
	tail tailBuffer
}

func newLogSink(w io.Writer) *logSink {
	return &logSink{w: w, tail: tailBuffer{max: 4096}}
}

func (s *logSink) write(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail.Write(b)
	_, _ = s.w.Write(b)
}

// reset forgets the tail, as an invocation begins.
func (s *logSink) reset() {
	s.mu.Lock()
	s.tail.Reset()
	s.mu.Unlock()
}

// last is the end of the output since the last reset.
func (s *logSink) last() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.Bytes()
}

// streamRoute passes a streamed response's chunks to the invocation that
// asked for them, and drops any other's.
type streamRoute struct {
	mu    sync.Mutex
	id    string
	st    ResponseStream
	begun bool
}

// set names the invocation whose streamed response goes to st.
func (r *streamRoute) set(id string, st ResponseStream) {
	r.mu.Lock()
	r.id, r.st, r.begun = id, st, false
	r.mu.Unlock()
}

// write passes a chunk on. It runs on the agent channel's reader: a slow
// client slows the function's stream, as backpressure should.
func (r *streamRoute) write(c guestproto.Chunk, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == nil || c.RequestID != r.id {
		return
	}
	if !r.begun {
		r.begun = true
		r.st.Begin(c.ContentType)
	}
	_, _ = r.st.Write(b)
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
