// Package fakevmm is a fake VMM for fast tests of the logic above the
// sandbox (the scheduler): its machines are goroutines speaking the agent
// protocol over an in-memory pipe, with a counter for memory, so that
// boots, invocations, suspends and resumes take microseconds. Nothing here
// is used by the product.
package fakevmm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// VMM boots fake machines. It counts what it was asked to do.
type VMM struct {
	Boots, Restores, Attaches atomic.Int64

	mu     sync.Mutex
	memory map[string]*int64 // memory file → the guest's counter
}

// New returns a fake VMM.
func New() *VMM { return &VMM{memory: map[string]*int64{}} }

func (v *VMM) counter(path string, fresh bool) *int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.memory[path]
	if !ok || fresh {
		c = new(int64)
		v.memory[path] = c
	}
	return c
}

// Boot starts a fresh fake machine.
func (v *VMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	v.Boots.Add(1)
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
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
	return v.start(spec, v.counter(spec.MemoryFile(), true), true), nil
}

// Restore continues a fake machine from its memory.
func (v *VMM) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	v.Restores.Add(1)
	if _, err := os.Stat(snap.StatePath); err != nil {
		return nil, err
	}
	c := v.counter(spec.MemoryFile(), false)
	if spec.MemoryPrivate { // a clone: its own copy of the template's memory
		n := atomic.LoadInt64(c)
		c = &n
	}
	return v.start(spec, c, false), nil
}

// Attach is not supported: fake machines live in one process.
func (v *VMM) Attach(ctx context.Context, spec vmm.MachineSpec, pid int) (vmm.Machine, error) {
	v.Attaches.Add(1)
	return nil, fmt.Errorf("fakevmm: attach to %d: fake machines cannot be attached", pid)
}

var pids atomic.Int64

func (v *VMM) start(spec vmm.MachineSpec, count *int64, boot bool) *machine {
	host, guest := net.Pipe()
	m := &machine{spec: spec, host: host, guest: guest, count: count, boot: boot,
		pid: int(1_000_000 + pids.Add(1)), done: make(chan struct{}), started: make(chan struct{})}
	go m.agent()
	return m
}

type machine struct {
	spec        vmm.MachineSpec
	host, guest net.Conn
	count       *int64
	boot        bool
	pid         int
	done        chan struct{}
	started     chan struct{}
	once, sonce sync.Once
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
		close(m.done)
	})
	return nil
}

func (m *machine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	state := []byte(fmt.Sprintf("fake state of %s: count %d\n", m.spec.ID, atomic.LoadInt64(m.count)))
	if err := os.WriteFile(statePath, state, 0o600); err != nil {
		return vmm.Snapshot{}, err
	}
	_ = m.Stop(ctx)
	return vmm.Snapshot{StatePath: statePath, StateBytes: int64(len(state)), MemoryInState: m.spec.MemoryPrivate}, nil
}

// agent plays the guest agent and a function that counts its calls; an
// event {"sleepMs":N} makes the call take that long, and {"print":"text"}
// writes text to the function's output first.
func (m *machine) agent() {
	<-m.started
	out := guestproto.NewWriter(m.guest)
	if m.boot {
		if err := out.Write(guestproto.TypeHello, guestproto.Hello{AgentVersion: "fake"}, nil); err != nil {
			return
		}
	}
	r := guestproto.NewReader(m.guest)
	for {
		f, err := r.Read()
		if err != nil {
			return
		}
		switch f.Type {
		case guestproto.TypeInit:
			var in guestproto.Init
			_ = f.Decode(&in)
			if strings.Contains(in.Env["FAIL_INIT"], "yes") {
				_ = out.Write(guestproto.TypeInitError, guestproto.ErrorInfo{ErrorType: "Fake.InitError"},
					[]byte(`{"errorMessage":"init failed","errorType":"Fake.InitError"}`))
				continue
			}
			_ = out.Write(guestproto.TypeReady, guestproto.Ready{}, nil)
		case guestproto.TypeResume:
			_ = out.Write(guestproto.TypeResumed, guestproto.Resumed{}, nil)
		case guestproto.TypeInvoke:
			var iv guestproto.Invoke
			_ = f.Decode(&iv)
			var ev struct {
				SleepMs int    `json:"sleepMs"`
				Print   string `json:"print"`
			}
			_ = json.Unmarshal(f.Body, &ev)
			if ev.Print != "" {
				_ = out.Write(guestproto.TypeLog, guestproto.Log{Stream: "stdout"}, []byte(ev.Print))
			}
			time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
			n := atomic.AddInt64(m.count, 1)
			body, _ := json.Marshal(map[string]any{"count": n, "machine": m.spec.ID})
			_ = out.Write(guestproto.TypeResponse, guestproto.Result{RequestID: iv.RequestID}, body)
		case guestproto.TypePing:
			_ = out.Write(guestproto.TypePong, guestproto.Ping{}, nil)
		}
	}
}
