// Package recovery is what a daemon does at start with what the daemon
// before it left in the data folder, killed or stopped: it adopts the
// environments that were suspended, ends the others (a stray VMM
// included), and removes what no record points to — the folders of boots
// and clones cut short, the templates, files half-written aside.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Records are the daemon's environment records; the store is one.
type Records interface {
	Envs(ctx context.Context) ([]store.EnvRecord, error)
	PutEnv(ctx context.Context, rec store.EnvRecord) error
	DeleteEnv(ctx context.Context, id string) error
}

// Adopter takes over a suspended environment; invoke.Service is one.
type Adopter interface {
	Adopt(ctx context.Context, rec store.EnvRecord) error
}

// Config says where the daemon keeps what.
type Config struct {
	Records Records
	Adopter Adopter
	// EnvsDir holds the environments' folders. A folder no record points
	// to is removed, unless it is in use: a detached environment of
	// `hearth env`, which shares the folder, or one a live process has
	// open on its command line.
	EnvsDir string
	// TemplatesDir holds the daemon's templates: each daemon makes its
	// own (one left may be of code that has changed since), so all go.
	TemplatesDir string
	// TempDirs hold files written aside (atomicfile), and ImagesDir
	// folders that do: the ones whose writer is gone are removed.
	TempDirs  []string
	ImagesDir string
	Log       *slog.Logger
}

// Report says what Run did.
type Report struct {
	Adopted, Ended []string // environment ids
	Swept          []string // paths removed
}

// Run adopts or ends each recorded environment, then sweeps the folders
// and files nothing points to. It runs before the daemon serves: nothing
// of this daemon's is in the data folder yet.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var rep Report
	recs, err := cfg.Records.Envs(ctx)
	if err != nil {
		return rep, fmt.Errorf("reading env records: %w", err)
	}
	procs := commandLines()
	kept := map[string]bool{}
	// keptBases are the template folders whose memory an adopted clone's
	// snapshot is a delta over: they stay while it may resume.
	keptBases := map[string]bool{}
	for _, rec := range recs {
		if adoptable(rec) {
			err := cfg.Adopter.Adopt(ctx, rec)
			if err == nil {
				cfg.Log.Info("adopted suspended env", "env", rec.ID, "function", rec.Function)
				if rec.State != string(sandbox.StateSuspended) {
					// Killed between the suspend and its record: the
					// record learns what the folder says.
					rec.State, rec.PID = string(sandbox.StateSuspended), 0
					if err := cfg.Records.PutEnv(ctx, rec); err != nil {
						cfg.Log.Warn("recording an adopted env suspended", "env", rec.ID, "err", err)
					}
				}
				rep.Adopted = append(rep.Adopted, rec.ID)
				kept[filepath.Clean(rec.Dir)] = true
				if f, err := sandbox.ReadFolder(rec.Dir); err == nil && f.MemoryBase != "" {
					keptBases[filepath.Clean(filepath.Dir(f.MemoryBase))] = true
				}
				continue
			}
			cfg.Log.Warn("cannot adopt env", "env", rec.ID, "err", err)
		}
		if rec.PID > 0 && isVMMOf(procs, rec.PID, rec.Dir) {
			_ = syscall.Kill(rec.PID, syscall.SIGKILL)
		}
		removeNetwork(cfg, rec.ID)
		if err := os.RemoveAll(rec.Dir); err != nil {
			cfg.Log.Warn("removing env folder", "env", rec.ID, "err", err)
		}
		if err := cfg.Records.DeleteEnv(ctx, rec.ID); err != nil {
			cfg.Log.Warn("forgetting env", "env", rec.ID, "err", err)
		}
		cfg.Log.Info("ended env left by a previous daemon", "env", rec.ID, "state", rec.State)
		rep.Ended = append(rep.Ended, rec.ID)
	}
	rep.Swept = append(rep.Swept, sweepEnvs(cfg, kept, procs)...)
	if cfg.TemplatesDir != "" {
		rep.Swept = append(rep.Swept, sweepTemplates(cfg, keptBases)...)
	}
	dirs := cfg.TempDirs
	if cfg.ImagesDir != "" {
		entries, _ := os.ReadDir(cfg.ImagesDir)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(cfg.ImagesDir, e.Name()))
			}
		}
	}
	for _, d := range dirs {
		removed, err := atomicfile.RemoveStale(d)
		if err != nil {
			cfg.Log.Warn("removing stale files", "dir", d, "err", err)
		}
		rep.Swept = append(rep.Swept, removed...)
	}
	if len(rep.Swept) > 0 {
		cfg.Log.Info("removed what a previous daemon left unrecorded", "paths", len(rep.Swept))
	}
	return rep, nil
}

// sweepTemplates removes the previous daemon's templates (each daemon
// makes its own), but those an adopted clone's memory is a delta over:
// they go at a later start, once no suspended clone needs them.
func sweepTemplates(cfg Config, keep map[string]bool) []string {
	entries, err := os.ReadDir(cfg.TemplatesDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			cfg.Log.Warn("reading templates", "err", err)
		}
		return nil
	}
	var swept []string
	for _, e := range entries {
		dir := filepath.Join(cfg.TemplatesDir, e.Name())
		if keep[dir] {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			cfg.Log.Warn("removing a template", "dir", dir, "err", err)
			continue
		}
		swept = append(swept, dir)
	}
	return swept
}

// adoptable says whether rec may be a suspended environment: its record
// says so, or its folder does (the daemon died between the suspend and
// its record).
func adoptable(rec store.EnvRecord) bool {
	if rec.State == string(sandbox.StateSuspended) {
		return true
	}
	f, err := sandbox.ReadFolder(rec.Dir)
	return err == nil && f.State == sandbox.StateSuspended
}

// sweepEnvs removes the environment folders no record points to (kept
// are the adopted ones) and nothing uses.
func sweepEnvs(cfg Config, kept map[string]bool, procs map[int]string) []string {
	entries, err := os.ReadDir(cfg.EnvsDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			cfg.Log.Warn("reading env folders", "err", err)
		}
		return nil
	}
	var swept []string
	for _, e := range entries {
		dir := filepath.Join(cfg.EnvsDir, e.Name())
		if !e.IsDir() || kept[dir] {
			continue
		}
		if f, err := sandbox.ReadFolder(dir); err == nil && f.Detached {
			continue // `hearth env`'s, living on its own
		}
		if inUse(procs, dir) {
			continue // a command making it right now
		}
		removeNetwork(cfg, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			cfg.Log.Warn("removing env folder", "dir", dir, "err", err)
			continue
		}
		swept = append(swept, dir)
	}
	return swept
}

// removeNetwork removes the network namespace of the environment id, if
// one is left: its veth pair, TAP and ruleset go with it. Only the
// namespaces of this data folder's environments are touched: another
// daemon's on the same host are its own.
func removeNetwork(cfg Config, id string) {
	if err := network.RemoveNetns(network.NetnsPrefix + id); err != nil {
		cfg.Log.Warn("removing env network", "env", id, "err", err)
	}
}

// commandLines are the command lines of the processes this one can see,
// by PID, their arguments joined by spaces.
func commandLines() map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		out[pid] = strings.ReplaceAll(string(b), "\x00", " ")
	}
	return out
}

// mentions reports whether a command line is of the environment in dir:
// it names dir or a path in it, or it is a VMM named after the folder
// (QEMU is named hearth-<env id>, and handed its files as descriptors).
func mentions(cmdline, dir string) bool {
	dir = filepath.Clean(dir)
	for _, s := range []string{dir + "/", dir + " ", dir + ",", " hearth-" + filepath.Base(dir) + " "} {
		if strings.Contains(cmdline+" ", s) {
			return true
		}
	}
	return false
}

func inUse(procs map[int]string, dir string) bool {
	for _, cl := range procs {
		if mentions(cl, dir) {
			return true
		}
	}
	return false
}

// isVMMOf checks that pid is a QEMU of the environment in dir before it is
// killed: a PID may have been reused since it was recorded.
func isVMMOf(procs map[int]string, pid int, dir string) bool {
	cl, ok := procs[pid]
	if !ok {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.HasPrefix(string(comm), "qemu") && mentions(cl, dir)
}
