package sandbox

import (
	"sync"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// guest is what this process learns of an environment's guest that
// outlives one VMM incarnation: a guest suspended after its runtime ended,
// or after its after-restore hook failed, resumes no better. A cold boot
// makes a new guest.
type guest struct {
	exited chan struct{} // the runtime process ended

	mu         sync.Mutex
	exitStatus string
	restoreErr *guestproto.ErrorObject
}

func newGuest() *guest { return &guest{exited: make(chan struct{})} }

// exit records that the runtime ended, with the agent's account of how.
func (g *guest) exit(status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exitStatus = status
	select {
	case <-g.exited:
	default:
		close(g.exited)
	}
}

// status is how the runtime ended, as the agent said.
func (g *guest) status() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exitStatus == "" {
		return "unknown"
	}
	return g.exitStatus
}

// restoreFailed records that an after-restore hook failed: the environment
// is unusable, and its next caller is told why.
func (g *guest) restoreFailed(o *guestproto.ErrorObject) {
	g.mu.Lock()
	g.restoreErr = o
	g.mu.Unlock()
}

func (g *guest) restoreError() *guestproto.ErrorObject {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.restoreErr
}

// maxRestoreError bounds the error object of a failed after-restore hook
// that an environment keeps for its next caller.
const maxRestoreError = 64 << 10

func restoreError(body []byte) *guestproto.ErrorObject {
	if len(body) > maxRestoreError {
		body = body[:maxRestoreError]
	}
	return errorObject("Runtime.RestoreError", body)
}
