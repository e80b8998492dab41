package agent

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// frameLog is the host's end of the channel in unit tests: it keeps every
// frame the agent writes.
type frameLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *frameLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// frames decodes everything written so far.
func (l *frameLog) frames(t *testing.T) []guestproto.Frame {
	t.Helper()
	l.mu.Lock()
	b := bytes.Clone(l.buf.Bytes())
	l.mu.Unlock()
	r := guestproto.NewReader(bytes.NewReader(b))
	var out []guestproto.Frame
	for {
		f, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, f)
	}
}

// types lists the frames' types, to compare sequences.
func (l *frameLog) types(t *testing.T) []guestproto.Type {
	t.Helper()
	var ts []guestproto.Type
	for _, f := range l.frames(t) {
		ts = append(ts, f.Type)
	}
	return ts
}

// waitFor waits until n frames have been written.
func (l *frameLog) waitFor(t *testing.T, n int) []guestproto.Frame {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fs := l.frames(t)
		if len(fs) >= n || time.Now().After(deadline) {
			return fs
		}
		time.Sleep(time.Millisecond)
	}
}

func decode[T any](t *testing.T, f guestproto.Frame) T {
	t.Helper()
	var v T
	if err := f.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
