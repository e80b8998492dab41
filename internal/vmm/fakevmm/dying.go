package fakevmm

import (
	"context"
	"os"
	"sync/atomic"

	"github.com/hearthdev/hearth/internal/vmm"
)

// panicConsole is what a real guest printed when its kernel failed its
// timer check on a starved vCPU.
const panicConsole = "..MP-BIOS bug: 8254 timer not connected to IO-APIC\r\n" +
	"Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.\r\n"

// Dying is a fake VMM whose next boots make machines that stop before
// their agent answers, as a guest whose kernel panics at boot: a platform
// failure, not the function's. Restores are the fake VMM's own.
type Dying struct {
	*VMM
	left atomic.Int64
}

// DieBeforeHello wraps v: its next n boots die before their agent's hello.
func DieBeforeHello(v *VMM, n int) *Dying {
	d := &Dying{VMM: v}
	d.left.Store(int64(n))
	return d
}

// Boot starts a fake machine, one that dies at start while boots are left
// to die.
func (d *Dying) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := d.VMM.Boot(ctx, spec)
	if err != nil || d.left.Add(-1) < 0 {
		return m, err
	}
	return dyingMachine{m.(*machine)}, nil
}

type dyingMachine struct{ *machine }

// Start lets the machine run just long enough to panic: its console says
// so, and it stops before the agent says hello.
func (m dyingMachine) Start(ctx context.Context) error {
	_ = os.WriteFile(m.ConsolePath(), []byte(panicConsole), 0o600)
	_ = m.machine.Stop(ctx)
	// The agent, woken, finds its link closed and ends.
	return m.machine.Start(ctx)
}
