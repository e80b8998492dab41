package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Mappings survive a reopen, update atomically, list by function, qualifier
// and source across pages, and are gone once deleted.
func TestEventSourceMappings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		fn, src := "a", "arn:aws:sqs:local:000000000000:q1"
		if i%2 == 1 {
			fn, src = "b", "arn:aws:sqs:local:000000000000:q2"
		}
		m := EventSourceMapping{UUID: fmt.Sprintf("u%d", i), Function: fn, EventSourceArn: src, BatchSize: 10,
			Filters: []string{`{"body":{"k":["v"]}}`}, Enabled: true, State: "Creating", LastModified: t0}
		if i == 4 {
			m.Qualifier = "live"
		}
		if err := s.CreateEventSourceMapping(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateEventSourceMapping(ctx, EventSourceMapping{UUID: "u0", Function: "x", EventSourceArn: "y"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create of u0: %v, want ErrExists", err)
	}
	s.Close()
	if s, err = Open(ctx, dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetEventSourceMapping(ctx, "u4")
	if err != nil || got.Function != "a" || got.Qualifier != "live" || got.BatchSize != 10 || len(got.Filters) != 1 || !got.LastModified.Equal(t0) {
		t.Fatalf("get u4 after reopen: %+v %v", got, err)
	}
	if _, err := s.GetEventSourceMapping(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get nope: %v", err)
	}
	refused := errors.New("refused")
	if _, err := s.UpdateEventSourceMapping(ctx, "u1", func(m *EventSourceMapping) error { m.BatchSize = 99; return refused }); !errors.Is(err, refused) {
		t.Fatalf("refused update: %v", err)
	}
	if m, _ := s.GetEventSourceMapping(ctx, "u1"); m.BatchSize != 10 {
		t.Fatalf("a refused update changed the mapping: %+v", m)
	}
	if m, err := s.UpdateEventSourceMapping(ctx, "u1", func(m *EventSourceMapping) error { m.Function = "c"; m.State = "Enabled"; return nil }); err != nil || m.Function != "c" {
		t.Fatalf("update: %+v %v", m, err)
	}
	tests := []struct {
		filter ESMFilter
		want   []string
	}{
		{ESMFilter{}, []string{"u0", "u1", "u2", "u3", "u4"}},
		{ESMFilter{Function: "a"}, []string{"u0", "u2", "u4"}},
		{ESMFilter{Function: "a", Qualifier: "live"}, []string{"u4"}},
		{ESMFilter{Function: "c"}, []string{"u1"}},
		{ESMFilter{EventSourceArn: "arn:aws:sqs:local:000000000000:q2"}, []string{"u1", "u3"}},
		{ESMFilter{Function: "b", EventSourceArn: "arn:aws:sqs:local:000000000000:q2"}, []string{"u3"}},
	}
	for _, tt := range tests {
		var all []string
		marker := ""
		for pages := 0; pages < 10; pages++ {
			ms, next, err := s.ListEventSourceMappings(ctx, tt.filter, marker, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				all = append(all, m.UUID)
			}
			if marker = next; next == "" {
				break
			}
		}
		if fmt.Sprint(all) != fmt.Sprint(tt.want) {
			t.Errorf("list %+v = %v, want %v", tt.filter, all, tt.want)
		}
	}
	if err := s.DeleteEventSourceMapping(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEventSourceMapping(ctx, "u2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
