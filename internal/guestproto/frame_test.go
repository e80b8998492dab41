package guestproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
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
