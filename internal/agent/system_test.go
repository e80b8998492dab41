package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestLoadModuleList(t *testing.T) {
	tests := []struct {
		name    string
		order   string
		failOn  string
		want    []string
		wantErr string
	}{
		{"in order", "virtio.ko\nvirtio_ring.ko\nvirtio_mmio.ko\n", "", []string{"/m/virtio.ko", "/m/virtio_ring.ko", "/m/virtio_mmio.ko"}, ""},
		{"blank lines and spaces", "\n  a.ko  \n\n\tb.ko\n", "", []string{"/m/a.ko", "/m/b.ko"}, ""},
		{"no trailing newline", "a.ko", "", []string{"/m/a.ko"}, ""},
		{"empty list", "", "", nil, ""},
		{"stops at the first failure", "a.ko\nbad.ko\nc.ko\n", "/m/bad.ko", []string{"/m/a.ko", "/m/bad.ko"}, "module bad.ko: no such device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var loaded []string
			load := func(path string) error {
				loaded = append(loaded, path)
				if path == tt.failOn {
					return errors.New("no such device")
				}
				return nil
			}
			err := loadModuleList(strings.NewReader(tt.order), "/m", load, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if !slices.Equal(loaded, tt.want) {
				t.Errorf("loaded %v, want %v", loaded, tt.want)
			}
		})
	}
}

func TestRandPoolInfo(t *testing.T) {
	for _, n := range []int{0, 1, 32, 256} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + 1)
		}
		info := randPoolInfo(b)
		bits := binary.NativeEndian.Uint32(info[0:4])
		size := binary.NativeEndian.Uint32(info[4:8])
		if len(info) != 8+n || bits != uint32(8*n) || size != uint32(n) || string(info[8:]) != string(b) {
			t.Errorf("%d bytes: len %d, entropy_count %d, buf_size %d", n, len(info), bits, size)
		}
	}
}
