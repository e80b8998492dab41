package sandbox_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// floodVMM boots machines that leave a huge console and die before their
// agent answers.
type floodVMM struct {
	*fakevmm.VMM
	consoleBytes int64
	last         string
}

func (v *floodVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := v.VMM.Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	// Sparse: a large file that costs no disk, ending with the line that
	// explains the failure.
	f, err := os.Create(m.ConsolePath())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(v.consoleBytes - int64(len(v.last))); err != nil {
		return nil, err
	}
	if _, err := f.WriteAt([]byte(v.last), v.consoleBytes-int64(len(v.last))); err != nil {
		return nil, err
	}
	return &faultyMachine{Machine: m, deafAgent: true}, nil
}

// A boot that fails explains itself with the end of the guest's console
// only, and reads only that end, however large the console grew.
func TestBootErrorCarriesConsoleTail(t *testing.T) {
	const size = 64 << 20
	last := "Kernel panic - not syncing: the end"
	v := &floodVMM{VMM: fakevmm.New(), consoleBytes: size, last: last}
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	cfg := sandbox.Config{VMM: v, Dir: filepath.Join(dir, "envs"), BootTimeout: 5 * time.Second}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := sandbox.Boot(context.Background(), cfg, sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}, img)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("the boot succeeded")
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, last) {
		t.Errorf("the error does not end with the console's last line: %.200q", msg)
	}
	if len(msg) > 4096 {
		t.Errorf("the error is %d bytes: it carries more than the console's tail", len(msg))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("the failed boot allocated %d MB for a %d MB console: it read the whole file", alloc>>20, size>>20)
	}
}
