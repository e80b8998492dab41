package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/vmm"
)

// A pre-started QEMU waits in -preconfig: the process is up, its QMP,
// agent, console and streams sockets listen, its cgroup is set, but no
// board exists yet. QEMU 7.2 allows in that phase only commands flagged
// allow-preconfig: object-add, qom-set, netdev_add, blockdev-add,
// x-exit-preconfig; not getfd, add-fd, chardev-add or device_add. So no
// descriptor can be passed in before the board is made, and the memory
// backend (which the board needs) must open its file by path. The path is
// the process's door: a folder of its own, owned by QEMU's user, that it
// reaches only through an inherited descriptor (/proc/self/fd/3/…) since
// the folder above is root's alone; when a machine is bound, the driver
// hard-links the memory file, kernel and initramfs into it, and removes
// them once QEMU has opened them. The devices are on the command line, as
// for a fresh process, so that a snapshot loads into either.

// poolKey is the shape of a pre-started process: what is fixed on its
// command line.
type poolKey struct {
	accel     vmm.Accel
	vcpus     int
	memoryMiB int
	mac       string // a NIC with no TAP (a template's), or none
	disks     string // each disk's serial and read-only flag
	incoming  bool   // waits for a restore (-incoming defer)
	tcgCache  int    // the machine's own translated-code cache; 0 the driver's
}

// poolable says whether spec can be bound to a pre-started process, and
// its shape. Not: a detached machine (a pre-started QEMU dies with Hearth),
// a NIC with a TAP (QEMU 7.2 takes no descriptor before the card is made,
// and a TAP cannot be opened again by path).
func poolable(spec vmm.MachineSpec, extra []string) (poolKey, bool) {
	incoming := len(extra) == 2 && extra[0] == "-incoming" && extra[1] == "defer"
	if spec.Detached || (spec.NIC != nil && spec.NIC.Tap != "") || (len(extra) > 0 && !incoming) {
		return poolKey{}, false
	}
	k := poolKey{accel: spec.Accel, vcpus: max(spec.VCPUs, 1), memoryMiB: spec.MemoryMiB, incoming: incoming}
	if spec.Accel == vmm.AccelTCG {
		k.tcgCache = spec.TCGCacheMiB
	}
	if spec.NIC != nil {
		k.mac = spec.NIC.MAC
	}
	var disks []string
	for _, d := range spec.Disks {
		if !validSerial(d.Serial) {
			return poolKey{}, false
		}
		disks = append(disks, fmt.Sprintf("%s:%v", d.Serial, d.ReadOnly))
	}
	k.disks = strings.Join(disks, ",")
	return k, true
}

// spec is a machine of key's shape, for the command line.
func (k poolKey) spec(id string) vmm.MachineSpec {
	s := vmm.MachineSpec{ID: id, Accel: k.accel, VCPUs: k.vcpus, MemoryMiB: k.memoryMiB, TCGCacheMiB: k.tcgCache}
	if k.mac != "" {
		s.NIC = &vmm.NIC{MAC: k.mac}
	}
	if k.disks != "" {
		for _, d := range strings.Split(k.disks, ",") {
			serial, ro, _ := strings.Cut(d, ":")
			s.Disks = append(s.Disks, vmm.Disk{Serial: serial, ReadOnly: ro == "true"})
		}
	}
	return s
}

// Descriptor of a pre-started process's door; fdKernel..fdMemory are all
// it, so that the sockets keep the numbers args gives them.
const fdDoor = fdKernel

// Names in a door.
const (
	doorMemory = "memory"
	doorKernel = "kernel"
	doorInitrd = "initrd"
)

func doorPath(name string) string { return procFD(fdDoor) + "/" + name }

// preconfigArgs turns a fresh machine's command line into a pre-started
// one's: no memory backend, kernel, initramfs, kernel command line or
// drives (bound later over QMP: blockdev-add names each drive's node as
// -drive named its backend), waiting in -preconfig.
func preconfigArgs(args []string, incoming bool) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if i+1 < len(args) {
			v := args[i+1]
			switch {
			case a == "-kernel" || a == "-initrd" || a == "-append" || a == "-drive",
				a == "-object" && strings.HasPrefix(v, "memory-backend-file,id=mem,"):
				i++
				continue
			case a == "-M":
				out = append(out, a, strings.Replace(v, ",memory-backend=mem", "", 1))
				i++
				continue
			}
		}
		out = append(out, a)
	}
	out = append(out, "-preconfig")
	if incoming {
		out = append(out, "-incoming", "defer")
	}
	return out
}

// argValue is the value after flag in args.
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// pooled is a pre-started process.
type pooled struct {
	m    *machine
	door string // its door folder
	base string // its sockets and log are base+".qmp" and so on
	cgs  []string
}

var poolSockets = []string{qmpSocket, agentSocket, consoleSocket, streamsSocket}

// kill ends the process by its PID and removes its files.
func (p *pooled) kill() {
	_ = p.m.proc.Kill()
	<-p.m.done
	p.m.Disconnect()
	p.cleanup()
}

func (p *pooled) cleanup() {
	_ = os.RemoveAll(p.door)
	for _, s := range poolSockets {
		_ = os.Remove(p.base + "." + s)
	}
	_ = os.Remove(p.base + ".log")
}

// startIdle starts a process of key's shape in -preconfig, with QMP
// connected.
func (d *Driver) startIdle(ctx context.Context, key poolKey) (p *pooled, err error) {
	id := fmt.Sprintf("pool-%d-%d", os.Getpid(), d.poolSeq.Add(1))
	spec := key.spec(id)
	p = &pooled{door: filepath.Join(d.poolDir, id), base: filepath.Join(d.poolDir, id)}
	defer func() {
		if err != nil && p.m == nil {
			p.cleanup()
		}
	}()
	if err := os.Mkdir(p.door, 0o700); err != nil {
		return nil, err
	}
	door, err := os.Open(p.door)
	if err != nil {
		return nil, err
	}
	defer door.Close()
	if err := d.jail.own(door); err != nil {
		return nil, err
	}
	files := []*os.File{door, door, door}
	defer func() { closeAll(files[fdQMP-3:]) }()
	for _, s := range poolSockets {
		f, err := listenUnix(p.base + "." + s)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	logf, err := os.OpenFile(p.base+".log", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, preconfigArgs(d.args(spec), key.incoming)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = files
	cmd.Dir = "/"
	// A pre-started process never outlives Hearth: it holds no guest.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: d.jail.credential(spec), Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.bin, err)
	}
	m := &machine{spec: spec, pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{}), consoleLimit: d.consoleLimit, log: d.log}
	p.m = m
	p.cgs, _ = d.limitProcess(id, m.pid, limitsFor(spec, 0, d.tcgCache(spec)))
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		for _, cg := range p.cgs {
			_ = os.Remove(cg)
		}
		close(exited)
	}()
	go m.finish(exited)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := waitFor(cctx, m.done, func(ctx context.Context) (*qmp, error) {
		return dialQMP(ctx, p.base+"."+qmpSocket)
	})
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("qemu pool: qmp: %w", err)
	}
	m.qmp = q
	return p, nil
}

// takeIdle binds spec to a pre-started process, if the pool has one of its
// shape: its memory file, kernel and initramfs through the door, its
// sockets and log moved to the machine's folder, its cgroup's limits set
// to spec's. The machine is then as a fresh start leaves it: paused, in
// prelaunch (or inmigrate, waiting for a restore).
func (d *Driver) takeIdle(ctx context.Context, spec vmm.MachineSpec, extra []string) (*machine, error) {
	if d.pool == nil {
		return nil, errNoPool
	}
	key, ok := poolable(spec, extra)
	if !ok {
		return nil, errNoPool
	}
	p, ok := d.pool.take(key)
	if !ok {
		return nil, errNoPool
	}
	m, err := d.bind(ctx, p, spec)
	if err != nil {
		p.kill()
		return nil, err
	}
	return m, nil
}

var errNoPool = errors.New("no pre-started process")

func (d *Driver) bind(ctx context.Context, p *pooled, spec vmm.MachineSpec) (*machine, error) {
	files, err := d.openImages(spec)
	if err != nil {
		return nil, err
	}
	defer func() { closeAll(files) }()
	names := []string{doorKernel, doorInitrd, doorMemory}
	for i, disk := range spec.Disks {
		f, err := d.openDisk(disk)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		names = append(names, fmt.Sprintf("disk%d", i))
	}
	for i, f := range files {
		// The very file opened (and granted to QEMU's user), not a path
		// that may have changed since.
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, filepath.Join(p.door, names[i]), unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			return nil, fmt.Errorf("qemu pool: link %s into the door: %w", names[i], err)
		}
	}
	defer func() {
		for _, n := range names {
			_ = os.Remove(filepath.Join(p.door, n))
		}
	}()
	args := d.args(spec)
	q := p.m.qmp
	steps := []struct {
		cmd  string
		args any
	}{
		{"object-add", map[string]any{"qom-type": "memory-backend-file", "id": "mem", "size": int64(spec.MemoryMiB) << 20,
			"mem-path": doorPath(doorMemory), "share": !spec.MemoryPrivate}},
		{"qom-set", map[string]any{"path": "/machine", "property": "memory-backend", "value": "mem"}},
		{"qom-set", map[string]any{"path": "/machine", "property": "kernel", "value": doorPath(doorKernel)}},
		{"qom-set", map[string]any{"path": "/machine", "property": "initrd", "value": doorPath(doorInitrd)}},
		{"qom-set", map[string]any{"path": "/machine", "property": "append", "value": argValue(args, "-append")}},
	}
	for i, disk := range spec.Disks {
		// As diskArgs: raw, read-only or passing discards on.
		node := map[string]any{"driver": "raw", "node-name": fmt.Sprintf("disk%d", i), "read-only": disk.ReadOnly,
			"file": map[string]any{"driver": "file", "filename": doorPath(fmt.Sprintf("disk%d", i))}}
		if !disk.ReadOnly {
			node["discard"] = "unmap"
		}
		steps = append(steps, struct {
			cmd  string
			args any
		}{"blockdev-add", node})
	}
	steps = append(steps, struct {
		cmd  string
		args any
	}{"x-exit-preconfig", nil})
	for _, s := range steps {
		if _, err := q.execute(ctx, s.cmd, s.args); err != nil {
			return nil, fmt.Errorf("qemu pool: %w", err)
		}
	}
	dir := sockDir(spec)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, s := range poolSockets {
		if err := os.Rename(p.base+"."+s, filepath.Join(dir, s)); err != nil {
			return nil, fmt.Errorf("qemu pool: %w", err)
		}
	}
	if err := os.Rename(p.base+".log", filepath.Join(spec.Dir, vmmLogFile)); err != nil {
		return nil, fmt.Errorf("qemu pool: %w", err)
	}
	_ = os.Remove(p.door)
	setLimits(p.cgs, limitsFor(spec, imageBytes(files[:2]), d.tcgCache(spec)))
	m := p.m
	m.spec = spec
	if err := m.connect(ctx, true); err != nil {
		return nil, fmt.Errorf("qemu pool: %w%s", err, m.vmmLog())
	}
	d.log.Debug("qemu taken from the pool", "id", spec.ID, "pid", m.pid)
	return m, nil
}

// setLimits writes l into cgroups already made (a pre-started process's),
// whichever of cgroup v2's or v1's knobs each has.
func setLimits(dirs []string, l limits) {
	for _, dir := range dirs {
		for _, k := range []knob{
			{"memory.max", fmt.Sprint(l.memoryBytes)}, {"cpu.weight", fmt.Sprint(l.cpuWeight)},
			{"memory.limit_in_bytes", fmt.Sprint(l.memoryBytes)}, {"cpu.shares", fmt.Sprint(l.cpuShares)},
		} {
			p := filepath.Join(dir, k.file)
			if _, err := os.Stat(p); err == nil {
				_ = os.WriteFile(p, []byte(k.value), 0o644)
			}
		}
	}
}
