package guestimage

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// toELF returns an ELF kernel for path and its version. An ELF is used as
// it is; a bzImage has its compressed payload extracted, once, into the
// cache, keyed by the image's hash.
func toELF(path, cacheDir string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read kernel: %w", err)
	}
	if isELF(b) {
		return path, kernelVersion(b), nil
	}
	version := bzImageVersion(b)
	sum := sha256.Sum256(b)
	if cacheDir == "" {
		cacheDir = os.TempDir()
	}
	out := filepath.Join(cacheDir, "kernel", "elf-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(out); err == nil {
		return out, version, nil
	}
	elf, err := extractPayload(b)
	if err != nil {
		return "", "", fmt.Errorf("kernel %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", "", err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, elf, 0o644); err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", "", err
	}
	if version == "" {
		version = kernelVersion(elf)
	}
	return out, version, nil
}

// bzImageVersion reads the version string the boot protocol points at.
func bzImageVersion(b []byte) string {
	if len(b) < 0x210 {
		return ""
	}
	off := int(binary.LittleEndian.Uint16(b[0x20e:])) + 0x200
	if off <= 0x200 || off >= len(b) {
		return ""
	}
	end := bytes.IndexByte(b[off:], ' ')
	if end <= 0 {
		return ""
	}
	return string(b[off : off+end])
}

// extractPayload decompresses a bzImage's payload (boot protocol ≥ 2.08
// gives its offset and length) into the vmlinux ELF it holds.
func extractPayload(b []byte) ([]byte, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, errors.New("neither an ELF nor a bzImage")
	}
	setupSects := int(b[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := start + int(binary.LittleEndian.Uint32(b[0x248:]))
	n := int(binary.LittleEndian.Uint32(b[0x24c:]))
	if off+n > len(b) || n == 0 {
		return nil, errors.New("bzImage payload out of bounds")
	}
	payload := b[off : off+n]
	var elf []byte
	var err error
	switch {
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		// The kernel's xz stream uses the x86 BCJ filter, which Go's xz
		// readers lack: xz-utils decodes it.
		elf, err = runDecoder(payload, "xz", "-dc")
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(payload)); err == nil {
			elf, err = io.ReadAll(zr)
		}
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		elf, err = runDecoder(payload, "zstd", "-dc")
	default:
		return nil, fmt.Errorf("bzImage payload in an unsupported compression (% x)", payload[:4])
	}
	if err != nil {
		return nil, fmt.Errorf("decompress bzImage payload: %w", err)
	}
	if !isELF(elf) {
		return nil, errors.New("bzImage payload is not an ELF")
	}
	return elf, nil
}

func runDecoder(in []byte, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s not found (apt-get install %s): %w", name, map[string]string{"xz": "xz-utils", "zstd": "zstd"}[name], err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	// xz reports trailing garbage after the stream with an error but has
	// written the whole ELF by then; judge by the output.
	err := cmd.Run()
	if out.Len() > 0 && isELF(out.Bytes()) {
		return out.Bytes(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}
