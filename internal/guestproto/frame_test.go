package guestproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		typ    Type
		header any
		body   []byte
	}{
		{"no header no body", TypePing, nil, nil},
		{"header only", TypeHello, Hello{AgentVersion: "v1", UptimeMs: 812.5}, nil},
		{"header and body", TypeInvoke, Invoke{RequestID: "r1", DeadlineMs: 42}, []byte(`{"name":"Ada"}`)},
		{"binary body", TypeLog, Log{Stream: "stderr"}, []byte{0, 1, 2, 255}},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, tt := range tests {
		if err := w.Write(tt.typ, tt.header, tt.body); err != nil {
			t.Fatalf("%s: write: %v", tt.name, err)
		}
	}
	r := NewReader(&buf)
	for _, tt := range tests {
		f, err := r.Read()
		if err != nil {
			t.Fatalf("%s: read: %v", tt.name, err)
		}
		if f.Type != tt.typ {
			t.Errorf("%s: type %v, want %v", tt.name, f.Type, tt.typ)
		}
		if !bytes.Equal(f.Body, tt.body) {
			t.Errorf("%s: body %q, want %q", tt.name, f.Body, tt.body)
		}
	}
	if _, err := r.Read(); !errors.Is(err, io.EOF) {
		t.Errorf("after last frame: %v, want EOF", err)
	}
}

func TestFrameDecodeHeader(t *testing.T) {
	var buf bytes.Buffer
	want := Invoke{RequestID: "abc", DeadlineMs: 1700000000000, FunctionARN: "arn:x"}
	if err := NewWriter(&buf).Write(TypeInvoke, want, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(&buf).Read()
	if err != nil {
		t.Fatal(err)
	}
	var got Invoke
	if err := f.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestFrameRejectsHugeLengths(t *testing.T) {
	pre := make([]byte, 9)
	pre[0] = byte(TypeLog)
	binary.BigEndian.PutUint32(pre[5:9], MaxBody+1)
	_, err := NewReader(bytes.NewReader(pre)).Read()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if err := NewWriter(io.Discard).Write(TypeLog, nil, make([]byte, MaxBody+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("write: got %v, want ErrFrameTooLarge", err)
	}
}

func TestFrameShortStream(t *testing.T) {
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(TypeInvoke, Invoke{RequestID: "r"}, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	cut := buf.Bytes()[:buf.Len()-3]
	if _, err := NewReader(bytes.NewReader(cut)).Read(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("truncated frame: got %v, want a short-frame error", err)
	}
}

// prefix is a frame's prefix announcing header and body lengths.
func prefix(t Type, header, body uint32) []byte {
	pre := make([]byte, 9)
	pre[0] = byte(t)
	binary.BigEndian.PutUint32(pre[1:5], header)
	binary.BigEndian.PutUint32(pre[5:9], body)
	return pre
}

// A host refuses, per frame type, what an agent may not send, before it
// reads a byte of it.
func TestAgentLimit(t *testing.T) {
	tests := []struct {
		name         string
		typ          Type
		header, body uint32
		ok           bool
	}{
		{"response at Lambda's limit", TypeResponse, 100, MaxResponseBytes, true},
		{"response over Lambda's limit", TypeResponse, 100, MaxResponseBytes + 1, false},
		{"error object over Lambda's limit", TypeFunctionError, 100, MaxResponseBytes + 1, false},
		{"init error over Lambda's limit", TypeInitError, 100, MaxResponseBytes + 1, false},
		{"log frame of a pipe read", TypeLog, 20, 32 << 10, true},
		{"log frame of 6 MB", TypeLog, 20, 6 << 20, false},
		{"stream chunk of 1 MiB", TypeResponseChunk, 50, 1 << 20, true},
		{"stream chunk of 6 MB", TypeResponseChunk, 50, 6 << 20, false},
		{"pong announcing 6 MB", TypePong, 10, 6 << 20, false},
		{"hello announcing 6 MB", TypeHello, 10, 6 << 20, false},
		{"resumed with a 1 MiB header", TypeResumed, 1 << 20, 0, false},
		{"unknown type announcing 1 MiB", Type(200), 0, 1 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Only the prefix is sent: a frame within its limit then reads
			// short, one over it is refused at once.
			r := NewLimitedReader(bytes.NewReader(prefix(tt.typ, tt.header, tt.body)), AgentLimit)
			_, err := r.Read()
			var tl *TooLargeError
			if got := errors.As(err, &tl); got == tt.ok {
				t.Fatalf("got %v, want too large: %v", err, !tt.ok)
			}
			if !tt.ok && (!errors.Is(err, ErrFrameTooLarge) || tl.Type != tt.typ) {
				t.Fatalf("got %v, want ErrFrameTooLarge naming %s", err, tt.typ)
			}
		})
	}
}

// stall is a stream that has sent what it had and then fails, as a peer
// that announced a frame and sent no more of it.
type stall struct{ r io.Reader }

func (s *stall) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	if errors.Is(err, io.EOF) {
		return n, io.ErrNoProgress
	}
	return n, err
}

// A frame announced and not sent pins no memory: its buffer grows with the
// bytes that arrive, not with the announced length.
func TestAnnouncedFrameAllocatesWhatArrives(t *testing.T) {
	in := append(prefix(TypeResponse, 0, MaxResponseBytes), []byte("only this much")...)
	r := NewLimitedReader(&stall{bytes.NewReader(in)}, AgentLimit)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.Read()
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a short frame was read whole")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("reading a 14-byte start of a %d-byte frame allocated %d bytes", MaxResponseBytes, grew)
	}
}

// A frame sent in small pieces is read whole and intact.
func TestFrameReadInPieces(t *testing.T) {
	var buf bytes.Buffer
	body := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	if err := NewWriter(&buf).Write(TypeResponse, Result{RequestID: "r"}, body); err != nil {
		t.Fatal(err)
	}
	f, err := NewLimitedReader(iotest.OneByteReader(&buf), AgentLimit).Read()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Body, body) {
		t.Fatalf("body of %d bytes read as %d", len(body), len(f.Body))
	}
}

// FuzzReader feeds the host's reader arbitrary bytes: it must return frames
// within their limits or an error, never panic or allocate past them.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.Write(TypeHello, Hello{AgentVersion: "v"}, nil)
	_ = w.Write(TypeResponse, Result{RequestID: "r", MaxRSSKiB: 9}, []byte(`{"ok":true}`))
	_ = w.Write(TypeLog, Log{Stream: "stdout"}, []byte("hello\n"))
	f.Add(buf.Bytes())
	f.Add(prefix(TypePong, 0, 6<<20))
	f.Add(append(prefix(TypeResponse, 2, 4), []byte("{}ab")...))
	f.Add(append(prefix(TypeResponseChunk, 0, 10), 1, 2, 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewLimitedReader(bytes.NewReader(in), AgentLimit)
		for {
			fr, err := r.Read()
			if err != nil {
				return
			}
			lim := AgentLimit(fr.Type)
			if len(fr.Header) > int(lim.Header) || len(fr.Body) > int(lim.Body) {
				t.Fatalf("%s frame of header %d, body %d read past its limit", fr.Type, len(fr.Header), len(fr.Body))
			}
			var h map[string]any
			_ = fr.Decode(&h)
		}
	})
}
