package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// qmp is a small client of the QEMU Machine Protocol: one command at a time,
// events read and dropped (Hearth watches the process, not QMP events).
type qmp struct {
	conn net.Conn
	mu   sync.Mutex // one command in flight
	rd   *bufio.Reader
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return fmt.Sprintf("qmp: %s: %s", e.Class, e.Desc) }

type qmpMessage struct {
	Event  string          `json:"event"`
	Return json.RawMessage `json:"return"`
	Error  *qmpError       `json:"error"`
	QMP    json.RawMessage `json:"QMP"`
}

// dialQMP connects, reads the greeting and leaves negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmp{conn: conn, rd: bufio.NewReader(conn)}
	msg, err := q.read(ctx)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if msg.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp: no greeting")
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read(ctx context.Context) (qmpMessage, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetReadDeadline(dl)
		defer q.conn.SetReadDeadline(timeZero)
	}
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return qmpMessage{}, err
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return qmpMessage{}, fmt.Errorf("qmp: bad message %q: %w", line, err)
	}
	return m, nil
}

// execute runs a command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetWriteDeadline(dl)
		defer q.conn.SetWriteDeadline(timeZero)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		m, err := q.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, m.Error)
		}
		return m.Return, nil
	}
}

// sendFD passes f to QEMU under name (QMP's getfd, the descriptor riding
// along as SCM_RIGHTS), so a migration can use it as "fd:name" with no
// shell and no path quoting.
func (q *qmp) sendFD(ctx context.Context, name string, f *os.File) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return errors.New("qmp: fd passing needs a unix socket")
	}
	b, _ := json.Marshal(map[string]any{"execute": "getfd", "arguments": map[string]string{"fdname": name}})
	b = append(b, '\n')
	if _, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: %w", err)
	}
	for {
		m, err := q.read(ctx)
		if err != nil {
			return fmt.Errorf("qmp getfd: %w", err)
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return fmt.Errorf("qmp getfd: %w", m.Error)
		}
		return nil
	}
}

func (q *qmp) close() error { return q.conn.Close() }
