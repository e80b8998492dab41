// Package fakevmm is a fake VMM for fast tests of the logic above the VMM
// (the sandbox, the scheduler): its machines are goroutines speaking the
// agent protocol over an in-memory pipe, with a counter for memory, so that
// boots, invocations, suspends and resumes take microseconds. Its agent can
// misbehave on command, as a guest taken over by hostile code would
// (hostile.go), over the real framing. Nothing here is used by the product.
package fakevmm

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hearthdev/hearth/internal/vmm"
)

// VMM boots fake machines. It counts what it was asked to do.
type VMM struct {
	Boots, Restores, Attaches atomic.Int64
	// Pauses and Unpauses count the machines paused and run again.
	Pauses, Unpauses atomic.Int64
	// Overlaps counts the machines asked to start on a memory file that a
	// running machine uses (a real VMM would corrupt the guest); such a
	// start fails.
	Overlaps atomic.Int64
	// BootMode makes the machines it boots misbehave before their init.
	BootMode Mode

	mu      sync.Mutex
	memory  map[string]*guestMemory // memory file → the guest's state
	running map[*machine]string     // running machine → its shared memory file, or ""
}

// guestMemory is what a guest keeps across a suspend: its counter and the
// configuration its init was given.
type guestMemory struct {
	count atomic.Int64
	mu    sync.Mutex
	env   map[string]string
}

func (g *guestMemory) setEnv(env map[string]string) {
	g.mu.Lock()
	g.env = maps.Clone(env)
	g.mu.Unlock()
}

func (g *guestMemory) getEnv(k string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.env[k]
}

func (g *guestMemory) clone() *guestMemory {
	c := &guestMemory{}
	c.count.Store(g.count.Load())
	g.mu.Lock()
	c.env = maps.Clone(g.env)
	g.mu.Unlock()
	return c
}

// New returns a fake VMM.
func New() *VMM {
	return &VMM{memory: map[string]*guestMemory{}, running: map[*machine]string{}}
}

// Running is the number of machines running now.
func (v *VMM) Running() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.running)
}

func (v *VMM) guestMemory(path string, fresh bool) *guestMemory {
	v.mu.Lock()
	defer v.mu.Unlock()
	g, ok := v.memory[path]
	if !ok || fresh {
		g = &guestMemory{}
		v.memory[path] = g
	}
	return g
}

// Boot starts a fresh fake machine.
func (v *VMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	v.Boots.Add(1)
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := v.claim(spec); err != nil {
		return nil, err
	}
	// A memory file, as a real VMM leaves, so a snapshot validates.
	f, err := os.Create(spec.MemoryFile())
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(int64(spec.MemoryMiB) << 20); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	return v.start(spec, v.guestMemory(spec.MemoryFile(), true), true), nil
}

// Restore continues a fake machine from its memory.
func (v *VMM) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	v.Restores.Add(1)
	if _, err := os.Stat(snap.StatePath); err != nil {
		return nil, err
	}
	if err := v.claim(spec); err != nil {
		return nil, err
	}
	g := v.guestMemory(spec.MemoryFile(), false)
	if spec.MemoryPrivate { // a clone: its own copy of the template's memory
		g = g.clone()
	}
	return v.start(spec, g, false), nil
}

// claim refuses a machine whose memory file a running machine shares.
func (v *VMM) claim(spec vmm.MachineSpec) error {
	if spec.MemoryPrivate {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, path := range v.running {
		if path == spec.MemoryFile() {
			v.Overlaps.Add(1)
			return fmt.Errorf("fakevmm: memory file %s is in use by a running machine", path)
		}
	}
	return nil
}

// Attach is not supported: fake machines live in one process.
func (v *VMM) Attach(ctx context.Context, spec vmm.MachineSpec, pid int) (vmm.Machine, error) {
	v.Attaches.Add(1)
	return nil, fmt.Errorf("fakevmm: attach to %d: fake machines cannot be attached", pid)
}

var pids atomic.Int64

func (v *VMM) start(spec vmm.MachineSpec, mem *guestMemory, boot bool) *machine {
	host, guest := net.Pipe()
	m := &machine{v: v, spec: spec, host: host, guest: guest, mem: mem, boot: boot,
		pid: int(1_000_000 + pids.Add(1)), done: make(chan struct{}), started: make(chan struct{})}
	shared := ""
	if !spec.MemoryPrivate {
		shared = spec.MemoryFile()
	}
	v.mu.Lock()
	v.running[m] = shared
	v.mu.Unlock()
	go m.agent()
	return m
}

type machine struct {
	v           *VMM
	spec        vmm.MachineSpec
	host, guest net.Conn
	mem         *guestMemory
	boot        bool
	pid         int
	done        chan struct{}
	started     chan struct{}
	once, sonce sync.Once

	// paused, while a machine is paused, is closed by its unpause: the
	// agent answers nothing until then, as a guest whose vCPUs are stopped.
	pmu    sync.Mutex
	paused chan struct{}
}

// Pause stops the fake guest: its agent answers nothing until Unpause.
func (m *machine) Pause(context.Context) (vmm.PauseInfo, error) {
	m.v.Pauses.Add(1)
	m.pmu.Lock()
	if m.paused == nil {
		m.paused = make(chan struct{})
	}
	m.pmu.Unlock()
	return vmm.PauseInfo{RSSBeforeKiB: int64(m.spec.MemoryMiB) << 10, RSSAfterKiB: 4 << 10, PagedOut: true}, nil
}

// Unpause runs the fake guest again.
func (m *machine) Unpause(context.Context) error {
	m.v.Unpauses.Add(1)
	m.pmu.Lock()
	if m.paused != nil {
		close(m.paused)
		m.paused = nil
	}
	m.pmu.Unlock()
	return nil
}

// Paused reports whether the machine is paused now.
func (m *machine) Paused() bool {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	return m.paused != nil
}

// waitRunning waits while the machine is paused; false if it stopped.
func (m *machine) waitRunning() bool {
	m.pmu.Lock()
	p := m.paused
	m.pmu.Unlock()
	if p == nil {
		return true
	}
	select {
	case <-p:
		return true
	case <-m.done:
		return false
	}
}

func (m *machine) ID() string            { return m.spec.ID }
func (m *machine) PID() int              { return m.pid }
func (m *machine) Agent() io.ReadWriter  { return m.host }
func (m *machine) Done() <-chan struct{} { return m.done }
func (m *machine) ConsolePath() string   { return filepath.Join(m.spec.Dir, "console.log") }
func (m *machine) Disconnect()           { m.host.Close() }
func (m *machine) Start(context.Context) error {
	m.sonce.Do(func() { close(m.started) })
	return nil
}

func (m *machine) Stop(context.Context) error {
	m.once.Do(func() {
		m.host.Close()
		m.guest.Close()
		m.v.mu.Lock()
		delete(m.v.running, m)
		m.v.mu.Unlock()
		close(m.done)
	})
	return nil
}

func (m *machine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	state := []byte(fmt.Sprintf("fake state of %s: count %d\n", m.spec.ID, m.mem.count.Load()))
	if err := os.WriteFile(statePath, state, 0o600); err != nil {
		return vmm.Snapshot{}, err
	}
	_ = m.Stop(ctx)
	return vmm.Snapshot{StatePath: statePath, StateBytes: int64(len(state)), MemoryInState: m.spec.MemoryPrivate}, nil
}
