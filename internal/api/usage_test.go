package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Unix(0, 0).UTC(), false},
		{"1h", now.Add(-time.Hour), false},
		{"90s", now.Add(-90 * time.Second), false},
		{"2026-11-25T10:00:00Z", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), false},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, now)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

type fixedPools map[string]scheduler.Stats

func (p fixedPools) StatsByFunction() map[string]scheduler.Stats { return p }
func (fixedPools) StartTypes() map[string]int                    { return map[string]int{"cold": 2, "warm": 5} }

// Status lists every function, with or without environments, by name.
func TestStatus(t *testing.T) {
	a := newTestAPI(t)
	a.cfg.Pools = fixedPools{"b": {Busy: 1, Warm: 2}}
	for _, name := range []string{"c", "a", "b"} {
		if err := a.cfg.Store.CreateFunction(context.Background(), store.Function{FunctionName: name, Version: "$LATEST"}); err != nil {
			t.Fatal(err)
		}
	}
	status, _, body := call(t, a, "GET", "/hearth/v1/status", nil)
	var out struct {
		Functions []struct {
			Name       string
			Busy, Warm int
			Suspended  int
		}
		Invocations map[string]int
	}
	if err := json.Unmarshal(body, &out); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if len(out.Functions) != 3 || out.Functions[0].Name != "a" || out.Functions[1].Name != "b" || out.Functions[1].Warm != 2 || out.Functions[2].Name != "c" {
		t.Errorf("functions %+v, want a, b (1 busy, 2 warm), c", out.Functions)
	}
	if out.Invocations["warm"] != 5 {
		t.Errorf("invocations %v", out.Invocations)
	}
}
