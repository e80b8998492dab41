package store

import (
	"context"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
)

// Records keep the platform init beside Lambda's init, and records written
// before it existed still read, with what they billed.
func TestRecordsPlatformInit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	// A record as an earlier Hearth wrote it: no platformInitMs, its
	// initMs the whole cold start.
	old := `{"time":"2026-11-25T10:00:00Z","function":"f","version":"$LATEST","envId":"e1","startType":"cold","initMs":2400.5,` +
		`"restoreMs":0,"durationMs":100,"billedMs":2501,"memoryMB":1024,"gbSeconds":2.501,"maxMemoryUsedMB":7,"error":false}`
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meter_records (time, function, record) VALUES (?, ?, ?)`, t0.UnixMilli(), "f", old); err != nil {
		t.Fatal(err)
	}
	fresh := meter.Record{Time: t0.Add(time.Second), Function: "f", StartType: "cold", InitMs: 700.25, PlatformInitMs: 1980.5,
		DurationMs: 100, MemoryMB: 1024}
	fresh.Bill(meter.Prices{})
	if err := s.AddRecord(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Records(ctx, "f", t0, t0.Add(time.Minute))
	if err != nil || len(recs) != 2 {
		t.Fatalf("records %+v, %v", recs, err)
	}
	tests := []struct {
		name                string
		got                 meter.Record
		init, platform, gbs float64
		billed              int64
	}{
		{"old row", recs[0], 2400.5, 0, 2.501, 2501},
		{"new row", recs[1], 700.25, 1980.5, 0.801, 801},
	}
	for _, tt := range tests {
		r := tt.got
		if r.InitMs != tt.init || r.PlatformInitMs != tt.platform || r.BilledMs != tt.billed || r.GBSeconds != tt.gbs {
			t.Errorf("%s: %+v; want init %v, platform %v, billed %d, GB-s %v", tt.name, r, tt.init, tt.platform, tt.billed, tt.gbs)
		}
	}
}
