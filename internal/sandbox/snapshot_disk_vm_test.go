package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testdisk"
	"github.com/hearthdev/hearth/internal/vmm"
)

// fillingVMM restores real machines whose snapshot finds the disk filled
// just before QEMU writes the state, when fill is set.
type fillingVMM struct {
	sandbox.VMM
	t    *testing.T
	disk string
	fill bool
}

func (v *fillingVMM) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	m, err := v.VMM.Restore(ctx, spec, snap)
	if err != nil {
		return nil, err
	}
	return &fillingMachine{Machine: m, v: v}, nil
}

type fillingMachine struct {
	vmm.Machine
	v *fillingVMM
}

func (m *fillingMachine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	if m.v.fill {
		free := testdisk.Fill(m.v.t, m.v.disk, 0)
		defer free()
	}
	return m.Machine.Snapshot(ctx, statePath)
}

// A clone carries its memory in its snapshot. On a disk without room for
// it the suspend is refused and the clone serves on; when the disk fills
// while QEMU writes the state, QEMU's migration fails, the guest continues
// and serves on; with room again, the suspend works, and its resume is
// refused until there is room for the memory it writes. No state is left
// behind by the failures.
func TestCloneSuspendOnFullDisk(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	ctx := context.Background()
	tpl, err := sandbox.NewTemplate(ctx, f.cfg, sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second}, f.img)
	if err != nil {
		t.Fatal(err)
	}
	disk := testdisk.Mount(t, 300<<20)
	v := &fillingVMM{VMM: f.cfg.VMM, t: t, disk: disk}
	cfg := f.cfg
	cfg.VMM, cfg.Dir = v, disk
	env, err := sandbox.Clone(ctx, cfg, tpl.Dir)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, env)
	count := func(want int, start sandbox.StartType) {
		t.Helper()
		res := invoke(t, env, `{}`)
		if c := decode[counterResp](t, res); c.Count != want || res.StartType != start {
			t.Fatalf("count %d %s, want %d %s", c.Count, res.StartType, want, start)
		}
	}
	noState := func() {
		t.Helper()
		for _, name := range []string{"state", "state.tmp"} {
			if _, err := os.Stat(filepath.Join(env.Dir(), name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left by a failed suspend (%v)", name, err)
			}
		}
	}
	count(1, sandbox.StartClone)
	pid := env.PID()

	free := testdisk.Fill(t, disk, 4<<20)
	if _, err := env.Suspend(ctx); !errors.Is(err, sandbox.ErrNoSpace) {
		t.Fatalf("suspend without room: %v, want ErrNoSpace", err)
	}
	free()
	noState()
	count(2, sandbox.StartWarm)

	v.fill = true
	if _, err := env.Suspend(ctx); err == nil {
		t.Fatal("the suspend succeeded on a disk filled under it")
	}
	v.fill = false
	noState()
	if env.State() != sandbox.StateReady || env.PID() != pid {
		t.Fatalf("state %s, PID %d after a failed migration; want ready in QEMU %d", env.State(), env.PID(), pid)
	}
	count(3, sandbox.StartWarm)

	if _, err := env.Suspend(ctx); err != nil {
		t.Fatalf("suspend with room again: %v", err)
	}
	// Its state is a delta over its template, and its resume maps the
	// template privately again: it writes nothing to disk, so a full disk
	// does not stop it.
	free = testdisk.Fill(t, disk, 32<<20)
	count(4, sandbox.StartResume)
	free()
	if _, err := env.Suspend(ctx); err != nil {
		t.Fatalf("suspend after the resume: %v", err)
	}
	count(5, sandbox.StartResume)
}
