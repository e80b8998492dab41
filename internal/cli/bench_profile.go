package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// benchProfile profiles this process (the benchmark's daemon runs in it)
// while the daemon is under load: CPU, and where goroutines wait on locks
// (mutex) or block (block), to find what serialises invocations.
type benchProfile struct {
	dir string
	cpu *os.File
}

// startBenchProfile starts profiling into dir; a nil profile when dir is
// empty, whose stop does nothing.
func startBenchProfile(dir string) (*benchProfile, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	runtime.SetMutexProfileFraction(1)
	// Every blocking event of 10 µs or more.
	runtime.SetBlockProfileRate(10_000)
	return &benchProfile{dir: dir, cpu: f}, nil
}

// stop ends the profiles and writes them.
func (p *benchProfile) stop() error {
	if p == nil {
		return nil
	}
	pprof.StopCPUProfile()
	errs := []error{p.cpu.Close()}
	for _, name := range []string{"mutex", "block"} {
		f, err := os.Create(filepath.Join(p.dir, name+".pprof"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, pprof.Lookup(name).WriteTo(f, 0), f.Close())
	}
	runtime.SetMutexProfileFraction(0)
	runtime.SetBlockProfileRate(0)
	return errors.Join(errs...)
}
