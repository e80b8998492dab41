package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPTY makes a pseudo-terminal of rows x cols. The slave is opened
// from the master (TIOCGPTPEER), not by its path in /dev/pts, so no
// name is looked up between the two; the master is non-blocking, so the
// agent's reads of it wait in Go's poller and a close ends them.
func openPTY(rows, cols int) (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal: %w", err)
	}
	master = os.NewFile(uintptr(m), "/dev/ptmx")
	fail := func(what string, err error) (*os.File, *os.File, error) {
		master.Close()
		return nil, nil, fmt.Errorf("terminal: %s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock", err)
	}
	if err := setTermSize(master, rows, cols); err != nil {
		return fail("size", err)
	}
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return fail("open slave", errno)
	}
	return master, os.NewFile(s, "pty"), nil
}

// setTermSize sets the terminal's size; the kernel tells its foreground
// process group (SIGWINCH).
func setTermSize(master *os.File, rows, cols int) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	}); err != nil {
		return err
	}
	return ioErr
}
