package agent

import (
	"errors"
	"io"
	"testing"
)

// scriptedStream returns its reads in turn, then blocks the test if read
// again.
type scriptedStream struct {
	reads []read
	io.Writer
}

type read struct {
	data string
	err  error
}

func (s *scriptedStream) Read(b []byte) (int, error) {
	if len(s.reads) == 0 {
		return 0, errors.New("read past the script")
	}
	r := s.reads[0]
	s.reads = s.reads[1:]
	return copy(b, r.data), r.err
}

func (s *scriptedStream) Close() error { return nil }

// While the host is disconnected (between a suspend and a resume) the port
// reads 0 bytes and EOF: that is not the end of the channel.
func TestPortReadWaitsOutDisconnection(t *testing.T) {
	tests := []struct {
		name     string
		reads    []read
		want     string
		wantErr  error
		leftover int
	}{
		{"data", []read{{"abc", nil}}, "abc", nil, 0},
		{"EOF while disconnected, then data", []read{{"", io.EOF}, {"", io.EOF}, {"", nil}, {"hello", nil}}, "hello", nil, 0},
		{"data with EOF is data", []read{{"xy", io.EOF}, {"z", nil}}, "xy", nil, 1},
		{"a real error ends it", []read{{"", io.EOF}, {"", io.ErrClosedPipe}, {"never", nil}}, "", io.ErrClosedPipe, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scriptedStream{reads: tt.reads}
			p := &port{f: s}
			buf := make([]byte, 16)
			n, err := p.Read(buf)
			if string(buf[:n]) != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("read %q, %v; want %q, %v", buf[:n], err, tt.want, tt.wantErr)
			}
			if len(s.reads) != tt.leftover {
				t.Errorf("%d reads left, want %d", len(s.reads), tt.leftover)
			}
		})
	}
}
