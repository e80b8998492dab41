package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/store"
)

// The meter bills a record by its prices as it keeps it: the stored
// record, the billed GB-s metric and the platform-init histogram agree,
// with the price table's switch off and on.
func TestStoreMeterBillsAtRecordTime(t *testing.T) {
	cold := meter.Record{Function: "f", StartType: "cold", DurationMs: 99.5, InitMs: 700.4, PlatformInitMs: 1999.2, MemoryMB: 2048}
	tests := []struct {
		name       string
		prices     meter.Prices
		wantBilled int64
	}{
		{"Lambda's INIT only", meter.LambdaPrices, 100 + 701},
		{"platform billed by the switch", meter.Prices{BillPlatformInit: true}, 100 + 701 + 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			m := newMetrics()
			sm := storeMeter{st: st, m: m, log: slog.Default(), prices: tt.prices}
			r := cold
			r.Time = time.Now().UTC()
			sm.Invoked(r)
			recs, err := st.Records(ctx, "", r.Time.Add(-time.Second), r.Time.Add(time.Second))
			if err != nil || len(recs) != 1 {
				t.Fatalf("records %+v, %v", recs, err)
			}
			got := recs[0]
			wantGBs := float64(tt.wantBilled) / 1000 * 2
			if got.BilledMs != tt.wantBilled || got.GBSeconds != wantGBs || got.PlatformInitMs != cold.PlatformInitMs || got.InitMs != cold.InitMs {
				t.Errorf("stored %+v, want billed %d ms, %v GB-s", got, tt.wantBilled, wantGBs)
			}
			families, err := m.registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var billedGBs, platformSum float64
			var platformCount uint64
			for _, f := range families {
				switch f.GetName() {
				case "hearth_billed_gb_seconds_total":
					billedGBs = f.GetMetric()[0].GetCounter().GetValue()
				case "hearth_platform_init_duration_seconds":
					h := f.GetMetric()[0].GetHistogram()
					platformSum, platformCount = h.GetSampleSum(), h.GetSampleCount()
				}
			}
			if billedGBs != wantGBs {
				t.Errorf("billed GB-s metric %v, want %v", billedGBs, wantGBs)
			}
			if platformCount != 1 || platformSum != cold.PlatformInitMs/1000 {
				t.Errorf("platform init histogram: %d observations, sum %v; want 1, %v", platformCount, platformSum, cold.PlatformInitMs/1000)
			}
		})
	}
}
