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

// readSlack is what one Read may allocate beyond the frame's own buffer
// (error values, the runtime's own bookkeeping between the two readings).
const readSlack = 1 << 20

// FuzzReader feeds the host's frame reader what a hostile guest could send:
// any bytes. Every Read must return either an error or a frame that is
// exactly the next bytes on the wire and within the protocol's bounds; no
// Read may allocate more than those bounds; and after the first error the
// caller stops, as the host does.
func FuzzReader(f *testing.F) {
	var wire bytes.Buffer
	w := NewWriter(&wire)
	for _, fr := range []struct {
		t      Type
		header any
		body   []byte
	}{
		{TypeHello, Hello{AgentVersion: "v1", UptimeMs: 12.5}, nil},
		{TypeLog, Log{Stream: "stdout"}, []byte("hello\n")},
		{TypeResponse, Result{RequestID: "r1"}, []byte(`{"ok":true}`)},
	} {
		if err := w.Write(fr.t, fr.header, fr.body); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(wire.Bytes())
	f.Add(wire.Bytes()[:wire.Len()-3]) // truncated body
	f.Add(prefix(TypeResponse, maxHeader+1, 0))
	f.Add(prefix(TypeResponse, 0, MaxBody+1))
	f.Add(prefix(TypeResponse, 0xffffffff, 0xffffffff))
	f.Add(prefix(TypeResponse, 2, MaxBody)) // announced, never sent
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The same bytes, whole and one at a time, as a serial port may
		// deliver them: both must give the same frames.
		whole := readAll(t, NewReader(bytes.NewReader(data)), data)
		bytewise := readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(data))), data)
		if whole != bytewise {
			t.Fatalf("%d frames read whole, %d one byte at a time", whole, bytewise)
		}
	})
}

// readAll reads frames until the first error, checks each against the wire
// and returns how many there were.
func readAll(t *testing.T, r *Reader, data []byte) int {
	off, n := 0, 0
	for {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fr, err := r.Read()
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxHeader+MaxBody+readSlack {
			t.Fatalf("frame %d: one Read allocated %d bytes, over the bound of %d", n, alloc, maxHeader+MaxBody)
		}
		if err != nil {
			checkEnd(t, err, data[off:])
			return n
		}
		if len(fr.Header) > maxHeader || len(fr.Body) > MaxBody {
			t.Fatalf("frame %d: header %d, body %d bytes, over the bounds", n, len(fr.Header), len(fr.Body))
		}
		want := frameBytes(fr)
		if !bytes.Equal(want, data[off:min(off+len(want), len(data))]) {
			t.Fatalf("frame %d at byte %d is not what the wire holds", n, off)
		}
		// Decoding a hostile header fails cleanly or not at all.
		var hello Hello
		_ = fr.Decode(&hello)
		var res Result
		_ = fr.Decode(&res)
		off += len(want)
		n++
	}
}

// checkEnd checks the error that ended the reading against what was left.
func checkEnd(t *testing.T, err error, rest []byte) {
	t.Helper()
	switch {
	case len(rest) == 0:
		if err != io.EOF {
			t.Fatalf("at the end of the input: %v, want io.EOF", err)
		}
	case len(rest) < 9:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d bytes of a prefix left: %v, want io.ErrUnexpectedEOF", len(rest), err)
		}
	default:
		hl := binary.BigEndian.Uint32(rest[1:5])
		bl := binary.BigEndian.Uint32(rest[5:9])
		if hl > maxHeader || bl > MaxBody {
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("header %d, body %d: %v, want ErrFrameTooLarge", hl, bl, err)
			}
			return
		}
		if uint64(len(rest)) >= 9+uint64(hl)+uint64(bl) {
			t.Fatalf("a whole frame of header %d, body %d was refused: %v", hl, bl, err)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("a frame cut short: %v, want an EOF", err)
		}
	}
}

// frameBytes is a frame as it travels: type, lengths, header, body.
func frameBytes(fr Frame) []byte {
	b := prefix(fr.Type, uint32(len(fr.Header)), uint32(len(fr.Body)))
	b = append(b, fr.Header...)
	return append(b, fr.Body...)
}
