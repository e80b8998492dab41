package esm

// scaleInput is what a mapping's pollers are counted against, once a
// tick.
type scaleInput struct {
	// Current is how many pollers run.
	Current int
	// Visible is how many messages wait in the queue.
	Visible   int
	BatchSize int
	// Cap is the most pollers (invocations in flight) the mapping may
	// have: its MaximumConcurrency, or the host's bound, under the
	// function's reserved concurrency.
	Cap int
	// Throttled says an invocation was throttled since the last tick.
	Throttled bool
}

// decide is how many pollers a mapping should run. Each poller has at
// most one invocation in flight, so pollers are the mapping's concurrency.
// With a backlog it grows towards one poller per batch waiting, at most
// doubling a tick (as Lambda adds pollers by steps); with the backlog
// shrinking it gives one back a tick; with an empty queue it falls to the
// one poller that long-polls, so the function's environments go idle and
// are suspended. A throttle takes one poller away. Never below one, never
// above Cap.
func decide(in scaleInput) int {
	limit := max(in.Cap, 1)
	cur := max(in.Current, 1)
	var target int
	switch need := (in.Visible + max(in.BatchSize, 1) - 1) / max(in.BatchSize, 1); {
	case in.Throttled:
		target = cur - 1
	case in.Visible == 0:
		target = 1
	case need > cur:
		target = cur + min(need-cur, cur)
	case need < cur:
		target = cur - 1
	default:
		target = cur
	}
	return min(max(target, 1), limit)
}
