package cli

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The daemon answers a call that asks (spansHeader, any value) with the
// host's share of it in µs (hostShareHeader) and each of its marks' times
// from the request's arrival (spansHeader); see package spans.
const (
	spansHeader     = "X-Hearth-Spans"
	hostShareHeader = "X-Hearth-Host-Us"
)

// hostShares collects what the daemon reports of the calls of one closed
// loop: the host's share of each, and the marks it passed.
type hostShares struct {
	mu    sync.Mutex
	host  []float64
	marks []map[string]float64
}

// add keeps one answer's headers; an answer without them is not counted.
func (h *hostShares) add(hdr http.Header) {
	us, err := strconv.ParseFloat(hdr.Get(hostShareHeader), 64)
	if err != nil {
		return
	}
	marks := map[string]float64{}
	for _, kv := range strings.Split(hdr.Get(spansHeader), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if n, err := strconv.ParseFloat(v, 64); ok && err == nil {
			marks[k] = n
		}
	}
	h.mu.Lock()
	h.host = append(h.host, us)
	h.marks = append(h.marks, marks)
	h.mu.Unlock()
}

// hostShareResult is the host's share of a closed loop's calls, in µs:
// p50 and p99 of the whole, and p50 of each step between two marks.
type hostShareResult struct {
	Calls int                `json:"calls"`
	P50   float64            `json:"p50_us"`
	P99   float64            `json:"p99_us"`
	Steps map[string]float64 `json:"steps_p50_us,omitempty"`
	// Guest is the guest's part (frame sent → answer received), beside.
	GuestP50 float64 `json:"guest_p50_us"`
	GuestP99 float64 `json:"guest_p99_us"`
}

// hostSteps are the host's steps, each between two marks; the guest's
// (frame_sent → frame_received) is not one.
var hostSteps = [][2]string{
	{"received", "verified"}, {"verified", "resolved"}, {"resolved", "leased"}, {"leased", "frame_sent"},
	{"frame_received", "released"}, {"released", "metered"}, {"metered", "answered"},
}

// take returns what was collected and starts afresh.
func (h *hostShares) take() hostShareResult {
	h.mu.Lock()
	host, marks := h.host, h.marks
	h.host, h.marks = nil, nil
	h.mu.Unlock()
	r := hostShareResult{Calls: len(host), P50: round2(percentile(host, 50)), P99: round2(percentile(host, 99)), Steps: map[string]float64{}}
	var guest []float64
	for _, m := range marks {
		if a, ok := m["frame_sent"]; ok {
			if b, ok := m["frame_received"]; ok {
				guest = append(guest, b-a)
			}
		}
	}
	r.GuestP50, r.GuestP99 = round2(percentile(guest, 50)), round2(percentile(guest, 99))
	for _, s := range hostSteps {
		var d []float64
		for _, m := range marks {
			a, okA := m[s[0]]
			b, okB := m[s[1]]
			if okA && okB {
				d = append(d, b-a)
			}
		}
		if len(d) > 0 {
			r.Steps[s[0]+"→"+s[1]] = round2(percentile(d, 50))
		}
	}
	return r
}

// invokeMeasured is invoke asking the daemon for the call's host share,
// which it adds to shares.
func (b *benchDaemon) invokeMeasured(ctx context.Context, shares *hostShares) error {
	out, err := b.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"name":"load"}`)},
		lambda.WithAPIOptions(smithyhttp.AddHeaderValue(spansHeader, "1")))
	if err != nil {
		return err
	}
	if out.FunctionError != nil {
		return fmt.Errorf("function error: %s", out.Payload)
	}
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		shares.add(raw.Header)
	}
	return nil
}
