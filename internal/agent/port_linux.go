package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// port is the guest end of the virtio-serial channel.
type port struct {
	f io.ReadWriteCloser // the device; a plain stream in tests
}

// openPort waits for the virtio-serial port with the given name to appear
// (its driver may still be probing) and opens it.
func openPort(ctx context.Context, name string) (*port, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil || strings.TrimSpace(string(b)) != name {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(n))
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", dev, err)
			}
			return &port{f: f}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %q (is virtio_console loaded?)", name)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Read reads from the host. A read of the port returns 0 bytes while the
// host side is disconnected (between a suspend and a resume, say): that is
// not the end of the stream, so wait and read again.
func (p *port) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *port) Write(b []byte) (int, error) { return p.f.Write(b) }

func (p *port) Close() error { return p.f.Close() }
