package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
)

func openMeterStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func outboxKinds(t *testing.T, s *Store) ([]string, []MeterEvent) {
	t.Helper()
	evs, err := s.MeterOutbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return kinds, evs
}

// Every kind of local meter write enters the outbox in the write's own
// transaction, in order, once the outbox is enabled; before, a
// standalone host's writes do not (and its history is put in when it
// first publishes); published events go, and their sequences are never
// given again, across a restart too.
func TestMeterOutbox(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMeterStore(t, dir)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	rec := func(fn string, at time.Time) meter.Record {
		r := meter.Record{Time: at, Function: fn, StartType: "cold", DurationMs: 12.5, MemoryMB: 128}
		r.Bill(meter.Prices{})
		return r
	}
	// Standalone: nothing enters an outbox.
	if err := s.AddRecord(ctx, rec("early", t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.EnvStarted(ctx, "e0", "early", 128, t0); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM meter_outbox`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("standalone outbox: %d rows, %v", n, err)
	}
	if _, err := s.MeterOutbox(ctx, 10); err == nil {
		t.Fatal("MeterOutbox before EnableMeterOutbox: no error")
	}
	epoch, err := s.EnableMeterOutbox(ctx)
	if err != nil || len(epoch) != 16 {
		t.Fatalf("epoch %q, %v", epoch, err)
	}
	kinds, _ := outboxKinds(t, s)
	if got := strings.Join(kinds, ","); got != "record,env" {
		t.Fatalf("backfill: %s, want record,env", got)
	}
	steps := []struct {
		name  string
		write func() error
		kinds string
	}{
		{"record", func() error { return s.AddRecord(ctx, rec("f", t0.Add(time.Second))) }, "record"},
		{"env start", func() error { return s.EnvStarted(ctx, "e1", "f", 256, t0) }, "env"},
		{"env start again (ignored)", func() error { return s.EnvStarted(ctx, "e1", "f", 256, t0) }, ""},
		{"suspend", func() error { return s.Suspended(ctx, "e1", "f", 64<<20, t0.Add(2*time.Second)) }, "suspend"},
		{"resume", func() error { return s.Resumed(ctx, "e1", t0.Add(3*time.Second)) }, "resume"},
		{"resume again (nothing open)", func() error { return s.Resumed(ctx, "e1", t0.Add(4*time.Second)) }, ""},
		{"env end", func() error { return s.EnvEnded(ctx, "e1", t0.Add(5*time.Second)) }, "env_end"},
		{"env end again", func() error { return s.EnvEnded(ctx, "e1", t0.Add(6*time.Second)) }, ""},
		{"microvm run", func() error { return s.MicroVMRunStarted(ctx, "mv1", "microvm:img", 512, t0) }, "run"},
		{"microvm run end", func() error { return s.MicroVMRunEnded(ctx, "mv1", t0.Add(7*time.Second)) }, "run_end"},
	}
	before := 2
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		kinds, _ := outboxKinds(t, s)
		got := strings.Join(kinds[before:], ",")
		if got != st.kinds {
			t.Errorf("%s: outbox got %q, want %q", st.name, got, st.kinds)
		}
		before = len(kinds)
	}
	_, evs := outboxKinds(t, s)
	for i, e := range evs {
		if e.Epoch != epoch || (i > 0 && e.Seq <= evs[i-1].Seq) || !json.Valid(e.Body) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	// Published up to the fourth: those go; the rest stay, in order.
	if err := s.MeterPublished(ctx, evs[3].Seq); err != nil {
		t.Fatal(err)
	}
	_, left := outboxKinds(t, s)
	if len(left) != len(evs)-4 || left[0].Seq != evs[4].Seq {
		t.Fatalf("after publishing 4 of %d: %d left, first %d", len(evs), len(left), left[0].Seq)
	}
	// A restart keeps the epoch, the triggers and the unpublished events;
	// an event published and not yet forgotten (a crash between) comes
	// again with the same id.
	s.Close()
	s = openMeterStore(t, dir)
	if e2, err := s.EnableMeterOutbox(ctx); err != nil || e2 != epoch {
		t.Fatalf("epoch after restart %q, %v; want %q", e2, err, epoch)
	}
	_, again := outboxKinds(t, s)
	if len(again) != len(left) || again[0].ID() != left[0].ID() {
		t.Fatalf("after restart: %d events (first %s), want %d (first %s)", len(again), again[0].ID(), len(left), left[0].ID())
	}
	if err := s.MeterPublished(ctx, again[len(again)-1].Seq); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRecord(ctx, rec("f", t0.Add(8*time.Second))); err != nil {
		t.Fatal(err)
	}
	_, last := outboxKinds(t, s)
	if len(last) != 1 || last[0].Seq <= again[len(again)-1].Seq {
		t.Fatalf("a new write after all were published: %+v (last published %d)", last, again[len(again)-1].Seq)
	}
}

// An origin's events, applied on another host, make its rows there with
// its host; applying them again (the same stream sequence, or published
// again later under a new one) changes nothing; a host's own events are
// skipped; a host that was wiped (a new epoch) is a new origin.
func TestApplyMeterEvents(t *testing.T) {
	ctx := context.Background()
	a := openMeterStore(t, t.TempDir())
	b := openMeterStore(t, t.TempDir())
	if _, err := a.EnableMeterOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EnableMeterOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	r := meter.Record{Time: t0, Function: "f", Version: "$LATEST", EnvID: "e1", StartType: "cold", InitMs: 20, DurationMs: 3, MemoryMB: 128}
	r.Bill(meter.Prices{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.EnvStarted(ctx, "e1", "f", 128, t0))
	must(a.AddRecord(ctx, r))
	must(a.Suspended(ctx, "e1", "f", 1<<30, t0.Add(time.Second)))
	must(a.Resumed(ctx, "e1", t0.Add(time.Hour)))
	must(a.EnvEnded(ctx, "e1", t0.Add(time.Hour+time.Second)))
	must(a.MicroVMRunStarted(ctx, "mv", "microvm:img", 512, t0))
	must(a.MicroVMRunEnded(ctx, "mv", t0.Add(time.Minute)))
	evs, err := a.MeterOutbox(ctx, 100)
	must(err)
	data := func(e MeterEvent) []byte {
		d, err := json.Marshal(e)
		must(err)
		return d
	}
	var stream uint64
	applyAll := func(to *Store, host string, evs []MeterEvent) (changed int) {
		t.Helper()
		for _, e := range evs {
			stream++
			ok, err := to.ApplyMeterEvent(ctx, stream, host, data(e))
			must(err)
			if ok {
				changed++
			}
		}
		return changed
	}
	if n := applyAll(b, "a", evs); n != len(evs) {
		t.Fatalf("applied %d of %d", n, len(evs))
	}
	check := func(when string) {
		t.Helper()
		recs, err := b.Records(ctx, "", t0.Add(-time.Minute), time.Now())
		must(err)
		if len(recs) != 1 || recs[0].Host != "a" || recs[0].GBSeconds != r.GBSeconds || recs[0].EnvID != "e1" {
			t.Fatalf("%s: b's records %+v", when, recs)
		}
		spans, susp, err := b.Usage(ctx, t0.Add(-time.Minute))
		must(err)
		if len(spans) != 1 || spans[0].Host != "a" || spans[0].EnvID != "a/e1" || !spans[0].End.Equal(t0.Add(time.Hour+time.Second)) {
			t.Fatalf("%s: b's env spans %+v", when, spans)
		}
		if len(susp) != 1 || susp[0].Host != "a" || susp[0].Bytes != 1<<30 || !susp[0].End.Equal(t0.Add(time.Hour)) {
			t.Fatalf("%s: b's suspensions %+v", when, susp)
		}
		runs, err := b.MicroVMRuns(ctx, t0.Add(-time.Minute))
		must(err)
		if len(runs) != 1 || runs[0].EnvID != "a/mv" || !runs[0].End.Equal(t0.Add(time.Minute)) {
			t.Fatalf("%s: b's runs %+v", when, runs)
		}
		// Nothing of a's entered b's outbox: b publishes only its own.
		out, err := b.MeterOutbox(ctx, 100)
		must(err)
		if len(out) != 0 {
			t.Fatalf("%s: b's outbox has %d events", when, len(out))
		}
	}
	check("once")
	// The same stream sequences again (a follower started again).
	stream -= uint64(len(evs))
	if n := applyAll(b, "a", evs); n != 0 {
		t.Fatalf("the same sequences again changed %d", n)
	}
	// Published again beyond the stream's duplicate window: new stream
	// sequences, the same ids.
	if n := applyAll(b, "a", evs); n != 0 {
		t.Fatalf("published again changed %d", n)
	}
	check("after duplicates")
	// b's own events, read back from the stream, are skipped.
	own, err := b.MeterOutbox(ctx, 100)
	must(err)
	must(b.AddRecord(ctx, r))
	own, err = b.MeterOutbox(ctx, 100)
	must(err)
	if n := applyAll(b, "b", own); n != 0 {
		t.Fatalf("b's own events changed %d", n)
	}
	// a wiped and back with the same node: a new epoch, its sequences
	// from 1 again, applied.
	a2 := openMeterStore(t, t.TempDir())
	_, err = a2.EnableMeterOutbox(ctx)
	must(err)
	must(a2.AddRecord(ctx, r))
	evs2, err := a2.MeterOutbox(ctx, 100)
	must(err)
	if evs2[0].Seq != 1 || evs[0].Seq != 1 {
		t.Fatalf("both start at 1: %d, %d", evs2[0].Seq, evs[0].Seq)
	}
	if n := applyAll(b, "a", evs2); n != 1 {
		t.Fatalf("a's new epoch: changed %d, want 1", n)
	}
	if followed, err := b.MeterFollowed(ctx); err != nil || followed != stream {
		t.Fatalf("followed %d, %v; want %d", followed, err, stream)
	}
}

// Events from the stream are checked before anything is stored: each bad
// one is refused whole and moved past (the cursor advances), and a good
// one after it applies.
func TestApplyMeterEventRefused(t *testing.T) {
	ctx := context.Background()
	s := openMeterStore(t, t.TempDir())
	if _, err := s.EnableMeterOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute).UnixMilli()
	good := `{"time":"` + time.UnixMilli(now).UTC().Format(time.RFC3339Nano) + `","function":"f","memoryMB":128,"durationMs":1,"billedMs":1,"gbSeconds":0.000125}`
	ev := func(seq int, kind, body string) string {
		return fmt.Sprintf(`{"epoch":"e0","seq":%d,"kind":%q,"body":%s}`, seq, kind, body)
	}
	future := time.Now().Add(48 * time.Hour).UnixMilli()
	tests := []struct {
		name, host, data string
	}{
		{"too large", "a", ev(1, "record", `{"pad":"`+strings.Repeat("x", MaxMeterEventBytes)+`"}`)},
		{"bad host", "a.b", ev(1, "record", good)},
		{"empty host", "", ev(1, "record", good)},
		{"not json", "a", `{"epoch":`},
		{"no epoch", "a", `{"seq":1,"kind":"record","body":` + good + `}`},
		{"seq 0", "a", ev(0, "record", good)},
		{"unknown kind", "a", ev(1, "bill", good)},
		{"record without function", "a", ev(1, "record", strings.Replace(good, `"function":"f"`, `"function":""`, 1))},
		{"record with negative memory", "a", ev(1, "record", strings.Replace(good, `"memoryMB":128`, `"memoryMB":-1`, 1))},
		{"record with negative duration", "a", ev(1, "record", strings.Replace(good, `"durationMs":1`, `"durationMs":-5`, 1))},
		{"record from 1970", "a", ev(1, "record", strings.Replace(good, `"time":"`, `"time":"1970-01-01T00:00:00Z","x":"`, 1))},
		{"record a body of the wrong type", "a", ev(1, "record", `[1,2]`)},
		{"env in the future", "a", ev(1, "env", fmt.Sprintf(`{"id":"e","function":"f","memoryMB":128,"start":%d}`, future))},
		{"env ending before its start", "a", ev(1, "env", fmt.Sprintf(`{"id":"e","function":"f","memoryMB":128,"start":%d,"end":%d}`, now, now-1000))},
		{"env without memory", "a", ev(1, "env", fmt.Sprintf(`{"id":"e","function":"f","start":%d}`, now))},
		{"env_end without end", "a", ev(1, "env_end", `{"id":"e"}`)},
		{"suspend with negative bytes", "a", ev(1, "suspend", fmt.Sprintf(`{"env":"e","function":"f","bytes":-1,"start":%d}`, now))},
		{"run with a newline in its id", "a", ev(1, "run", fmt.Sprintf(`{"id":"m\n","function":"microvm:x","memoryMB":128,"start":%d}`, now))},
	}
	var stream uint64
	for _, tt := range tests {
		stream++
		changed, err := s.ApplyMeterEvent(ctx, stream, tt.host, []byte(tt.data))
		if !errors.Is(err, ErrBadMeterEvent) || changed {
			t.Errorf("%s: changed %v, err %v; want ErrBadMeterEvent", tt.name, changed, err)
		}
		if followed, _ := s.MeterFollowed(ctx); followed != stream {
			t.Errorf("%s: followed %d, want %d (moved past)", tt.name, followed, stream)
		}
	}
	for _, table := range []string{"meter_records", "meter_envs", "meter_suspensions", "meter_microvm_runs", "meter_applied"} {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows after refused events, %v", table, n, err)
		}
	}
	stream++
	if changed, err := s.ApplyMeterEvent(ctx, stream, "a", []byte(ev(1, "record", good))); err != nil || !changed {
		t.Fatalf("a good event after: changed %v, %v", changed, err)
	}
}

// What the outbox adds to writing a record (the invocation path's write).
func BenchmarkAddRecord(b *testing.B) {
	for _, outbox := range []bool{false, true} {
		b.Run(fmt.Sprintf("outbox=%v", outbox), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if outbox {
				if _, err := s.EnableMeterOutbox(ctx); err != nil {
					b.Fatal(err)
				}
			}
			r := meter.Record{Time: time.Now(), Function: "f", StartType: "warm", DurationMs: 3, MemoryMB: 128}
			r.Bill(meter.Prices{})
			for b.Loop() {
				if err := s.AddRecord(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
