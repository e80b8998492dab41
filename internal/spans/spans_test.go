package spans

import (
	"context"
	"testing"
	"time"
)

// clock returns a clock that moves by the given steps, one per reading.
func clock(steps ...time.Duration) func() time.Time {
	t := time.Unix(1000, 0)
	i := 0
	return func() time.Time {
		if i < len(steps) {
			t = t.Add(steps[i])
			i++
		}
		return t
	}
}

func TestHost(t *testing.T) {
	all := []Mark{Received, Verified, Resolved, Leased, FrameSent, FrameReceived, Released, Metered, Answered}
	us := time.Microsecond
	tests := []struct {
		name  string
		marks []Mark
		steps []time.Duration
		want  time.Duration
		ok    bool
		spans string
	}{
		{name: "warm call", marks: all,
			// received, +40 verified, +100 resolved, +10 leased, +30 sent,
			// +15 ms in the guest, +20 released, +200 metered, +10 answered
			steps: []time.Duration{0, 40 * us, 100 * us, 10 * us, 30 * us, 15 * time.Millisecond, 20 * us, 200 * us, 10 * us},
			want:  410 * us, ok: true,
			spans: "received=0,verified=40,resolved=140,leased=150,frame_sent=180,frame_received=15180,released=15200,metered=15400,answered=15410"},
		{name: "never reached a guest", marks: []Mark{Received, Verified, Resolved, Answered},
			steps: []time.Duration{0, us, us, us}, ok: false, spans: "received=0,verified=1,resolved=2,answered=3"},
		{name: "not answered", marks: []Mark{Received, FrameSent, FrameReceived},
			steps: []time.Duration{0, us, us}, ok: false, spans: "received=0,frame_sent=1,frame_received=2"},
		{name: "nothing", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(clock(tt.steps...))
			for _, m := range tt.marks {
				r.Mark(m)
			}
			got, ok := r.Host()
			if got != tt.want || ok != tt.ok {
				t.Errorf("Host() = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
			if s := r.String(); s != tt.spans {
				t.Errorf("String() = %q; want %q", s, tt.spans)
			}
		})
	}
}

func TestLastMarkWins(t *testing.T) {
	r := New(clock(0, time.Millisecond, time.Millisecond))
	r.Mark(Received)
	r.Mark(Verified)
	r.Mark(Verified)
	if d, ok := r.Between(Received, Verified); !ok || d != 2*time.Millisecond {
		t.Errorf("Between = %v, %v; want 2ms, true", d, ok)
	}
}

func TestContext(t *testing.T) {
	if From(context.Background()) != nil {
		t.Fatal("a context without a recorder gave one")
	}
	// A nil recorder takes marks and answers nothing: the invocation
	// path marks without checking.
	var none *Recorder
	none.Mark(Received)
	if _, ok := none.Host(); ok {
		t.Error("a nil recorder has a host share")
	}
	if none.String() != "" {
		t.Error("a nil recorder lists marks")
	}
	r := New(nil)
	ctx := With(context.Background(), r)
	From(ctx).Mark(Received)
	if _, ok := r.At(Received); !ok {
		t.Error("a mark through the context did not reach the recorder")
	}
	if _, ok := r.At(Mark(99)); ok {
		t.Error("an unknown mark is marked")
	}
	if Mark(99).String() != "unknown" || FrameSent.String() != "frame_sent" {
		t.Error("mark names")
	}
}
