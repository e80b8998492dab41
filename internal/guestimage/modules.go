package guestimage

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ResolveModules returns the host paths of the named modules and of the
// modules they depend on, dependencies first, from modDir/modules.dep.
// Modules built into the kernel (modules.builtin) are skipped.
func ResolveModules(modDir string, names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(modDir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			builtin[moduleName(sc.Text())] = true
		}
		f.Close()
	}
	byName := map[string]string{}
	for rel := range deps {
		byName[moduleName(rel)] = rel
	}
	var order []string
	seen := map[string]bool{}
	var visit func(rel string)
	visit = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		// modules.dep lists a module's dependencies so that the last one is
		// loaded first, as modprobe does.
		d := deps[rel]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i])
		}
		order = append(order, filepath.Join(modDir, rel))
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		if builtin[n] {
			continue
		}
		rel, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("module %s is neither built in nor in %s", n, modDir)
		}
		visit(rel)
	}
	for _, p := range order {
		if !strings.HasSuffix(p, ".ko") {
			return nil, fmt.Errorf("module %s is compressed; Hearth loads only uncompressed .ko files", p)
		}
	}
	return order, nil
}

func readModulesDep(p string) (map[string][]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, sc.Err()
}

// moduleName is "virtio_console" for "kernel/drivers/char/virtio_console.ko".
func moduleName(rel string) string {
	base := filepath.Base(strings.TrimSpace(rel))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}
