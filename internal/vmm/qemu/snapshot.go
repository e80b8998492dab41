package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hearthdev/hearth/internal/vmm"
)

// Snapshot pauses the guest, writes its device state to statePath over a
// migration to a file descriptor, and ends QEMU. With the memory in a shared
// file and x-ignore-shared, the state is tens of kilobytes: the memory file
// already holds the guest's RAM.
func (m *machine) Snapshot(ctx context.Context, statePath string) (vmm.Snapshot, error) {
	snap := vmm.Snapshot{StatePath: statePath, MemoryInState: m.spec.MemoryPrivate}
	if _, err := m.qmp.execute(ctx, "stop", nil); err != nil {
		return snap, err
	}
	// From here on the guest is paused but whole: any failure lets it run
	// again before it is reported.
	resume := func(err error) (vmm.Snapshot, error) {
		_, _ = m.qmp.execute(context.Background(), "cont", nil)
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	if err := m.setMigration(ctx, !snap.MemoryInState); err != nil {
		return resume(err)
	}
	f, err := os.OpenFile(statePath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return resume(err)
	}
	err = m.qmp.sendFD(ctx, "state", f)
	if err == nil {
		_, err = m.qmp.execute(ctx, "migrate", map[string]any{"uri": "fd:state"})
	}
	if err == nil {
		err = m.waitMigration(ctx)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return resume(err)
	}
	// QEMU is in postmigrate now; the snapshot is on disk. End it.
	if err := m.Stop(ctx); err != nil {
		return snap, err
	}
	if m.spec.MemoryPrivate && m.spec.DeltaSnapshot {
		st, err := deltaState(statePath, m.spec.MemoryFile())
		if err != nil {
			// The whole state is as good a snapshot, only bigger.
			slog.Default().Warn("snapshot: the state keeps its whole memory", "id", m.spec.ID, "err", err)
		} else {
			snap.MemoryBase = m.spec.MemoryFile()
			slog.Default().Debug("snapshot: memory delta", "id", m.spec.ID, "pages", st.Pages, "pages_dropped", st.PagesDropped, "zeros", st.Zeros, "zeros_dropped", st.ZerosDropped)
		}
	}
	fi, err := os.Stat(statePath)
	if err != nil {
		return snap, err
	}
	snap.StateBytes = fi.Size()
	if !m.spec.MemoryPrivate {
		// The memory file is the snapshot's memory: its zero pages (RAM
		// the guest never used, or used and zeroed) become holes, read
		// back as zeros, on no disk.
		if _, err := vmm.PunchZeroPages(m.spec.MemoryFile()); err != nil {
			return snap, err
		}
		if err := vmm.ReleaseCache(m.spec.MemoryFile()); err != nil {
			return snap, err
		}
	}
	return snap, nil
}

// setMigration sets the capabilities and parameters both ends of a
// migration must agree on.
func (m *machine) setMigration(ctx context.Context, ignoreShared bool) error {
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": ignoreShared}}
	if _, err := m.qmp.execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}); err != nil {
		return err
	}
	// The default bandwidth cap (32 MiB/s) is for live migration over a
	// network; to a local file it only slows a memory-carrying snapshot.
	_, err := m.qmp.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40})
	return err
}

// waitMigration polls until the outgoing migration has completed.
func (m *machine) waitMigration(ctx context.Context) error {
	for {
		raw, err := m.qmp.execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		_ = json.Unmarshal(raw, &st)
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Microsecond):
		}
	}
}

// Restore starts QEMU from a snapshot: the same machine as spec, waiting
// with -incoming defer, then loads the state from snap and leaves the guest
// paused; Start continues it. A snapshot whose memory is in the state file is
// loaded into spec's memory file, which must be a fresh one.
func (d *Driver) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	if snap.MemoryBase != "" {
		if err := checkBase(spec, snap.MemoryBase); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	f, err := os.Open(snap.StatePath)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	mm, err := d.start(ctx, spec, "-incoming", "defer")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (vmm.Machine, error) {
		_ = mm.Stop(context.Background())
		return nil, fmt.Errorf("restore: %w%s", err, mm.vmmLog())
	}
	if err := mm.setMigration(ctx, !snap.MemoryInState); err != nil {
		return fail(err)
	}
	if err := mm.qmp.sendFD(ctx, "state", f); err != nil {
		return fail(err)
	}
	if _, err := mm.qmp.execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:state"}); err != nil {
		return fail(err)
	}
	for {
		raw, err := mm.qmp.execute(ctx, "query-status", nil)
		if err != nil {
			return fail(err)
		}
		var st struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(raw, &st)
		switch st.Status {
		case "inmigrate":
		case "paused", "prelaunch", "postmigrate":
			return mm, nil
		default:
			return fail(fmt.Errorf("unexpected state %q after loading", st.Status))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-mm.done:
			return fail(errors.New("QEMU exited while loading the snapshot"))
		case <-time.After(500 * time.Microsecond):
		}
	}
}
