package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

// A guest whose vCPU is starved at boot (many VMs booting on few cores)
// failed the kernel's check of its timer and panicked ("IO-APIC + timer
// doesn't work"); no_timer_check skips that check.
func TestKernelCmdlineSkipsTimerCheck(t *testing.T) {
	args := (&Driver{}).args(vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: vmm.AccelTCG})
	i := slices.Index(args, "-append")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("no -append in %v", args)
	}
	if !slices.Contains(strings.Fields(args[i+1]), "no_timer_check") {
		t.Errorf("kernel command line %q lacks no_timer_check", args[i+1])
	}
}

// Each disk is a drive on an inherited descriptor, after the fixed ones,
// and a virtio-blk device the guest finds by its serial; a read-only disk
// is read-only to QEMU, a writable one passes discards on.
func TestDiskArgs(t *testing.T) {
	spec := vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: vmm.AccelTCG, Disks: []vmm.Disk{
		{Path: "/cache/root.ext4", ReadOnly: true, Serial: "hearth-root"},
		{Path: "/env/tmp.ext4", Serial: "hearth-tmp"},
	}}
	args := (&Driver{}).args(spec)
	var drives, devices []string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-drive":
			drives = append(drives, args[i+1])
		case "-device":
			if strings.HasPrefix(args[i+1], "virtio-blk") {
				devices = append(devices, args[i+1])
			}
		}
	}
	wantDrives := []string{
		"if=none,id=disk0,file=/proc/self/fd/10,format=raw,readonly=on",
		"if=none,id=disk1,file=/proc/self/fd/11,format=raw,readonly=off,discard=unmap",
	}
	wantDevices := []string{
		"virtio-blk-device,drive=disk0,serial=hearth-root",
		"virtio-blk-device,drive=disk1,serial=hearth-tmp",
	}
	if !slices.Equal(drives, wantDrives) {
		t.Errorf("drives = %q, want %q", drives, wantDrives)
	}
	if !slices.Equal(devices, wantDevices) {
		t.Errorf("devices = %q, want %q", devices, wantDevices)
	}
	for _, a := range args {
		if strings.Contains(a, "/cache/") || strings.Contains(a, "/env/") {
			t.Errorf("QEMU is given a disk by path: %q", a)
		}
	}
}

func TestOpenDiskRefusesBadSerial(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"", "a,b=c", "much-too-long-a-serial-for-virtio"} {
		if f, err := (&Driver{}).openDisk(vmm.Disk{Path: p, Serial: serial}); err == nil {
			f.Close()
			t.Errorf("serial %q accepted", serial)
		}
	}
	f, err := (&Driver{}).openDisk(vmm.Disk{Path: p, Serial: "hearth-tmp"})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// The balloon that reports free pages is on a machine that asks for it,
// after every other device (their virtio-mmio slots stay where they were),
// and never on one whose memory file is a template's: QEMU would punch the
// reported pages out of the template's file.
func TestBalloonArgs(t *testing.T) {
	const balloon = "virtio-balloon-device,free-page-reporting=on"
	nic := &vmm.NIC{MAC: "02:00:00:00:00:01"}
	tests := []struct {
		name string
		spec vmm.MachineSpec
		want bool
	}{
		{"reporting", vmm.MachineSpec{FreePageReporting: true, NIC: nic}, true},
		{"off (a template, its clones)", vmm.MachineSpec{NIC: nic}, false},
		{"private memory file", vmm.MachineSpec{FreePageReporting: true, MemoryPrivate: true, NIC: nic}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.ID, spec.Dir, spec.MemoryMiB, spec.Accel = "t", t.TempDir(), 128, vmm.AccelTCG
			args := (&Driver{}).args(spec)
			var devices []string
			for i := 0; i+1 < len(args); i++ {
				if args[i] == "-device" {
					devices = append(devices, args[i+1])
				}
			}
			got := slices.Contains(devices, balloon)
			if got != tt.want {
				t.Fatalf("balloon in %q: %v, want %v", devices, got, tt.want)
			}
			if got && devices[len(devices)-1] != balloon {
				t.Errorf("the balloon is not the last device: %q", devices)
			}
		})
	}
}

// Under tcg the guest must not see ERMS or FSRM: with them its kernel
// copies and clears memory a byte per emulated iteration.
func TestTCGCPUWithoutFastStrings(t *testing.T) {
	for _, accel := range []vmm.Accel{vmm.AccelTCG, vmm.AccelKVM} {
		args := (&Driver{}).args(vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: accel})
		i := slices.Index(args, "-cpu")
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("no -cpu in %v", args)
		}
		cpu := strings.Split(args[i+1], ",")
		if accel == vmm.AccelKVM {
			if cpu[0] != "host" {
				t.Errorf("kvm: -cpu %s, want host", args[i+1])
			}
			continue
		}
		for _, f := range []string{"-erms", "-fsrm"} {
			if !slices.Contains(cpu, f) {
				t.Errorf("tcg: -cpu %s lacks %s", args[i+1], f)
			}
		}
	}
}

// The translated-code cache is the machine's own or the driver's (tcg
// only), and the cgroup's memory limit makes room for exactly it.
func TestTCGCacheSize(t *testing.T) {
	for _, tt := range []struct {
		accel   vmm.Accel
		driver  int    // the driver's size
		own     int    // the machine's; 0 none
		mib     int    // the one it gets
		wantArg string // in -accel; "" for none
	}{
		{vmm.AccelTCG, DefaultTCGCacheMiB, 0, DefaultTCGCacheMiB, "tb-size=128"},
		{vmm.AccelTCG, 16, 0, 16, "tb-size=16"},
		{vmm.AccelTCG, DefaultTCGCacheMiB, 20, 20, "tb-size=20"},
		{vmm.AccelKVM, 16, 0, 16, ""},
		{vmm.AccelKVM, 16, 20, 20, ""},
	} {
		d := &Driver{tcgCacheMiB: tt.driver}
		spec := vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: tt.accel, TCGCacheMiB: tt.own}
		if got := d.tcgCache(spec); got != tt.mib {
			t.Errorf("%s, driver %d, own %d: cache %d MiB, want %d", tt.accel, tt.driver, tt.own, got, tt.mib)
		}
		args := d.args(spec)
		i := slices.Index(args, "-accel")
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("no -accel in %v", args)
		}
		has := strings.Contains(args[i+1], "tb-size")
		if tt.wantArg == "" && has || tt.wantArg != "" && !slices.Contains(strings.Split(args[i+1], ","), tt.wantArg) {
			t.Errorf("%s, cache %d MiB: -accel %s, want %q", tt.accel, tt.mib, args[i+1], tt.wantArg)
		}
		want := int64(128+overheadMiB) << 20
		if tt.accel == vmm.AccelTCG {
			want += int64(tt.mib) << 20
		}
		if got := limitsFor(spec, 0, tt.mib).memoryBytes; got != want {
			t.Errorf("%s, cache %d MiB: memory limit %d, want %d", tt.accel, tt.mib, got, want)
		}
	}
}
