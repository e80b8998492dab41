package vmproxy

import (
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
)

// FuzzVerify: Verify never panics on any input, and accepts only tokens
// Mint made, byte for byte: a mutation of a valid token (a flipped bit, a
// padding bit, a truncation, a spliced signature) is never accepted.
func FuzzVerify(f *testing.F) {
	tk := testTokens(f, 7)
	now := time.Unix(1_800_000_000, 0)
	minted := map[string]bool{}
	for _, m := range []struct {
		id    string
		ports []microvm.PortRange
	}{
		{"mvm-1", []microvm.PortRange{{Start: 8080, End: 8080}}},
		{"mvm-1", []microvm.PortRange{{Start: 1, End: 65535}}},
		{"MVM_2", []microvm.PortRange{{Start: 80, End: 90}, {Start: 8080, End: 8081}}},
	} {
		s := mustMint(f, tk, m.id, m.ports, now.Add(time.Hour))
		minted[s] = true
		f.Add(s, m.id, 8080)
		f.Add(s+"A", m.id, 8080)
		f.Add(s[:len(s)-1], m.id, 8080)
		f.Add(strings.Replace(s, ".", "..", 1), m.id, 8080)
	}
	f.Add("", "", 0)
	f.Add("AQ.AA", "mvm-1", 8080)
	f.Add(strings.Repeat("A", MaxTokenLen+10)+".x", "mvm-1", 8080)

	f.Fuzz(func(t *testing.T, token, id string, port int) {
		err := tk.Verify(token, id, port, now)
		if err == nil && !minted[token] {
			t.Fatalf("accepted a token Mint did not make: %q for %q port %d", token, id, port)
		}
	})
}
