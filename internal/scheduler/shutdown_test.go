package scheduler

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// slowSnapshotVMM boots machines whose snapshot starts, says so, and
// waits to be let go on.
type slowSnapshotVMM struct {
	*fakevmm.VMM
	started, proceed chan struct{}
}

func (v slowSnapshotVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := v.VMM.Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	return slowSnapshotMachine{Machine: m, v: v}, nil
}

type slowSnapshotMachine struct {
	vmm.Machine
	v slowSnapshotVMM
}

func (m slowSnapshotMachine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	m.v.started <- struct{}{}
	<-m.v.proceed
	return m.Machine.Snapshot(ctx, statePath)
}

// An idle environment whose keep-warm ran out just before the daemon
// stops is suspended, and kept: the stop waits for its suspend, and the
// suspended environment stays on disk, recorded, for the next daemon.
func TestShutdownKeepsAnEnvironmentSuspendedMeanwhile(t *testing.T) {
	vm := fakevmm.New()
	slow := slowSnapshotVMM{VMM: vm, started: make(chan struct{}), proceed: make(chan struct{})}
	fx := newFixtureWith(t, vm, slow, t.TempDir(), func(*Config) {})
	f := fn("f", 0) // suspended as soon as it is idle
	f.KeepWarm = time.Millisecond
	res, _ := call(t, fx.s, f, `{}`)
	<-slow.started // the idle suspend is under way
	stopped := make(chan struct{})
	go func() {
		fx.s.Shutdown(context.Background())
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("the stop did not wait for the suspend under way")
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.proceed)
	<-stopped
	dir := filepath.Join(fx.cfg.Sandbox.Dir, res.EnvID)
	folder, err := sandbox.ReadFolder(dir)
	if err != nil || folder.State != sandbox.StateSuspended {
		t.Fatalf("the environment's folder after the stop: %+v %v, want it suspended", folder, err)
	}
	recs, err := fx.store.Envs(context.Background())
	if err != nil || len(recs) != 1 || recs[0].ID != res.EnvID || recs[0].State != string(sandbox.StateSuspended) {
		t.Fatalf("records after the stop: %+v %v, want %s suspended", recs, err, res.EnvID)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
