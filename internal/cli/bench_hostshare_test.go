package cli

import (
	"net/http"
	"testing"
)

func TestHostSharesTake(t *testing.T) {
	var h hostShares
	for _, a := range []struct{ host, spans string }{
		{"400", "received=0,verified=40,resolved=140,leased=150,frame_sent=180,frame_received=15180,released=15200,metered=15400,answered=15410"},
		{"600", "received=0,verified=60,resolved=160,leased=170,frame_sent=200,frame_received=9000,released=9020,metered=9400,answered=9410"},
		{"", "received=0"},            // not measured: not counted
		{"garbage", "received=0,x=1"}, // nor this
	} {
		hdr := http.Header{}
		if a.host != "" {
			hdr.Set(hostShareHeader, a.host)
		}
		hdr.Set(spansHeader, a.spans)
		h.add(hdr)
	}
	r := h.take()
	if r.Calls != 2 {
		t.Fatalf("calls = %d, want 2", r.Calls)
	}
	if r.P50 != 400 && r.P50 != 500 && r.P50 != 600 {
		t.Errorf("p50 = %v, want one of the samples' range", r.P50)
	}
	if r.P99 != 600 && r.P99 < 590 {
		t.Errorf("p99 = %v, want ~600", r.P99)
	}
	// The guest's step is no step of the host's.
	if _, ok := r.Steps["frame_sent→frame_received"]; ok {
		t.Error("the guest's time is among the host's steps")
	}
	if got := r.Steps["received→verified"]; got < 40 || got > 60 {
		t.Errorf("received→verified p50 = %v, want within 40..60", got)
	}
	if got := r.Steps["released→metered"]; got < 200 || got > 380 {
		t.Errorf("released→metered p50 = %v, want within 200..380", got)
	}
	if r.GuestP50 != 15000 && r.GuestP50 != 8800 && (r.GuestP50 < 8800 || r.GuestP50 > 15000) {
		t.Errorf("guest p50 = %v, want within 8800..15000", r.GuestP50)
	}
	if again := h.take(); again.Calls != 0 {
		t.Errorf("take did not start afresh: %d calls", again.Calls)
	}
}
