package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testdisk"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// diskVMM boots fake machines whose snapshot meets a disk that fills up
// (another environment's writes, say) just before or just after the state
// is written, or fails while the VMM runs on.
type diskVMM struct {
	*fakevmm.VMM
	t    *testing.T
	disk string
	// fillBefore and fillAfter fill the disk before or after the state is
	// written; failSnapshot fails the snapshot with the VMM running, and
	// failStart then fails continuing its guest.
	fillBefore, fillAfter, failSnapshot, failStart bool

	booted []vmm.Machine
}

func (v *diskVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := v.VMM.Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	v.booted = append(v.booted, m)
	return &diskMachine{Machine: m, v: v}, nil
}

type diskMachine struct {
	vmm.Machine
	v *diskVMM
}

func (m *diskMachine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	if m.v.failSnapshot {
		return vmm.Snapshot{}, errors.New("migration failed")
	}
	if m.v.fillBefore {
		testdisk.Fill(m.v.t, m.v.disk, 0)
	}
	snap, err := m.Machine.Snapshot(ctx, statePath)
	if err == nil && m.v.fillAfter {
		testdisk.Fill(m.v.t, m.v.disk, 0)
	}
	return snap, err
}

func (m *diskMachine) Start(ctx context.Context) error {
	if m.v.failStart {
		return errors.New("cont: the VMM is wedged")
	}
	return m.Machine.Start(ctx)
}

// A suspend on a full disk never leaves a half snapshot: the environment
// either runs on and serves, or is ended with its folder, so that nothing
// of it is adopted or resumed later.
func TestSuspendOnFullDisk(t *testing.T) {
	cases := []struct {
		name  string
		setup func(v *diskVMM, disk string)
		// runsOn: the environment keeps running and serves; otherwise it
		// is ended and its folder removed.
		runsOn bool
		err    error
	}{
		{"no room before the snapshot: refused, the machine untouched", func(v *diskVMM, disk string) {
			testdisk.Fill(t, disk, 1<<20)
		}, true, sandbox.ErrNoSpace},
		{"the state cannot be written: the guest continues", func(v *diskVMM, _ string) { v.fillBefore = true }, true, nil},
		{"the snapshot fails with the VMM running: the guest continues", func(v *diskVMM, _ string) { v.failSnapshot = true }, true, nil},
		{"the guest cannot be continued: ended", func(v *diskVMM, _ string) { v.failSnapshot, v.failStart = true, true }, false, nil},
		{"the manifest cannot be written after the VMM ended: ended", func(v *diskVMM, _ string) { v.fillAfter = true }, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			disk := testdisk.Mount(t, 32<<20)
			v := &diskVMM{VMM: fakevmm.New(), t: t, disk: disk}
			dir := t.TempDir()
			for _, f := range []string{"vmlinux", "initrd"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
			cfg := sandbox.Config{VMM: v, Dir: filepath.Join(disk, "envs"), BootTimeout: 5 * time.Second}
			ctx := context.Background()
			env, err := sandbox.Boot(ctx, cfg, sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}, img)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = env.Close(context.Background()) })
			tc.setup(v, disk)

			_, err = env.Suspend(ctx)
			if err == nil {
				t.Fatal("the suspend succeeded on a full disk")
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("err %v, want %v", err, tc.err)
			}
			if !tc.runsOn {
				if s := env.State(); s != sandbox.StateDead {
					t.Errorf("state %s after a snapshot that could not be completed, want dead", s)
				}
				if _, err := os.Stat(env.Dir()); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the ended environment's folder is still there (%v): a later daemon could adopt it", err)
				}
				select {
				case <-v.booted[0].Done():
				case <-time.After(5 * time.Second):
					t.Error("the ended environment's VMM still runs")
				}
				return
			}
			if s := env.State(); s != sandbox.StateReady {
				t.Fatalf("state %s after a failed suspend, want ready", s)
			}
			for _, f := range []string{"state", "state.tmp"} {
				if _, err := os.Stat(filepath.Join(env.Dir(), f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left after a failed suspend (%v)", f, err)
				}
			}
			b, err := os.ReadFile(filepath.Join(env.Dir(), "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				State    string          `json:"state"`
				Snapshot json.RawMessage `json:"snapshot"`
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m.State != string(sandbox.StateReady) || m.Snapshot != nil {
				t.Errorf("the manifest says %s with snapshot %s, want ready without one", m.State, m.Snapshot)
			}
			res, err := env.Invoke(ctx, sandbox.Request{Payload: []byte(`{}`)})
			if err != nil || res.Error != nil {
				t.Fatalf("invoke after a failed suspend: %v %+v", err, res)
			}
		})
	}
}
