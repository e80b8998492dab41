package qemu

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A guest that floods its console leaves a console.log of at most the cap,
// holding the newest output: a fake QEMU listens on the console socket as
// QEMU's chardev does and writes far more than the cap.
func TestConsoleCapped(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name  string
		chunk int // bytes per write by the guest
		total int
	}{
		{"lines", 80, 4 << 20},
		{"large writes", 100 << 10, 16 << 20},
		{"under the cap", 100, 10 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := net.Listen("unix", filepath.Join(dir, consoleSocket))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var sent bytes.Buffer
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				for i := 0; sent.Len() < tt.total; i++ {
					line := []byte(fmt.Sprintf("%08d ", i))
					line = append(line, bytes.Repeat([]byte{'x'}, tt.chunk-len(line)-1)...)
					line = append(line, '\n')
					sent.Write(line)
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
			conn, err := net.Dial("unix", filepath.Join(dir, consoleSocket))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, consoleFile)
			done := make(chan struct{})
			if err := copyConsole(conn, path, limit, true, done); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the console copy did not end with its writer")
			}
			<-wrote
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > limit {
				t.Errorf("console.log is %d bytes after %d written, over its cap of %d", len(b), sent.Len(), limit)
			}
			if len(b) == 0 || !bytes.HasSuffix(sent.Bytes(), b) {
				t.Errorf("console.log (%d bytes) is not the end of what the guest wrote", len(b))
			}
			if want := min(sent.Len(), limit/2); len(b) < want {
				t.Errorf("console.log keeps %d bytes, want at least %d", len(b), want)
			}
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("rotation left its temporary file: %v", err)
			}
		})
	}
}

// An attach appends to the console of the machine it attaches to; a fresh
// start empties it; a file over the cap (left by an older Hearth) is cut
// down on opening.
func TestOpenCapped(t *testing.T) {
	tests := []struct {
		name   string
		before int
		fresh  bool
		want   int
	}{
		{"fresh", 100, true, 3},
		{"attach", 100, false, 103},
		{"attach to an oversized file", 10000, false, 500 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), consoleFile)
			if err := os.WriteFile(path, bytes.Repeat([]byte{'a'}, tt.before), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := openCapped(path, 1000, tt.fresh)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("end")); err != nil {
				t.Fatal(err)
			}
			c.Close()
			b, _ := os.ReadFile(path)
			if len(b) != tt.want || !bytes.HasSuffix(b, []byte("end")) {
				t.Errorf("console.log is %d bytes ending %q, want %d ending \"end\"", len(b), b[max(len(b)-3, 0):], tt.want)
			}
		})
	}
}
