// Package spans measures the host's own share of an invocation: the time
// Hearth spends in its own code between a request coming in and its answer
// going out, less the time the guest holds the invocation. A Recorder
// travels in the request's context, so each layer marks what it did
// without any shared state; a context without one makes every mark a
// no-op, so the invocation path pays nothing when nobody measures.
package spans

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Mark is one point on an invocation's way through the host.
type Mark int

// The marks, in the order an invocation passes them.
const (
	// Received: the HTTP request is in the handler.
	Received Mark = iota
	// Verified: its SigV4 signature is checked.
	Verified
	// Resolved: the function, its qualifier and its configuration are read.
	Resolved
	// Leased: the scheduler gave an environment.
	Leased
	// FrameSent: the invocation's frame is written to the guest.
	FrameSent
	// FrameReceived: the guest's answer is read.
	FrameReceived
	// Released: the environment is back with the scheduler.
	Released
	// Metered: the log lines and the meter record are kept.
	Metered
	// Answered: the answer's headers are about to go out.
	Answered
	numMarks
)

var names = [numMarks]string{"received", "verified", "resolved", "leased", "frame_sent", "frame_received", "released", "metered", "answered"}

func (m Mark) String() string {
	if m < 0 || m >= numMarks {
		return "unknown"
	}
	return names[m]
}

// Recorder keeps the time of each mark of one invocation. Its marks are
// made one after the other by the goroutine that serves the invocation,
// so it needs no lock.
type Recorder struct {
	at  [numMarks]time.Time
	now func() time.Time
}

// New returns an empty recorder reading the clock now (time.Now when nil).
func New(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now}
}

// Mark records m at the present time; the last call for a mark wins. A nil
// recorder records nothing.
func (r *Recorder) Mark(m Mark) {
	if r == nil || m < 0 || m >= numMarks {
		return
	}
	r.at[m] = r.now()
}

// At is when m was marked, and whether it was.
func (r *Recorder) At(m Mark) (time.Time, bool) {
	if r == nil || m < 0 || m >= numMarks || r.at[m].IsZero() {
		return time.Time{}, false
	}
	return r.at[m], true
}

// Between is the time from a to b, and whether both were marked.
func (r *Recorder) Between(a, b Mark) (time.Duration, bool) {
	ta, okA := r.At(a)
	tb, okB := r.At(b)
	if !okA || !okB {
		return 0, false
	}
	return tb.Sub(ta), true
}

// Host is the host's share: the whole, from Received to Answered, less
// the guest's part, from FrameSent to FrameReceived. It is false when a
// mark is missing (an invocation that never reached a guest has no share
// to compare with a warm call's).
func (r *Recorder) Host() (time.Duration, bool) {
	total, ok := r.Between(Received, Answered)
	if !ok {
		return 0, false
	}
	guest, ok := r.Between(FrameSent, FrameReceived)
	if !ok {
		return 0, false
	}
	return max(total-guest, 0), true
}

type key struct{}

// With returns ctx carrying r.
func With(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// From returns ctx's recorder; nil (whose marks do nothing) when there is
// none.
func From(ctx context.Context) *Recorder {
	r, _ := ctx.Value(key{}).(*Recorder)
	return r
}

// String lists the marks made, each as its time in µs after Received
// ("received=0,verified=41,…"); empty when Received was not marked.
func (r *Recorder) String() string {
	start, ok := r.At(Received)
	if !ok {
		return ""
	}
	var b strings.Builder
	for m := Received; m < numMarks; m++ {
		t, ok := r.At(m)
		if !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.String())
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(t.Sub(start).Microseconds(), 10))
	}
	return b.String()
}
