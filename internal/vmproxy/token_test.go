package vmproxy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
)

func testTokens(t testing.TB, seed byte) *Tokens {
	t.Helper()
	tk, err := NewTokens(bytes.Repeat([]byte{seed}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func mustMint(t testing.TB, tk *Tokens, id string, ports []microvm.PortRange, exp time.Time) string {
	t.Helper()
	s, err := tk.Mint(id, ports, exp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	tk := testTokens(t, 1)
	now := time.Unix(1_800_000_000, 0)
	hour := now.Add(time.Hour)
	all := []microvm.PortRange{{Start: 1, End: 65535}}
	web := []microvm.PortRange{{Start: 8080, End: 8080}, {Start: 9000, End: 9010}}
	good := mustMint(t, tk, "mvm-1", web, hour)
	payload, sig, _ := strings.Cut(good, ".")
	// another valid base64 character in the payload's middle
	c := byte('B')
	if payload[4] == c {
		c = 'C'
	}
	flipped := payload[:4] + string(c) + payload[5:] + "." + sig

	tests := []struct {
		name  string
		token string
		id    string
		port  int
		now   time.Time
		want  error // nil: accepted
	}{
		{"default port", good, "mvm-1", 8080, now, nil},
		{"range start", good, "mvm-1", 9000, now, nil},
		{"range end", good, "mvm-1", 9010, now, nil},
		{"all ports", mustMint(t, tk, "mvm-1", all, hour), "mvm-1", 1, now, nil},
		{"all ports top", mustMint(t, tk, "mvm-1", all, hour), "mvm-1", 65535, now, nil},
		{"port below range", good, "mvm-1", 8999, now, ErrPortNotAllowed},
		{"port above range", good, "mvm-1", 9011, now, ErrPortNotAllowed},
		{"port 0", mustMint(t, tk, "mvm-1", all, hour), "mvm-1", 0, now, ErrPortNotAllowed},
		{"other microvm", good, "mvm-2", 8080, now, ErrWrongMicroVM},
		{"id prefix", good, "mvm-", 8080, now, ErrWrongMicroVM},
		{"expired", good, "mvm-1", 8080, hour, ErrExpired},
		{"expired long ago", good, "mvm-1", 8080, hour.Add(24 * time.Hour), ErrExpired},
		{"just before expiry", good, "mvm-1", 8080, hour.Add(-time.Second), nil},
		{"other key", mustMint(t, testTokens(t, 2), "mvm-1", web, hour), "mvm-1", 8080, now, ErrBadSignature},
		{"payload altered", flipped, "mvm-1", 8080, now, ErrBadSignature},
		{"signature of another token", payload + "." + strings.SplitN(mustMint(t, tk, "mvm-2", web, hour), ".", 2)[1], "mvm-1", 8080, now, ErrBadSignature},
		{"empty", "", "mvm-1", 8080, now, ErrMalformed},
		{"no dot", payload, "mvm-1", 8080, now, ErrMalformed},
		{"empty payload", "." + sig, "mvm-1", 8080, now, ErrMalformed},
		{"short signature", payload + "." + sig[:10], "mvm-1", 8080, now, ErrMalformed},
		// base64 would skip these: the same token, another string
		{"carriage return inside", good[:10] + "\r" + good[10:], "mvm-1", 8080, now, ErrMalformed},
		{"newline at end", good + "\n", "mvm-1", 8080, now, ErrMalformed},
		{"padding", good + "=", "mvm-1", 8080, now, ErrMalformed},
		{"not base64", "!!!." + sig, "mvm-1", 8080, now, ErrMalformed},
		{"too long", strings.Repeat("A", MaxTokenLen+1), "mvm-1", 8080, now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tk.Verify(tt.token, tt.id, tt.port, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatalf("error %q repeats the token", err)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	tk := testTokens(t, 1)
	exp := time.Now().Add(time.Hour)
	many := make([]microvm.PortRange, MaxPortRanges+1)
	for i := range many {
		many[i] = microvm.PortRange{Start: i + 1, End: i + 1}
	}
	tests := []struct {
		name  string
		id    string
		ports []microvm.PortRange
		exp   time.Time
	}{
		{"no ports", "mvm-1", nil, exp},
		{"too many ranges", "mvm-1", many, exp},
		{"port 0", "mvm-1", []microvm.PortRange{{Start: 0, End: 80}}, exp},
		{"port 65536", "mvm-1", []microvm.PortRange{{Start: 80, End: 65536}}, exp},
		{"reversed", "mvm-1", []microvm.PortRange{{Start: 90, End: 80}}, exp},
		{"empty id", "", []microvm.PortRange{{Start: 80, End: 80}}, exp},
		{"dotted id", "a.b", []microvm.PortRange{{Start: 80, End: 80}}, exp},
		{"long id", strings.Repeat("a", MaxIDLen+1), []microvm.PortRange{{Start: 80, End: 80}}, exp},
		{"before 1970", "mvm-1", []microvm.PortRange{{Start: 80, End: 80}}, time.Unix(-5, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := tk.Mint(tt.id, tt.ports, tt.exp); err == nil {
				t.Fatalf("Mint = %q, want an error", s)
			}
		})
	}
}

// The longest token Mint makes is within MaxTokenLen, and is accepted.
func TestLongestToken(t *testing.T) {
	tk := testTokens(t, 1)
	ports := make([]microvm.PortRange, MaxPortRanges)
	for i := range ports {
		ports[i] = microvm.PortRange{Start: 1000 + i, End: 1000 + i}
	}
	id := strings.Repeat("x", MaxIDLen)
	exp := time.Unix(1<<40, 0) // a long uvarint
	s := mustMint(t, tk, id, ports, exp)
	if len(s) > MaxTokenLen {
		t.Fatalf("token of %d characters, MaxTokenLen %d", len(s), MaxTokenLen)
	}
	if err := tk.Verify(s, id, 1000+MaxPortRanges-1, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "microvm-token.key")
	a, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), KeySize)
	}
	tok := mustMint(t, a, "mvm-1", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))

	// A restart reads the same key: the token still holds.
	b, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(tok, "mvm-1", 8080, time.Now()); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	// Another data dir, another key.
	c, err := LoadTokens(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(tok, "mvm-1", 8080, time.Now()); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: %v, want ErrBadSignature", err)
	}
	// A damaged key file is refused, not replaced.
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(path); err == nil {
		t.Fatal("LoadTokens accepted a 5-byte key")
	}
	if got, _ := os.ReadFile(path); string(got) != "short" {
		t.Fatal("LoadTokens replaced a damaged key file")
	}
}
