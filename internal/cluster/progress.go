package cluster

import "time"

// DrainProgress is how a drained host's move of its suspended
// environments goes, carried in its heartbeats.
type DrainProgress struct {
	// State is moving (environments left to move), waiting (none could
	// move for now: no other live host, or they failed and are tried
	// again), or done (none left but those dropped).
	State string `json:"state"`
	// Moved and Dropped count the environments moved to another host and
	// those that cannot move (their reasons in Recent); Pending those left
	// to try; Failed the attempts that failed and are tried again.
	Moved   int `json:"moved"`
	Dropped int `json:"dropped"`
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
	// LastError is the last failed attempt's.
	LastError string `json:"lastError,omitempty"`
	// Recent are the last moves and drops, oldest first.
	Recent []DrainMove `json:"recent,omitempty"`
	// Started is when this host began obeying the drain; Checked when it
	// last looked for environments to move.
	Started time.Time `json:"started"`
	Checked time.Time `json:"checked"`
}

// The drain states.
const (
	DrainMoving  = "moving"
	DrainWaiting = "waiting"
	DrainDone    = "done"
)

// DrainMove is one environment moved or dropped.
type DrainMove struct {
	Env      string `json:"env"`
	Function string `json:"function"`
	// To is the host that adopted it, NewEnv its id there; empty when
	// dropped, with Reason.
	To      string  `json:"to,omitempty"`
	NewEnv  string  `json:"newEnv,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds"`
	// Bytes is the data shipped.
	Bytes int64     `json:"bytes,omitempty"`
	At    time.Time `json:"at"`
}

// ProgressSource is where a drained host's progress comes from (the
// server's mover); nil while it obeys no drain.
type ProgressSource interface {
	DrainProgress() *DrainProgress
}
