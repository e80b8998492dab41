package agent

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// The per-phase cap: what is kept, what is dropped and counted, and the one
// notice per phase.
func TestLogPumpCaps(t *testing.T) {
	type write struct {
		stream   string
		n        int
		newPhase bool // start a new phase before this write
	}
	notice := func(limit int) string {
		return fmt.Sprintf("\n[hearth] output over %d bytes in this phase; the rest is dropped\n", limit)
	}
	type frame struct {
		stream string
		n      int // bytes of output, or -1 for the notice
	}
	tests := []struct {
		name        string
		limit       int64 // 0: the default
		writes      []write
		want        []frame
		wantDropped int64
	}{
		{"under the limit", 10, []write{{"stdout", 4, false}, {"stderr", 5, false}},
			[]frame{{"stdout", 4}, {"stderr", 5}}, 0},
		{"exactly the limit", 10, []write{{"stdout", 10, false}},
			[]frame{{"stdout", 10}}, 0},
		{"over the limit in one write", 10, []write{{"stdout", 25, false}},
			[]frame{{"stdout", 10}, {"agent", -1}}, 15},
		{"over the limit across streams, one notice", 10, []write{{"stdout", 6, false}, {"stderr", 6, false}, {"stdout", 3, false}, {"stderr", 1, false}},
			[]frame{{"stdout", 6}, {"stderr", 4}, {"agent", -1}}, 6},
		{"full, then more", 10, []write{{"stdout", 10, false}, {"stdout", 1, false}, {"stdout", 7, false}},
			[]frame{{"stdout", 10}, {"agent", -1}}, 8},
		{"a new phase starts counting again", 10, []write{{"stdout", 12, false}, {"stdout", 10, true}, {"stdout", 1, false}},
			[]frame{{"stdout", 10}, {"agent", -1}, {"stdout", 10}, {"agent", -1}}, 1},
		{"a new phase forgets the dropped bytes", 10, []write{{"stdout", 12, false}, {"stdout", 3, true}},
			[]frame{{"stdout", 10}, {"agent", -1}, {"stdout", 3}}, 0},
		{"default limit", 0, []write{{"stdout", DefaultLogLimit, false}, {"stderr", 1, false}},
			[]frame{{"stdout", DefaultLogLimit}, {"agent", -1}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &frameLog{}
			p := newLogPump(guestproto.NewWriter(l))
			p.setLimit(tt.limit)
			for _, w := range tt.writes {
				if w.newPhase {
					p.newPhase()
				}
				p.send(w.stream, bytes.Repeat([]byte("x"), w.n))
			}
			got := l.frames(t)
			if len(got) != len(tt.want) {
				t.Fatalf("%d frames, want %d", len(got), len(tt.want))
			}
			limit := tt.limit
			if limit == 0 {
				limit = DefaultLogLimit
			}
			for i, w := range tt.want {
				g := got[i]
				stream := decode[guestproto.Log](t, g).Stream
				body := string(g.Body)
				if w.n == -1 && (stream != "agent" || body != notice(int(limit))) {
					t.Errorf("frame %d: %s %q, want the notice", i, stream, body)
				}
				if w.n >= 0 && (g.Type != guestproto.TypeLog || stream != w.stream || len(body) != w.n) {
					t.Errorf("frame %d: %s %s %d bytes, want log %s %d bytes", i, g.Type, stream, len(body), w.stream, w.n)
				}
			}
			if d := p.flush(); d != tt.wantDropped {
				t.Errorf("dropped %d, want %d", d, tt.wantDropped)
			}
		})
	}
}

func TestLogPumpSetLimit(t *testing.T) {
	tests := []struct {
		set  int64
		want int64
	}{{0, DefaultLogLimit}, {-1, DefaultLogLimit}, {1, 1}, {64 << 20, 64 << 20}}
	for _, tt := range tests {
		p := newLogPump(guestproto.NewWriter(&frameLog{}))
		p.setLimit(tt.set)
		if p.limit != tt.want {
			t.Errorf("setLimit(%d): limit %d, want %d", tt.set, p.limit, tt.want)
		}
	}
}

// Through real pipes: both streams arrive whole and in order, a flood is
// drained (the writer never blocks) and counted, and EOF is seen.
func TestLogPumpPipes(t *testing.T) {
	l := &frameLog{}
	p := newLogPump(guestproto.NewWriter(l))
	p.setLimit(4096)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	p.attach(outR, errR)

	if _, err := errW.WriteString("starting\n"); err != nil {
		t.Fatal(err)
	}
	if fs := l.waitFor(t, 1); len(fs) != 1 {
		t.Fatalf("stderr not forwarded: %d frames", len(fs))
	}
	flood := strings.Repeat("y", 1<<20) // 16 pipe buffers: blocks unless drained
	written := make(chan error, 1)
	go func() {
		_, err := outW.WriteString(flood)
		written <- err
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flood blocked its writer")
	}
	outW.Close()
	errW.Close()
	p.waitEOF(10 * time.Second)
	select {
	case <-p.done:
	default:
		t.Fatal("waitEOF returned before both pipes ended")
	}

	var out, errOut, agent strings.Builder
	for _, f := range l.frames(t) {
		switch decode[guestproto.Log](t, f).Stream {
		case "stdout":
			out.Write(f.Body)
		case "stderr":
			errOut.Write(f.Body)
		case "agent":
			agent.Write(f.Body)
		}
	}
	if errOut.String() != "starting\n" {
		t.Errorf("stderr %q", errOut.String())
	}
	if kept := out.Len() + errOut.Len(); kept != 4096 || strings.Trim(out.String(), "y") != "" {
		t.Errorf("kept %d bytes (stdout %d), want 4096 of ys", kept, out.Len())
	}
	if !strings.Contains(agent.String(), "output over 4096 bytes") {
		t.Errorf("notice %q", agent.String())
	}
	if d := p.flush(); d != int64(len(flood)+len("starting\n")-4096) {
		t.Errorf("dropped %d", d)
	}
}

// flush returns at once when nothing waits, and waitEOF with nothing
// attached does not block.
func TestLogPumpIdle(t *testing.T) {
	p := newLogPump(guestproto.NewWriter(&frameLog{}))
	start := time.Now()
	p.waitEOF(time.Minute)
	if d := p.flush(); d != 0 {
		t.Errorf("dropped %d", d)
	}
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	defer outW.Close()
	defer errW.Close()
	p.attach(outR, errR)
	p.flush()
	if time.Since(start) > 90*time.Millisecond {
		t.Errorf("idle flush took %v", time.Since(start))
	}
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}
