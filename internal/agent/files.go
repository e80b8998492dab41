package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Files streams (hearth vm cp, the sandbox interface's files) do one file
// operation in the function's root as the function's user.
//
// The work runs on an OS thread of the agent jailed for it, not in a
// child process: the goroutine locks its thread, which gets a file-system
// context of its own (unshare CLONE_FS), enters the function's root
// (chroot) and drops, for itself alone, to the function's user and group
// (raw setgroups/setresgid/setresuid, which Go's wrappers would apply to
// every thread), losing every capability; it never unlocks, so the thread
// ends with it. Every path is then resolved by the kernel as the
// function's own processes resolve it: a symlink the function made cannot
// lead out of its root, a file written is the function user's, and a
// folder it may not write is refused with EACCES. A child process (the
// agent re-executed) would do the same at the cost of a fork and exec a
// file operation, and would need the agent's binary to be reachable from
// the root.

// serveFiles does req over st, whose request was read.
func (x execAs) serveFiles(st net.Conn, req guestproto.FilesRequest) {
	root := ""
	if x.root != nil {
		root = x.root()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the jailed thread ends with the goroutine
		if err := jailThread(root, x.cred); err != nil {
			_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
			return
		}
		if err := guestproto.WriteStreamAnswer(st, guestproto.StreamOK, ""); err != nil {
			return
		}
		f := filesOp{st: st}
		if err := f.do(req); err != nil {
			_ = f.fail(err)
		}
	}()
	<-done
}

// jailThread confines the calling thread, which the caller has locked
// and never unlocks: its own root and umask, and cred's ids with no
// capability.
func jailThread(root string, cred *syscall.Credential) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if root != "" && root != "/" {
		if err := unix.Chroot(root); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// Modes are as asked, not as a umask leaves them.
	unix.Umask(0)
	if cred == nil {
		return nil
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cred.Gid), uintptr(cred.Gid), uintptr(cred.Gid)); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cred.Uid), uintptr(cred.Uid), uintptr(cred.Uid)); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	return nil
}

// filesOp is one operation's frames.
type filesOp struct{ st io.ReadWriter }

func (f filesOp) send(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return guestproto.WriteExecFrame(f.st, typ, b)
}

func (f filesOp) info(fi fs.FileInfo) error {
	return f.send(guestproto.FilesInfo, guestproto.FileStatOf(fi))
}

func (f filesOp) ok(size int64) error {
	return f.send(guestproto.FilesDone, guestproto.FilesResult{Size: size})
}

// fail ends the operation with err, coded as the host maps it.
func (f filesOp) fail(err error) error {
	e := &guestproto.FilesErr{Code: filesErrCode(err), Message: err.Error()}
	if len(e.Message) > guestproto.MaxFilesMessage {
		e.Message = e.Message[:guestproto.MaxFilesMessage]
	}
	return f.send(guestproto.FilesError, e)
}

func filesErrCode(err error) string {
	var fe *guestproto.FilesErr
	switch {
	case errors.As(err, &fe):
		return fe.Code
	case errors.Is(err, unix.ENOTEMPTY): // before ErrExist, which Go's ENOTEMPTY matches
		return guestproto.FilesErrNotEmpty
	case errors.Is(err, fs.ErrNotExist):
		return guestproto.FilesErrNotExist
	case errors.Is(err, fs.ErrExist):
		return guestproto.FilesErrExist
	case errors.Is(err, fs.ErrPermission), errors.Is(err, unix.EROFS):
		return guestproto.FilesErrPermission
	case errors.Is(err, unix.EISDIR):
		return guestproto.FilesErrIsDir
	case errors.Is(err, unix.ENOTDIR):
		return guestproto.FilesErrNotDir
	}
	return guestproto.FilesErrOther
}

func (f filesOp) do(req guestproto.FilesRequest) error {
	p := req.Path
	switch req.Op {
	case guestproto.FileOpStat:
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := f.info(fi); err != nil {
			return err
		}
		return f.ok(0)
	case guestproto.FileOpList:
		return f.list(p)
	case guestproto.FileOpRead:
		return f.read(p)
	case guestproto.FileOpWrite:
		return f.write(p, req.Mode)
	case guestproto.FileOpRemove:
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		remove := os.Remove
		if req.Recursive {
			remove = os.RemoveAll
		}
		if err := remove(p); err != nil {
			return err
		}
		return f.ok(0)
	case guestproto.FileOpMkdir:
		mode := req.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := os.MkdirAll(p, mode); err != nil {
			return err
		}
		return f.ok(0)
	}
	return &guestproto.FilesErr{Code: guestproto.FilesErrInvalid, Message: "unknown operation " + req.Op}
}

// list sends the folder's entries, each as lstat sees it, at most
// MaxListEntries.
func (f filesOp) list(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	n := 0
	for {
		entries, err := d.ReadDir(256)
		for _, e := range entries {
			if n++; n > guestproto.MaxListEntries {
				return &guestproto.FilesErr{Code: guestproto.FilesErrTooMany,
					Message: fmt.Sprintf("%s has more than %d entries", p, guestproto.MaxListEntries)}
			}
			fi, ierr := e.Info()
			if ierr != nil {
				continue // gone since it was read
			}
			if err := f.info(fi); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return f.ok(0)
		}
		if err != nil {
			return err
		}
	}
}

// read sends a regular file's stat and bytes. It is opened without
// blocking, so a FIFO does not hold the stream, and refused if it is not
// a regular file (a device could be endless).
func (f filesOp) read(p string) error {
	file, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		return &os.PathError{Op: "read", Path: p, Err: unix.EISDIR}
	case !fi.Mode().IsRegular():
		return &guestproto.FilesErr{Code: guestproto.FilesErrInvalid, Message: p + " is not a regular file"}
	}
	if err := f.info(fi); err != nil {
		return err
	}
	buf := make([]byte, guestproto.MaxExecFrame)
	var n int64
	for {
		k, err := file.Read(buf)
		if k > 0 {
			if werr := guestproto.WriteExecFrame(f.st, guestproto.FilesData, buf[:k]); werr != nil {
				return werr
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return f.ok(n)
		}
		if err != nil {
			return err
		}
	}
}

// write receives a file's bytes into a new file beside p, renamed over p
// once all came: a write cut short (the host gone) leaves what was there.
// The file's parents are made first.
func (f filesOp) write(p string, mode fs.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	dir, base := path.Split(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The temporary name is cut so that it fits where base fits (255 bytes).
	tmp, err := os.CreateTemp(dir, "."+base[:min(len(base), 200)]+".hearth-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var n int64
	for {
		typ, b, err := guestproto.ReadExecFrame(f.st)
		if err != nil {
			return err
		}
		if typ == guestproto.FilesDataEnd {
			break
		}
		if typ != guestproto.FilesData {
			return &guestproto.FilesErr{Code: guestproto.FilesErrInvalid, Message: fmt.Sprintf("frame of type %d in a write", typ)}
		}
		if _, err := tmp.Write(b); err != nil {
			return err
		}
		n += int64(len(b))
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	ok = true
	return f.ok(n)
}
