package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/guestproto"
)

func TestWriteNetFiles(t *testing.T) {
	tests := []struct {
		name    string
		net     guestproto.Net
		hosts   string
		resolv  string
		wantErr bool
	}{
		{"dns", guestproto.Net{Hostname: "abc", DNS: []string{"203.0.113.2", "198.51.100.1"}},
			"127.0.0.1\tlocalhost\n::1\tlocalhost\n10.200.0.10\tabc\n", "nameserver 203.0.113.2\nnameserver 198.51.100.1\n", false},
		{"no dns", guestproto.Net{Hostname: "abc"}, "127.0.0.1\tlocalhost\n::1\tlocalhost\n10.200.0.10\tabc\n", "", false},
		{"bad dns", guestproto.Net{DNS: []string{"nameserver 1.2.3.4\nsearch evil"}}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := writeNetFiles(dir, &tt.net, netip.MustParseAddr("10.200.0.10"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr {
				return
			}
			for name, want := range map[string]string{"hosts": tt.hosts, "resolv.conf": tt.resolv} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
		})
	}
}
