package guestimage

import (
	"archive/zip"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// InitramfsSpec says what goes into an initramfs.
type InitramfsSpec struct {
	// Agent is the path of the hearth-agent binary, installed as /init.
	Agent string
	// Modules are kernel modules (host paths) in load order.
	Modules []string
	// Code is unpacked at /var/task; nil for an agent-only image.
	Code *Code
	// Layers are the function's layers (read with ReadLayerZipFile),
	// unpacked into /opt in order: a later layer's file replaces an
	// earlier one's.
	Layers []*Code
}

// Guest paths.
const (
	TaskRoot   = "/var/task"
	modulesDir = "lib/modules/hearth"
)

// WriteInitramfs writes a newc cpio archive, uncompressed: the kernel then
// spends no time decompressing it, which matters most under emulation.
func WriteInitramfs(w io.Writer, spec InitramfsSpec) error {
	var opt []optEntry
	if len(spec.Layers) > 0 {
		var codeSize int64
		if spec.Code != nil {
			codeSize = spec.Code.size
		}
		var err error
		if opt, err = mergeLayers(codeSize, spec.Layers); err != nil {
			return err
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := cpio.NewWriter(bw)
	iw := &imageWriter{cw: cw, dirs: map[string]bool{}}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "etc", "opt", "var/task", "var/runtime", modulesDir} {
		if err := iw.dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := iw.hostFile("init", spec.Agent, 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The agent writes /etc/passwd and /etc/group, as it owns the user the
	// function runs as.
	if err := iw.bytes("etc/hosts", []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"), 0o644); err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range spec.Modules {
		base := filepath.Base(m)
		if err := iw.hostFile(modulesDir+"/"+base, m, 0o644); err != nil {
			return fmt.Errorf("module: %w", err)
		}
		order.WriteString(base + "\n")
	}
	if len(spec.Modules) > 0 {
		if err := iw.bytes(modulesDir+"/order", []byte(order.String()), 0o644); err != nil {
			return err
		}
	}
	if spec.Code != nil {
		err := spec.Code.walk(func(name string, mode fs.FileMode, f *zip.File) error {
			return iw.zipEntry(path.Join("var/task", name), mode, f)
		})
		if err != nil {
			return fmt.Errorf("code: %w", err)
		}
	}
	for _, e := range opt {
		if err := iw.zipEntry(path.Join("opt", e.name), e.mode, e.f); err != nil {
			return fmt.Errorf("layers: %w", err)
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// codePerm is the mode a file of the code gets in the guest: 0755 if the
// zip made it executable by anyone, else 0644. The files are root's and the
// function runs as another user, so what the zip lets its owner (the
// developer) read or run, the function may: a bootstrap zipped as 0700
// still starts, as ReadZip accepts it. Only root may write, and the mount
// is read-only anyway. (Lambda keeps the zip's modes and fails such a
// function with "permission denied"; Hearth is lenient, as there is nothing
// in the code to hide from the function itself.)
func codePerm(perm fs.FileMode) fs.FileMode {
	if perm&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// imageWriter adds entries, creating parent directories once each.
type imageWriter struct {
	cw   *cpio.Writer
	dirs map[string]bool
}

func (iw *imageWriter) dir(name string, perm fs.FileMode) error {
	if name == "." || name == "" || iw.dirs[name] {
		return nil
	}
	if err := iw.dir(path.Dir(name), 0o755); err != nil {
		return err
	}
	iw.dirs[name] = true
	return iw.cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeDir | cpio.FileMode(perm.Perm()), Links: 2})
}

func (iw *imageWriter) header(name string, mode cpio.FileMode, size int64) error {
	if err := iw.dir(path.Dir(name), 0o755); err != nil {
		return err
	}
	return iw.cw.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: size, Links: 1})
}

func (iw *imageWriter) bytes(name string, b []byte, perm fs.FileMode) error {
	if err := iw.header(name, cpio.TypeReg|cpio.FileMode(perm), int64(len(b))); err != nil {
		return err
	}
	_, err := iw.cw.Write(b)
	return err
}

func (iw *imageWriter) hostFile(name, src string, perm fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := iw.header(name, cpio.TypeReg|cpio.FileMode(perm), fi.Size()); err != nil {
		return err
	}
	_, err = io.Copy(iw.cw, f)
	return err
}

func (iw *imageWriter) zipEntry(name string, mode fs.FileMode, f *zip.File) error {
	switch {
	case mode.IsDir():
		return iw.dir(name, 0o755)
	case mode&fs.ModeSymlink != 0:
		rc, err := f.Open()
		if err != nil {
			return err
		}
		target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget))
		rc.Close()
		if err != nil {
			return err
		}
		if err := iw.dir(path.Dir(name), 0o755); err != nil {
			return err
		}
		// In newc a symlink's target is its body.
		if err := iw.cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeSymlink | 0o777, Size: int64(len(target)), Links: 1}); err != nil {
			return err
		}
		_, err = iw.cw.Write(target)
		return err
	default:
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := iw.header(name, cpio.TypeReg|cpio.FileMode(codePerm(mode.Perm())), int64(f.UncompressedSize64)); err != nil {
			return err
		}
		if _, err := io.Copy(iw.cw, rc); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		return nil
	}
}
