package network

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseDNS(t *testing.T) {
	tests := []struct {
		conf         string
		dns, skipped string
	}{
		{"nameserver 127.0.0.53\noptions edns0\n", "[]", "[127.0.0.53]"},
		{"# x\nnameserver 192.0.2.1\nnameserver ::1\nnameserver 2001:db8::1\nsearch example\nnameserver 198.51.100.7\n", "[192.0.2.1 198.51.100.7]", "[::1 2001:db8::1]"},
		{"", "[]", "[]"},
	}
	for _, tt := range tests {
		dns, skipped, err := ParseDNS(strings.NewReader(tt.conf))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(dns); got != tt.dns {
			t.Errorf("%q: dns %s, want %s", tt.conf, got, tt.dns)
		}
		if got := fmt.Sprint(skipped); got != tt.skipped {
			t.Errorf("%q: skipped %s, want %s", tt.conf, got, tt.skipped)
		}
	}
	if _, err := ParseDNSFlag([]string{"1.2.3.4", "nope"}); err == nil {
		t.Error("bad --dns accepted")
	}
	if d, err := ParseDNSFlag([]string{"none"}); err != nil || d == nil || len(d) != 0 {
		t.Errorf("--dns none = %v, %v", d, err)
	}
}
