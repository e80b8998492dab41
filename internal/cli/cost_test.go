package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/meter"
)

func TestWriteCost(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f := meter.FunctionCost{Name: "sleeper", MemoryMB: 1024, Requests: 4, BilledSeconds: 2.345, PlatformInitSeconds: 1.987, GBSeconds: 2.345}
	tests := []struct {
		name   string
		prices meter.Prices
		want   []string
	}{
		{"platform init unbilled", meter.LambdaPrices, []string{"platform init (VMM start, kernel boot): not billed"}},
		{"platform init billed", meter.Prices{Label: "mine", BillPlatformInit: true}, []string{"platform init (VMM start, kernel boot): billed"}},
	}
	for _, tt := range tests {
		var b strings.Builder
		rep := meter.Report{Since: t0, Until: t0.Add(time.Hour), Prices: tt.prices, Functions: []meter.FunctionCost{f}, Total: f}
		rep.Total.Name = "total"
		if err := writeCost(&b, rep); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		want := append(tt.want, "billed s", "platform init s", "2.345", "1.987", "sleeper", "total")
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, out)
			}
		}
	}
}

// By host, each host's table comes under its name.
func TestWriteHostCosts(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		hosts []api.HostCost
		want  []string
	}{
		{"two hosts", []api.HostCost{
			{Host: "a", Functions: []meter.FunctionCost{{Name: "f", Requests: 3}}, Total: meter.FunctionCost{Name: "total", Requests: 3}},
			{Host: "b", Functions: []meter.FunctionCost{{Name: "g", Requests: 7}}, Total: meter.FunctionCost{Name: "total", Requests: 7}},
		}, []string{"host a\n", "host b\n", " f ", " g "}},
		{"none", nil, []string{"nothing metered"}},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := writeHostCosts(&b, api.HostCosts{Since: t0, Until: t0.Add(time.Hour), Prices: meter.LambdaPrices, Hosts: tt.hosts}); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, b.String())
			}
		}
	}
}
