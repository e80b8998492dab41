package sandbox

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// Figures and text a guest reports are bounded before they are used.
func TestGuestFiguresBounded(t *testing.T) {
	limit := 2 * time.Second
	durations := []struct {
		ms   float64
		want time.Duration
	}{
		{12.5, 12500 * time.Microsecond},
		{-3, 0},
		{math.NaN(), 0},
		{math.Inf(1), limit},
		{1e300, limit},
		{5000, limit},
	}
	for _, d := range durations {
		if got := msIn(d.ms, limit); got != d.want {
			t.Errorf("msIn(%v, %v) = %v, want %v", d.ms, limit, got, d.want)
		}
	}
	texts := []struct{ in, want string }{
		{"exit status 2", "exit status 2"},
		{"signal: killed\nREPORT RequestId: x", "signal: killed REPORT Req"},
		{"\x00\x1b[31mred", "  [31mred"},
	}
	for _, tt := range texts {
		if got := printable(tt.in, 25); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The host's log limit counts the function's output; the agent's own
// notices have a small budget of their own, so an honest agent's notice of
// its cap is kept, and a flood of notices is not.
func TestLogSinkLimit(t *testing.T) {
	var out bytes.Buffer
	s := newLogSink(&out, 10)
	s.write("stdout", []byte("0123456789"))
	s.write("agent", []byte("[agent notice]"))
	if got := out.String(); got != "0123456789[agent notice]" || s.droppedBytes() != 0 {
		t.Fatalf("within the limit: %q, dropped %d", got, s.droppedBytes())
	}
	s.write("stderr", []byte("more"))
	s.write("stderr", []byte("and more"))
	s.write("agent", bytes.Repeat([]byte("n"), maxNoticeBytes))
	if s.droppedBytes() != 4+8+maxNoticeBytes {
		t.Fatalf("dropped %d, want %d", s.droppedBytes(), 4+8+maxNoticeBytes)
	}
	if n := strings.Count(out.String(), "[hearth] output over 10 bytes"); n != 1 {
		t.Fatalf("%d notices of dropped output, want 1: %q", n, out.String())
	}
	s.reset()
	s.write("stdout", []byte("next"))
	if !strings.HasSuffix(out.String(), "next") || string(s.last()) != "next" {
		t.Fatalf("a new phase did not start afresh: %q", out.String())
	}
}
