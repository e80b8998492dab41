package sandbox_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// faultyVMM restores machines that fail as a test asks; it keeps them to
// see whether they were left running.
type faultyVMM struct {
	*fakevmm.VMM
	// deafAgent makes a restored machine's agent channel end at once,
	// while its VMM runs on; failStart makes starting its vCPUs fail.
	deafAgent, failStart bool
	// onRestore runs as a restore returns its machine.
	onRestore func()

	mu       sync.Mutex
	restored []vmm.Machine
}

func (v *faultyVMM) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	m, err := v.VMM.Restore(ctx, spec, snap)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.restored = append(v.restored, m)
	v.mu.Unlock()
	if v.onRestore != nil {
		v.onRestore()
	}
	return &faultyMachine{Machine: m, deafAgent: v.deafAgent, failStart: v.failStart}, nil
}

type faultyMachine struct {
	vmm.Machine
	deafAgent, failStart bool
}

func (m *faultyMachine) Agent() io.ReadWriter {
	if m.deafAgent {
		return deafChannel{}
	}
	return m.Machine.Agent()
}

func (m *faultyMachine) Start(ctx context.Context) error {
	if m.failStart {
		return errors.New("vCPUs did not start")
	}
	return m.Machine.Start(ctx)
}

// deafChannel is an agent channel that has ended.
type deafChannel struct{}

func (deafChannel) Read([]byte) (int, error)    { return 0, io.EOF }
func (deafChannel) Write(b []byte) (int, error) { return len(b), nil }

// suspendedEnv is an environment booted on v and suspended.
func suspendedEnv(t *testing.T, v sandbox.VMM) *sandbox.Env {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	cfg := sandbox.Config{VMM: v, Dir: filepath.Join(dir, "envs"), BootTimeout: 5 * time.Second}
	ctx := context.Background()
	env, err := sandbox.Boot(ctx, cfg, sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Close(context.Background()) })
	if _, err := env.Suspend(ctx); err != nil {
		t.Fatal(err)
	}
	// Its folder names the initramfs it resumes with: the daemon keeps
	// that image while the folder is there.
	if f, err := sandbox.ReadFolder(env.Dir()); err != nil || f.Initrd != img.Initrd || f.State != sandbox.StateSuspended {
		t.Fatalf("the suspended env's folder: %+v %v, want initrd %s", f, err, img.Initrd)
	}
	return env
}

// A resume that fails leaves no VMM running, whatever failed.
func TestFailedResumeStopsTheVMM(t *testing.T) {
	cases := []struct {
		name  string
		setup func(v *faultyVMM, env **sandbox.Env)
		// state is the environment's state after the failure.
		state sandbox.State
	}{
		{"agent channel ends while the VMM runs", func(v *faultyVMM, _ **sandbox.Env) { v.deafAgent = true }, sandbox.StateSuspended},
		{"vCPUs do not start", func(v *faultyVMM, _ **sandbox.Env) { v.failStart = true }, sandbox.StateSuspended},
		{"closed during the restore", func(v *faultyVMM, env **sandbox.Env) {
			v.onRestore = func() { _ = (*env).Close(context.Background()) }
		}, sandbox.StateDead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &faultyVMM{VMM: fakevmm.New()}
			env := suspendedEnv(t, v)
			tc.setup(v, &env)
			if err := env.Resume(context.Background()); err == nil {
				t.Fatal("the resume succeeded")
			}
			v.mu.Lock()
			restored := v.restored
			v.mu.Unlock()
			if len(restored) != 1 {
				t.Fatalf("%d machines restored, want 1", len(restored))
			}
			select {
			case <-restored[0].Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the restored VMM still runs after the failed resume")
			}
			if pid := env.PID(); pid != 0 {
				t.Fatalf("PID %d after a failed resume, want none", pid)
			}
			if s := env.State(); s != tc.state {
				t.Fatalf("state %s, want %s", s, tc.state)
			}
		})
	}
}
