package sandbox

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

func TestPlatformMismatch(t *testing.T) {
	k1, k2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	here := Platform{QEMU: "7.2.22", Machine: MachineType(false, "tcg"), CPU: "tcg", Kernel: k1, Agent: "ag1"}
	tests := []struct {
		name string
		from func(p *Platform)
		want []string // in the reason; none: compatible
	}{
		{"same", func(*Platform) {}, nil},
		{"qemu", func(p *Platform) { p.QEMU = "8.0.0" }, []string{"QEMU version 7.2.22 here, 8.0.0 in the snapshot"}},
		{"machine acpi", func(p *Platform) { p.Machine = MachineType(true, "tcg") }, []string{"machine type"}},
		{"accel", func(p *Platform) { p.Machine = MachineType(false, "kvm") }, []string{"accel=kvm in the snapshot"}},
		{"cpu", func(p *Platform) { p.CPU = "host Intel Xeon" }, []string{"CPU model tcg here, host Intel Xeon"}},
		{"kernel", func(p *Platform) { p.Kernel = k2 }, []string{"kernel digest aaaaaaaaaaaa here, bbbbbbbbbbbb in the snapshot"}},
		{"agent", func(p *Platform) { p.Agent = "ag2" }, []string{"agent digest ag1 here, ag2"}},
		{"unknown kernel", func(p *Platform) { p.Kernel = "" }, []string{"kernel digest unknown"}},
		{"two", func(p *Platform) { p.QEMU, p.Agent = "9", "x" }, []string{"QEMU version", "agent digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := here
			tt.from(&from)
			err := here.Mismatch(from)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("compatible platforms: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrIncompatible) {
				t.Fatalf("got %v, want ErrIncompatible", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("reason %q lacks %q", err, w)
				}
			}
		})
	}
	if err := (Platform{}).Mismatch(Platform{}); err == nil {
		t.Error("two unknown platforms are compatible")
	}
}

// A sparse stream carries a file's data and holes, zero blocks skipped,
// and is refused when cut short or malformed.
func TestSparseStream(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(64 << 20)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("hearth"), 50000) // 300 KB
	for _, off := range []int64{0, 10 << 20, size - int64(len(data))} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	// Zeros written out (not a hole): skipped too.
	if _, err := f.WriteAt(make([]byte, 1<<20), 20<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var buf bytes.Buffer
	sent, err := WriteSparse(&buf, src)
	if err != nil {
		t.Fatal(err)
	}
	if sent < 3*int64(len(data)) || sent > 3*int64(len(data))+3*sparseBlock {
		t.Errorf("sent %d bytes of data, want about %d", sent, 3*len(data))
	}
	dst := filepath.Join(dir, "dst")
	if err := ReadSparse(bytes.NewReader(buf.Bytes()), dst, size); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs")
	}
	if got := vmm.DiskBytes(dst); got > 4<<20 {
		t.Errorf("the copy takes %d bytes on disk: not sparse", got)
	}

	bad := []struct {
		name   string
		stream []byte
		max    int64
	}{
		{"cut short", buf.Bytes()[:buf.Len()/2], size},
		{"no end", buf.Bytes()[:buf.Len()-16], size},
		{"too big", buf.Bytes(), size - 1},
		{"not a stream", []byte("GIF89a.........."), size},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := ReadSparse(bytes.NewReader(tt.stream), p, tt.max); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("left a file: %v", err)
			}
		})
	}
}
