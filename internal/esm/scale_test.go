package esm

import "testing"

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		in   scaleInput
		want int
	}{
		{"empty queue, one poller stays", scaleInput{Current: 1, Visible: 0, BatchSize: 10, Cap: 5}, 1},
		{"empty queue, down to one at once", scaleInput{Current: 5, Visible: 0, BatchSize: 10, Cap: 5}, 1},
		{"a small backlog one poller takes", scaleInput{Current: 1, Visible: 7, BatchSize: 10, Cap: 5}, 1},
		{"backlog: doubles", scaleInput{Current: 1, Visible: 100, BatchSize: 10, Cap: 50}, 2},
		{"backlog: doubles again", scaleInput{Current: 2, Visible: 100, BatchSize: 10, Cap: 50}, 4},
		{"backlog: up to what it needs", scaleInput{Current: 8, Visible: 100, BatchSize: 10, Cap: 50}, 10},
		{"backlog: capped by MaximumConcurrency", scaleInput{Current: 4, Visible: 1000, BatchSize: 10, Cap: 5}, 5},
		{"backlog shrinking: one less", scaleInput{Current: 5, Visible: 20, BatchSize: 10, Cap: 5}, 4},
		{"steady", scaleInput{Current: 3, Visible: 30, BatchSize: 10, Cap: 5}, 3},
		{"throttled with backlog", scaleInput{Current: 4, Visible: 1000, BatchSize: 10, Cap: 8, Throttled: true}, 3},
		{"throttled at one stays one", scaleInput{Current: 1, Visible: 1000, BatchSize: 10, Cap: 8, Throttled: true}, 1},
		{"the cap lowered (reserved concurrency)", scaleInput{Current: 6, Visible: 1000, BatchSize: 10, Cap: 2}, 2},
		{"reserved concurrency 0 still polls once", scaleInput{Current: 3, Visible: 1000, BatchSize: 10, Cap: 0}, 1},
		{"large batches", scaleInput{Current: 1, Visible: 2500, BatchSize: 1000, Cap: 10}, 2},
		{"none running yet", scaleInput{Current: 0, Visible: 50, BatchSize: 10, Cap: 10}, 2},
	}
	for _, tt := range tests {
		if got := decide(tt.in); got != tt.want {
			t.Errorf("%s: decide(%+v) = %d, want %d", tt.name, tt.in, got, tt.want)
		}
	}
}
