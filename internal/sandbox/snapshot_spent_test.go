package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// A snapshot is spent once its guest has run: a resume that fails after
// the vCPUs started (or a daemon killed then) has let the guest write into
// its memory file, which the old device state no longer matches. Such a
// snapshot is refused, and the next invocation cold-starts, instead of
// restoring a guest from mismatched state and memory.
func TestSnapshotSpentOnceTheGuestRan(t *testing.T) {
	v := &faultyVMM{VMM: fakevmm.New()}
	env := suspendedEnv(t, v)
	v.deafAgent = true
	if err := env.Resume(context.Background()); err == nil {
		t.Fatal("the resume succeeded with a deaf agent")
	}
	if env.State() != sandbox.StateSuspended {
		t.Fatalf("state %s after a failed resume, want suspended", env.State())
	}
	if _, err := os.Stat(filepath.Join(env.Dir(), "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the device state outlived the start of its guest (%v)", err)
	}
	v.deafAgent = false
	if err := env.Resume(context.Background()); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
		t.Fatalf("second resume: %v, want the spent snapshot refused", err)
	}
	res, err := env.Invoke(context.Background(), sandbox.Request{Payload: []byte(`{}`)})
	if err != nil || res.Error != nil {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	if res.StartType != sandbox.StartCold {
		t.Errorf("start %s, want a cold start in place of the spent snapshot", res.StartType)
	}
}
