package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

func TestSeenLogParses(t *testing.T) {
	sent := time.Unix(1700000000, 0)
	log := "START RequestId: r1 Version: $LATEST\n" +
		"seen id-1 1700000000005000000 " + benchBody("m0", sent) + "\n" +
		"processed id-1 m0/1700000000000000000 aws:sqs arn\n" +
		"seen id-2 1700000000012500000 " + benchBody("m1", sent) + "\n" +
		"END RequestId: r1\n" +
		"START RequestId: r2 Version: $LATEST\n" +
		// A redelivery: counted, its later time not taken.
		"seen id-1 1700000009000000000 " + benchBody("m0", sent) + "\n" +
		// Not the bench's: ignored.
		"seen id-3 1700000000000000000 fail-001\n" +
		"seen id-4 notanumber m2/1700000000000000000\n" +
		"seen id-5 1700000000000000000 m3/x\n" +
		"seen id-6 1700000000000000000 /1700000000000000000\n" +
		"seen id-7 1700000000000000000 m4/1700000000000000000 extra\n" +
		"REPORT RequestId: r2 Duration: 1 ms\n"
	s := newSeenLog()
	// Fed in pieces that cut lines anywhere.
	for i := 0; i < len(log); i += 7 {
		s.feed([]byte(log[i:min(i+7, len(log))]))
	}
	if s.starts != 2 {
		t.Errorf("%d START lines, want 2", s.starts)
	}
	if len(s.byTag) != 2 {
		t.Errorf("tags %v, want m0 and m1 alone", s.byTag)
	}
	got := s.latencies([]string{"m0", "m1", "m9"})
	if len(got) != 2 || got[0] != 5 || got[1] != 12.5 {
		t.Errorf("latencies %v, want [5 12.5]", got)
	}
	if d := s.duplicates([]string{"m0", "m1"}); d != 1 {
		t.Errorf("%d duplicates, want 1", d)
	}
}

func TestSeenLogKeepsACutLine(t *testing.T) {
	s := newSeenLog()
	s.feed([]byte("seen id 1700000000001000000 m0/17000000000"))
	if len(s.byTag) != 0 {
		t.Fatal("a line without its newline was parsed")
	}
	s.feed([]byte("00000000\n"))
	if got := s.latencies([]string{"m0"}); len(got) != 1 || got[0] != 1 {
		t.Errorf("latencies %v, want [1]", got)
	}
}

func TestInsideCall(t *testing.T) {
	s := newSeenLog()
	for _, l := range []string{
		"seen a 1000000010 d1/1000000000", // inside [1000000000, 1000000020]
		"seen b 999000000 d2/1000000000",  // 1 ms before the call
		"seen c 1003000000 d3/1000000000", // 2.5 ms after the answer
		"seen d 1000000000 d4/1000000000", // at the call: inside
	} {
		s.feed([]byte(l + "\n"))
	}
	answered := map[string]int64{"d1": 1000000020, "d2": 1000500000, "d3": 1000500000, "d4": 1000000001, "d5": 1}
	inside, worst := insideCall(s, answered)
	if inside != 2 || worst != 2.5 {
		t.Errorf("inside %d, worst %.2f ms; want 2 and 2.5", inside, worst)
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
	s.feed([]byte("seen a3 1700000000124456789 " + ev.Records[0].Body + "\n"))
	if got := s.latencies([]string{"a3"}); len(got) != 1 || got[0] != 1 {
		t.Errorf("latencies %v, want [1]", got)
	}
}

func sampleEventsReport() *eventsReport {
	r := &eventsReport{Function: "internal/testsqsfunction", Concurrency: 2, BatchSize: 10}
	r.Direct.Invokes, r.Direct.Throughput = 400, 80
	r.Direct.RoundTrip = latencyStat{N: 400, P50: 20, P99: 40}
	r.Direct.ToHandler = latencyStat{N: 400, P50: 10, P99: 20}
	r.Direct.InsideCall = 400
	r.Async.Accepted = latencyStat{N: 20, P50: 3, P99: 5}
	r.Async.ToHandler = latencyStat{N: 20, P50: 25, P99: 30}
	r.Mapping.Idle = latencyStat{N: 20, P50: 15, P99: 50}
	r.Mapping.Messages, r.Mapping.SendSeconds, r.Mapping.DrainSecs = 200, 0.5, 2.5
	r.Mapping.Throughput, r.Mapping.Invocations = 80, 20
	r.Mapping.Burst = latencyStat{N: 200, P50: 1200, P99: 2400}
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
		"direct invoke", "round trip", "80.0", "20.00", "40.00",
		"async (Event)", "call → 202",
		"mapping, idle", "mapping, burst", "1200.00", "2400.00",
		"200 messages sent in 0.50 s, queue empty 2.50 s after the first send: 80.0 messages/s in 20 invocations (10.0 a batch)",
		"400 of 400 handler starts inside their call",
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
		{"direct", "invokes_per_s"}, {"direct", "round_trip", "p50_ms"}, {"direct", "call_to_handler", "p99_ms"},
		{"direct", "handler_start_inside_call"},
		{"async", "accepted_202", "n"}, {"async", "call_to_handler", "p50_ms"},
		{"mapping", "messages_per_s"}, {"mapping", "first_send_to_empty_s"}, {"mapping", "burst_send_to_handler", "p99_ms"},
		{"mapping", "idle_send_to_handler", "p50_ms"}, {"mapping", "invocations"},
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
