package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Files in an environment's or a template's folder.
const (
	manifestFile = "manifest.json"
	stateFile    = "state"
	memoryFile   = "memory"
)

// manifestFormat changes when an older manifest can no longer be read.
const manifestFormat = 1

const (
	kindEnv      = "env"
	kindTemplate = "template"
)

// ErrSnapshotInvalid is returned for a snapshot that cannot be restored: a
// missing, truncated or corrupted file, or one made by another agent build
// or for another kernel. Nothing is restored from it.
var ErrSnapshotInvalid = errors.New("snapshot refused")

// manifest is an environment's or a template's record on disk: what it runs,
// how its machine is made, and, when suspended, its snapshot.
type manifest struct {
	Format      int             `json:"format"`
	Kind        string          `json:"kind"`
	ID          string          `json:"id"`
	State       State           `json:"state"`
	PID         int             `json:"pid,omitempty"`
	Function    Function        `json:"function"`
	Kernel      fileRef         `json:"kernel"`
	Initrd      fileRef         `json:"initrd"`
	ACPI        bool            `json:"acpi"`
	AgentDigest string          `json:"agentDigest"`
	Spec        vmm.MachineSpec `json:"spec"`
	Snapshot    *snapshotRef    `json:"snapshot,omitempty"`
	Timings     BootTimings     `json:"timings"`
	Restores    int             `json:"restores"`
	// NextStart and Restore carry how the environment got ready to the
	// process that invokes it next, for its report.
	NextStart StartType     `json:"nextStart,omitempty"`
	Restore   time.Duration `json:"restore,omitempty"`
	Updated   time.Time     `json:"updated"`
	// Network is the environment's network identity, kept while it lives.
	Network *network.Lease `json:"network,omitempty"`
}

// fileRef pins a file the machine needs by its size and time.
type fileRef struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"modTime"`
}

func refOf(path string) fileRef {
	r := fileRef{Path: path}
	if fi, err := os.Stat(path); err == nil {
		r.Size, r.ModTime = fi.Size(), fi.ModTime().UnixNano()
	}
	return r
}

func (r fileRef) check(what string) error {
	fi, err := os.Stat(r.Path)
	if err != nil {
		return fmt.Errorf("%w: its %s is gone: %v", ErrSnapshotInvalid, what, err)
	}
	if fi.Size() != r.Size || fi.ModTime().UnixNano() != r.ModTime {
		return fmt.Errorf("%w: its %s %s changed since the snapshot", ErrSnapshotInvalid, what, r.Path)
	}
	return nil
}

// snapshotRef describes the device state written at a suspend.
type snapshotRef struct {
	StateBytes    int64  `json:"stateBytes"`
	StateSHA256   string `json:"stateSha256"`
	MemoryInState bool   `json:"memoryInState"`
	MemoryBytes   int64  `json:"memoryBytes"`
	// MemoryBase is the file a delta state's memory is over (a clone's
	// template's memory): a resume maps it privately again.
	MemoryBase string    `json:"memoryBase,omitempty"`
	Created    time.Time `json:"created"`
}

func (e *Env) manifest() manifest {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := manifest{
		Format: manifestFormat, Kind: e.kind, ID: e.id, State: e.state,
		Function: e.fn, Kernel: refOf(e.spec.Kernel), Initrd: refOf(e.spec.Initrd), ACPI: e.spec.ACPI,
		AgentDigest: e.img.AgentDigest, Spec: e.spec, Snapshot: e.snap, Timings: e.timings,
		Restores: e.restores, NextStart: e.ready.start, Restore: e.ready.restore, Updated: time.Now().UTC(),
		Network: e.lease,
	}
	m.Spec.Dir = "" // the folder is wherever the manifest is
	if e.conn != nil && e.state != StateSuspended {
		m.PID = e.conn.pid()
	}
	return m
}

func (e *Env) saveManifest() error {
	return writeJSON(filepath.Join(e.dir, manifestFile), e.manifest())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

func readManifest(dir string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrSnapshotInvalid, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: manifest is damaged: %v", ErrSnapshotInvalid, err)
	}
	if m.Format != manifestFormat {
		return m, fmt.Errorf("%w: manifest format %d, this Hearth reads %d", ErrSnapshotInvalid, m.Format, manifestFormat)
	}
	return m, nil
}

// Folder is what an environment's or a template's folder says of itself,
// for a process that did not make it: a daemon sweeping its data folder
// at start tells its own leftovers from what `hearth env` runs.
type Folder struct {
	ID    string
	Kind  string // "env" or "template"
	State State
	PID   int
	// Detached: its VMM outlives the process that started it.
	Detached bool
	// MemoryBase is, for a suspended clone, its template's memory file:
	// its state holds only the pages that differ from it.
	MemoryBase string
	// Initrd is the initramfs its machine boots or resumes with.
	Initrd string
}

// ReadFolder reads the manifest in dir; a folder without one (a boot or a
// clone cut short) is an error.
func ReadFolder(dir string) (Folder, error) {
	m, err := readManifest(dir)
	if err != nil {
		return Folder{}, err
	}
	f := Folder{ID: m.ID, Kind: m.Kind, State: m.State, PID: m.PID, Detached: m.Spec.Detached, Initrd: m.Initrd.Path}
	if m.Snapshot != nil {
		f.MemoryBase = m.Snapshot.MemoryBase
	}
	return f, nil
}

// validate checks that dir's snapshot can be restored by this host.
func (m manifest) validate(dir, agentDigest string) error {
	if m.Snapshot == nil {
		return fmt.Errorf("%w: %s has no snapshot", ErrSnapshotInvalid, m.ID)
	}
	if agentDigest != "" && m.AgentDigest != agentDigest {
		return fmt.Errorf("%w: made by another hearth-agent build (%.12s, this host runs %.12s)", ErrSnapshotInvalid, m.AgentDigest, agentDigest)
	}
	if err := m.Kernel.check("kernel"); err != nil {
		return err
	}
	if err := m.Initrd.check("initramfs"); err != nil {
		return err
	}
	if err := m.Function.Root.check(); err != nil {
		return err
	}
	if err := checkTmpDisk(m.Function, dir); err != nil {
		return err
	}
	statePath := filepath.Join(dir, stateFile)
	f, err := os.Open(statePath)
	if err != nil {
		return fmt.Errorf("%w: device state: %v", ErrSnapshotInvalid, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%w: device state: %v", ErrSnapshotInvalid, err)
	}
	if n != m.Snapshot.StateBytes {
		return fmt.Errorf("%w: device state is %d bytes, the manifest says %d (truncated?)", ErrSnapshotInvalid, n, m.Snapshot.StateBytes)
	}
	if hex.EncodeToString(h.Sum(nil)) != m.Snapshot.StateSHA256 {
		return fmt.Errorf("%w: device state does not match its checksum (corrupted)", ErrSnapshotInvalid)
	}
	if b := m.Snapshot.MemoryBase; b != "" {
		// A clone's delta needs its template's memory, never written.
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w: the memory the state is a delta over: %v", ErrSnapshotInvalid, err)
		}
	}
	if !m.Snapshot.MemoryInState {
		fi, err := os.Stat(filepath.Join(dir, memoryFile))
		if err != nil {
			return fmt.Errorf("%w: memory file: %v", ErrSnapshotInvalid, err)
		}
		if fi.Size() != m.Snapshot.MemoryBytes {
			return fmt.Errorf("%w: memory file is %d bytes, the manifest says %d", ErrSnapshotInvalid, fi.Size(), m.Snapshot.MemoryBytes)
		}
	}
	return nil
}
