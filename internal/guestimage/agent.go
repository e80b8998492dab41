package guestimage

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// AgentBinary is the guest agent's executable name.
const AgentBinary = "hearth-agent"

// FindAgent locates the hearth-agent binary: an explicit path, else
// $HEARTH_AGENT, else next to the running executable, else on $PATH. It must
// be statically linked: the initramfs has no dynamic loader.
func FindAgent(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv("HEARTH_AGENT")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), AgentBinary))
	}
	if p, err := exec.LookPath(AgentBinary); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err != nil {
			if c == explicit {
				return "", fmt.Errorf("agent %s: %w", c, err)
			}
			continue
		}
		return c, checkStatic(c)
	}
	return "", errors.New("hearth-agent not found: run `make build` (it builds bin/hearth-agent next to bin/hearth), or pass --agent")
}

func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("agent %s: not an ELF executable: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("agent %s is dynamically linked; the guest has no loader: build it with CGO_ENABLED=0", p)
		}
	}
	return nil
}

// FileDigest is the SHA-256 of a file, in hex: it names an agent build, and
// checks a snapshot's device state.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildInitramfs writes an initramfs to path, atomically.
func BuildInitramfs(path string, spec InitramfsSpec) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := WriteInitramfs(f, spec); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
