package qemu

import (
	"net"
	"os"
	"time"

	"github.com/hearthdev/hearth/internal/vmm"
)

// DefaultConsoleLimit bounds a machine's console.log: a guest writes its
// serial port for as long as it lives, and only the end explains a failure.
const DefaultConsoleLimit = 1 << 20

// cappedFile is a file that never grows past limit bytes: when a write
// would take it past, it starts again with the newest half of what it held
// (written aside and renamed over, so a reader sees the old or the new
// file, never half of one).
type cappedFile struct {
	path  string
	f     *os.File
	size  int64
	limit int64
}

// openCapped opens path for appending, or empties it when fresh.
func openCapped(path string, limit int64, fresh bool) (*cappedFile, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if fresh {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &cappedFile{path: path, f: f, size: fi.Size(), limit: max(limit, 2)}
	if c.size > c.limit {
		if err := c.rotate(c.limit / 2); err != nil {
			f.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *cappedFile) Write(p []byte) (int, error) {
	n := len(p)
	// Only the newest half-limit of a large write can be kept anyway.
	if half := c.limit / 2; int64(len(p)) > half {
		p = p[int64(len(p))-half:]
	}
	if c.size+int64(len(p)) > c.limit {
		if err := c.rotate(c.limit/2 - int64(len(p))); err != nil {
			return 0, err
		}
	}
	w, err := c.f.Write(p)
	c.size += int64(w)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// rotate replaces the file with its last keep bytes.
func (c *cappedFile) rotate(keep int64) error {
	keep = min(max(keep, 0), c.size)
	tail, err := vmm.ReadTail(c.path, keep)
	if err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(tail); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, c.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	c.f.Close()
	c.f, c.size = f, int64(len(tail))
	return nil
}

func (c *cappedFile) Close() error { return c.f.Close() }

// copyConsole copies the guest's console from conn into a capped file at
// path until conn ends, then closes both and closes done.
func copyConsole(conn net.Conn, path string, limit int64, fresh bool, done chan<- struct{}) error {
	f, err := openCapped(path, limit, fresh)
	if err != nil {
		return err
	}
	go func() {
		defer close(done)
		defer f.Close()
		defer conn.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				// A write that fails (a full disk) loses that output only:
				// the copy goes on draining, so the guest never waits on it.
				_, _ = f.Write(buf[:n])
			}
			if err != nil {
				// EOF: QEMU has exited; closed: the host let go of it.
				return
			}
		}
	}()
	return nil
}

// consoleDrainWait bounds how long a machine's end waits for the last of
// its console to be written out.
const consoleDrainWait = time.Second
