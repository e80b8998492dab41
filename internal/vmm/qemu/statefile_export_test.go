package qemu

import (
	"context"

	"github.com/hearthdev/hearth/internal/vmm"
)

// StopVCPUs stops a running machine's vCPUs and leaves its QEMU running,
// so that a test can read a guest memory that no longer changes.
func StopVCPUs(ctx context.Context, m vmm.Machine) error {
	_, err := m.(*machine).qmp.execute(ctx, "stop", nil)
	return err
}
