package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hearthdev/hearth/internal/esm"
)

// Each batch counts its messages by outcome and itself as ok, partial or
// failed, under its mapping.
func TestESMMetrics(t *testing.T) {
	m := newESMMetrics(prometheus.NewRegistry())
	m.Batch("u1", esm.BatchResult{Function: "fn", Messages: 10})
	m.Batch("u1", esm.BatchResult{Function: "fn", Messages: 10, Failed: 3, Filtered: 2})
	m.Batch("u1", esm.BatchResult{Function: "fn", Messages: 4, Failed: 4})
	m.Batch("u1", esm.BatchResult{Function: "fn", Filtered: 5})
	m.Batch("u2", esm.BatchResult{Function: "other", Messages: 1})
	tests := []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.messages.WithLabelValues("u1", "fn", "processed"), 17},
		{m.messages.WithLabelValues("u1", "fn", "failed"), 7},
		{m.messages.WithLabelValues("u1", "fn", "filtered"), 7},
		{m.batches.WithLabelValues("u1", "fn", "ok"), 1},
		{m.batches.WithLabelValues("u1", "fn", "partial"), 1},
		{m.batches.WithLabelValues("u1", "fn", "failed"), 1},
		{m.messages.WithLabelValues("u2", "other", "processed"), 1},
	}
	for i, tt := range tests {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("counter %d = %v, want %v", i, got, tt.want)
		}
	}
}
