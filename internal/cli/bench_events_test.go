package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

func TestSeenLogParses(t *testing.T) {
	sent := time.Unix(1700000000, 0)
	log := "START RequestId: r1 Version: $LATEST\n" +
		"seen id-1 1700000000005000000 " + benchBody("m0", sent) + " 42\n" +
		"processed id-1 m0/1700000000000000000 aws:sqs arn\n" +
		"seen id-2 1700000000012500000 " + benchBody("m1", sent) + " 43\n" +
		"END RequestId: r1\n" +
		"START RequestId: r2 Version: $LATEST\n" +
		// A redelivery: counted, its later times not taken.
		"seen id-1 1700000009000000000 " + benchBody("m0", sent) + " 42\n" +
		// Not the bench's: ignored.
		"seen id-3 1700000000000000000 fail-001 42\n" +
		"seen id-4 notanumber m2/1700000000000000000 42\n" +
		"seen id-5 1700000000000000000 m3/x 42\n" +
		"seen id-6 1700000000000000000 /1700000000000000000 42\n" +
		"seen id-7 1700000000000000000 m4/1700000000000000000 x\n" +
		"seen id-8 1700000000000000000 m5/1700000000000000000\n" +
		"seen id-9 1700000000000000000 m6/1700000000000000000 42 extra\n" +
		"REPORT RequestId: r2 Duration: 1 ms\n"
	s := newSeenLog()
	// Fed in pieces that cut lines anywhere, each read 1 ms later.
	now := sent.UnixNano()
	for i := 0; i < len(log); i += 7 {
		now += 1e6
		s.feed([]byte(log[i:min(i+7, len(log))]), now)
	}
	if s.starts != 2 {
		t.Errorf("%d START lines, want 2", s.starts)
	}
	if len(s.byTag) != 2 {
		t.Errorf("tags %v, want m0 and m1 alone", s.byTag)
	}
	m0, m1 := s.byTag["m0"], s.byTag["m1"]
	if m0 == nil || m1 == nil || m0.At != 1700000000005000000 || m0.Epoch != 42 || m1.Epoch != 43 || m0.Sent != sent.UnixNano() {
		t.Fatalf("records %+v %+v", m0, m1)
	}
	// The line's last byte arrived in the piece read at HostSeen.
	if m0.HostSeen <= sent.UnixNano() || m1.HostSeen <= m0.HostSeen {
		t.Errorf("read at %d then %d", m0.HostSeen, m1.HostSeen)
	}
	got := s.logLatencies([]string{"m0", "m1", "m9"})
	if len(got) != 2 || got[0] != float64(m0.HostSeen-sent.UnixNano())/1e6 {
		t.Errorf("log latencies %v", got)
	}
	if d := s.duplicates([]string{"m0", "m1"}); d != 1 {
		t.Errorf("%d duplicates, want 1", d)
	}
}

func TestSeenLogKeepsACutLine(t *testing.T) {
	s := newSeenLog()
	s.feed([]byte("seen id 1700000000001000000 m0/17000000000"), 1)
	if len(s.byTag) != 0 {
		t.Fatal("a line without its newline was parsed")
	}
	s.feed([]byte("00000000 7\n"), 1700000000003000000)
	if got := s.logLatencies([]string{"m0"}); len(got) != 1 || got[0] != 3 {
		t.Errorf("latencies %v, want [3]", got)
	}
}

func TestEpochKeys(t *testing.T) {
	s := newSeenLog()
	// Two settings of the clock: 1000000000 (read with some waver) and
	// 5000000000.
	for i, e := range []int64{1000000000, 1000400000, 5000000000, 1000900000, 5000000100} {
		s.feed([]byte("seen x 1 t"+string(rune('a'+i))+"/0 "+strconv.FormatInt(e, 10)+"\n"), 0)
	}
	keys := epochKeys(s)
	for e, want := range map[int64]int64{1000000000: 1000000000, 1000400000: 1000000000, 1000900000: 1000000000,
		5000000000: 5000000000, 5000000100: 5000000000} {
		if keys[e] != want {
			t.Errorf("epoch %d in %d, want %d", e, keys[e], want)
		}
	}
}

func TestCalibrate(t *testing.T) {
	const ms = int64(time.Millisecond)
	type call struct {
		tag             string
		sent, at, epoch int64 // at on the guest's clock
		answered        int64
	}
	// Epoch 1's clock is 10 ms behind the host's: every handler started
	// 4–6 ms after its call was sent and 3 ms before its answer.
	// Epoch 2's clock is right, with one call.
	// Epoch 3's calls disagree (its clock ran fast).
	calls := []call{
		{"d1", 100 * ms, 100*ms + 4*ms - 10*ms, 1, 100*ms + 7*ms},
		{"d2", 200 * ms, 200*ms + 6*ms - 10*ms, 1, 200*ms + 9*ms},
		{"d3", 300 * ms, 300*ms + 5*ms - 10*ms, 1, 300*ms + 8*ms},
		{"d4", 400 * ms, 402 * ms, 2 * 1e12, 404 * ms},
		{"d5", 500 * ms, 501 * ms, 3 * 1e12, 502 * ms},
		{"d6", 600 * ms, 620 * ms, 3 * 1e12, 602 * ms},
	}
	s := newSeenLog()
	answered := map[string]int64{}
	for _, c := range calls {
		s.feed([]byte(fmt.Sprintf("seen x %d %s/%d %d\n", c.at, c.tag, c.sent, c.epoch)), 0)
		answered[c.tag] = c.answered
	}
	// Events on epochs 1 and 2, and one on an epoch no direct call saw.
	for _, l := range []string{
		fmt.Sprintf("seen x %d e1/%d 1\n", 1000*ms+20*ms-10*ms, 1000*ms),        // 20 ms
		fmt.Sprintf("seen x %d e2/%d %d\n", 2000*ms+7*ms, 2000*ms, int64(2e12)), // 7 ms
		fmt.Sprintf("seen x %d e3/%d %d\n", 3000*ms, 2999*ms, int64(9e12)),
	} {
		s.feed([]byte(l), 0)
	}
	c := calibrate(s, answered)
	// Epoch 1: each call allows [At−answered, At−sent] = [−13,−6],
	// [−13,−4], [−13,−5] ms: [−13, −6], midpoint −9.5 (so e1 took 19.5
	// ms, against 20 in truth: within half the width).
	if got := c.offset[1]; got != -9500*int64(time.Microsecond) {
		t.Errorf("epoch 1's offset %d, want −9.5 ms", got)
	}
	if got := c.offset[2*1e12]; got != 0 {
		t.Errorf("epoch 2's offset %d, want 0 (in [−2, 2] ms)", got)
	}
	want := clockReport{Epochs: 4, Calibrated: 3, MaxWidth: 17, Inconsistent: 1}
	if c.report != want {
		t.Errorf("report %+v, want %+v", c.report, want)
	}
	got := c.handlerLatencies(s, []string{"e1", "e2", "e3", "nope"})
	if len(got) != 2 || got[0] != 19.5 || got[1] != 7 {
		t.Errorf("handler latencies %v, want [19.5 7]", got)
	}
	if c.report.Uncalibrated != 1 {
		t.Errorf("%d uncalibrated, want 1", c.report.Uncalibrated)
	}
}

func TestSQSEventPayload(t *testing.T) {
	sent := time.Unix(0, 1700000000123456789)
	var ev events.SQSEvent
	if err := json.Unmarshal(sqsEventPayload("a3", sent), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Records) != 1 || ev.Records[0].MessageId != "a3" || ev.Records[0].Body != "a3/1700000000123456789" || ev.Records[0].EventSource != "aws:sqs" {
		t.Errorf("event %+v", ev)
	}
	// What the handler would log for it parses back to the send time.
	s := newSeenLog()
	s.feed([]byte("seen a3 1700000000124456789 "+ev.Records[0].Body+" 5\n"), 1700000000125456789)
	if r := s.byTag["a3"]; r == nil || r.Sent != sent.UnixNano() {
		t.Errorf("record %+v", r)
	}
}

func sampleEventsReport() *eventsReport {
	r := &eventsReport{Function: "internal/testsqsfunction", Concurrency: 2, BatchSize: 10}
	r.Direct.Invokes, r.Direct.Throughput = 400, 80
	r.Direct.RoundTrip = latencyStat{N: 400, P50: 20, P99: 40}
	r.Direct.LogLine = latencyStat{N: 400, P50: 14, P99: 28}
	r.Direct.Single = toHandler{Handler: latencyStat{N: 20, P50: 8, P99: 12}, LogLine: latencyStat{N: 20, P50: 10, P99: 20}}
	r.Async.Accepted = latencyStat{N: 20, P50: 3, P99: 5}
	r.Async.LogLine = latencyStat{N: 20, P50: 25, P99: 30}
	r.Async.Handler = latencyStat{N: 20, P50: 21, P99: 26}
	r.Mapping.Idle = toHandler{Handler: latencyStat{N: 20, P50: 12, P99: 45}, LogLine: latencyStat{N: 20, P50: 15, P99: 50}}
	r.Mapping.Messages, r.Mapping.SendSeconds, r.Mapping.DrainSecs = 200, 0.5, 2.5
	r.Mapping.Throughput, r.Mapping.Invocations = 80, 20
	r.Mapping.Burst = toHandler{Handler: latencyStat{N: 200, P50: 1100, P99: 2300}, LogLine: latencyStat{N: 200, P50: 1200, P99: 2400}}
	r.Async.Retries = map[string]int{"throttled": 1}
	r.Clock = clockReport{Epochs: 2, Calibrated: 2, MaxWidth: 6.5}
	r.ratios()
	return r
}

func TestEventsReportRatios(t *testing.T) {
	r := sampleEventsReport()
	if r.Ratios.MappingOverDirectRate != 1 || r.Ratios.IdleOverDirectP50 != 1.5 || r.Ratios.AsyncOverDirectP50 != 2.5 {
		t.Errorf("ratios %+v", r.Ratios)
	}
	var zero eventsReport
	zero.ratios()
	if zero.Ratios.MappingOverDirectRate != 0 || zero.Ratios.IdleOverDirectP50 != 0 {
		t.Errorf("ratios of nothing %+v, want 0", zero.Ratios)
	}
}

func TestEventsReportTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleEventsReport().writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"path", "p50 ms", "p99 ms",
		"direct invoke, 2 at once", "its answer", "80.0", "20.00", "40.00", "14.00", "28.00",
		"direct invoke, one at a time", "8.00", "12.00",
		"async (Event), one at a time", "the 202",
		"mapping, one message at a time", "mapping, burst", "1200.00", "2400.00",
		"200 messages sent in 0.50 s, queue empty 2.50 s after the first send: 80.0 messages/s in 20 invocations (10.0 a batch)",
		"2 of 2 epochs calibrated by direct calls, good to ±3.25 ms, 0 inconsistent, 0 records uncalibrated",
		"1100.00", "2300.00", "–", "async: attempts retried: 1 throttled",
		"mapping messages/s ÷ direct invokes/s 1.00",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n < 10 {
		t.Errorf("%d lines:\n%s", n, out)
	}
}

func TestEventsReportJSON(t *testing.T) {
	b, err := json.Marshal(sampleEventsReport())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, path := range [][]string{
		{"direct", "invokes_per_s"}, {"direct", "round_trip", "p50_ms"}, {"direct", "call_to_log_line_host_clock", "p99_ms"},
		{"direct", "one_at_a_time", "handler_start_guest_clock", "p50_ms"},
		{"async", "accepted_202", "n"}, {"async", "handler_start_guest_clock", "p50_ms"}, {"async", "log_line_host_clock", "p99_ms"},
		{"mapping", "messages_per_s"}, {"mapping", "first_send_to_empty_s"}, {"mapping", "burst", "handler_start_guest_clock", "p99_ms"},
		{"mapping", "idle", "log_line_host_clock", "p50_ms"}, {"mapping", "invocations"}, {"mapping", "duplicates"},
		{"clock", "max_width_ms"}, {"clock", "uncalibrated_records"},
		{"ratios", "mapping_msgs_per_direct_invoke"}, {"concurrency"}, {"batch_size"}, {"function"},
	} {
		var v any = got
		for _, k := range path {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		if v == nil {
			t.Errorf("JSON lacks %s: %s", strings.Join(path, "."), b)
		}
	}
}

func TestLatencyStat(t *testing.T) {
	var ms []float64
	for i := 1; i <= 200; i++ {
		ms = append(ms, float64(i))
	}
	if got := newLatencyStat(ms); got != (latencyStat{N: 200, P50: 100, P99: 198}) {
		t.Errorf("stat %+v", got)
	}
	if got := newLatencyStat(nil); got != (latencyStat{}) {
		t.Errorf("stat of nothing %+v", got)
	}
}

func TestParseRetries(t *testing.T) {
	metrics := `# HELP hearth_async_retries_total Attempts…
# TYPE hearth_async_retries_total counter
hearth_async_retries_total{function="hello",reason="throttled"} 2
hearth_async_retries_total{function="other",reason="throttled"} 1
hearth_async_retries_total{function="hello",reason="error"} 1
hearth_async_events_queued_total{function="hello"} 20
hearth_async_retries_total{function="hello",reason="bad"} x
`
	got := parseRetries(metrics)
	if len(got) != 2 || got["throttled"] != 3 || got["error"] != 1 {
		t.Errorf("retries %v, want throttled 3, error 1", got)
	}
}
