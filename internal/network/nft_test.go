package network

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// policies are the ones each ruleset test generates.
var policies = map[string]Policy{
	"default":  DefaultPolicy(),
	"disabled": {Allow: []Rule{{Cidr: "10.0.0.0/8"}}},
	"lan": {Enabled: true, Allow: []Rule{{Cidr: "10.201.0.0/24", Ports: []string{"80", "8000-8100"}}, {Cidr: "fd00::/8", Protocol: "udp"}},
		Deny: []Rule{{Cidr: "1.2.3.4", Protocol: "tcp", Ports: []string{"443"}}, {Cidr: "2606:4700::/32"}}},
	"private":     {Enabled: true, AllowPrivate: true, Deny: []Rule{{Cidr: "192.168.0.0/16", Ports: []string{"22", "20-30"}}}},
	"overlapping": {Enabled: true, Allow: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"1-100", "50-60", "80"}}, {Cidr: "10.1.0.0/16"}}},
}

// lines returns the script's lines, trimmed, and fails if want are not
// all there in this order.
func inOrder(t *testing.T, script string, want ...string) {
	t.Helper()
	lines := strings.Split(script, "\n")
	at := 0
	for _, w := range want {
		found := false
		for ; at < len(lines); at++ {
			if strings.TrimSpace(lines[at]) == w {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("script lacks %q (in this order: %q):\n%s", w, want, script)
		}
	}
}

func TestRulesetOrder(t *testing.T) {
	a := testAddrs()
	s, err := Ruleset(policies["lan"], a)
	if err != nil {
		t.Fatal(err)
	}
	inOrder(t, s,
		"add table inet hearth_egress", "delete table inet hearth_egress",
		"counter denied_policy {", "counter denied_host {", "counter denied_private {",
		"chain deny_host {", `counter name "denied_host"`, "meta l4proto tcp reject with tcp reset", "reject with icmpx type admin-prohibited",
		"chain input {", "ct state established,related accept", "ip daddr 10.201.0.53 udp dport 53 accept", "goto deny_host",
		"chain forward {", "type filter hook forward priority filter; policy accept;",
		"ct state established,related accept",
		"ip daddr 10.200.0.2 ip saddr 192.168.1.5 accept", // the host may connect in
		"ip daddr 10.201.0.53 udp dport 53 accept",
		"ip daddr 1.2.3.4/32 meta l4proto tcp th dport 443 goto deny_policy",
		"ip6 daddr 2606:4700::/32 goto deny_policy",
		"ip daddr 192.168.1.5/32 goto deny_host", // the address, not its /24
		"ip6 daddr 2001:db8::5/128 goto deny_host",
		"ip daddr 127.0.0.0/8 goto deny_host",
		"ip daddr 10.200.0.0/16 goto deny_guest",
		"ip daddr 169.254.0.0/16 goto deny_link_local",
		"ip6 daddr fe80::/10 goto deny_link_local",
		"ip daddr 10.201.0.0/24 meta l4proto { tcp, udp } th dport 80 accept",
		"ip daddr 10.201.0.0/24 meta l4proto { tcp, udp } th dport 8000-8100 accept",
		"ip6 daddr fd00::/8 meta l4proto udp accept",
		"ip daddr 10.0.0.0/8 goto deny_private",
		"ip6 daddr fc00::/7 goto deny_private",
		"ip daddr 224.0.0.0/4 goto deny_private",
		"accept", "}")
	if strings.Contains(s, "192.168.0.0/16 accept") {
		t.Fatalf("private ranges accepted without AllowPrivate:\n%s", s)
	}
}

func TestRulesetVariants(t *testing.T) {
	a := testAddrs()
	s, err := Ruleset(policies["private"], a)
	if err != nil {
		t.Fatal(err)
	}
	inOrder(t, s, "ip daddr 192.168.0.0/16 meta l4proto { tcp, udp } th dport 22 goto deny_policy",
		"ip daddr 192.168.1.5/32 goto deny_host", "ip daddr 10.0.0.0/8 accept", "ip daddr 192.168.0.0/16 accept", "ip daddr 10.0.0.0/8 goto deny_private")

	s, err = Ruleset(policies["disabled"], a)
	if err != nil {
		t.Fatal(err)
	}
	inOrder(t, s, "chain input {", "ct state established,related accept", "goto deny_disabled",
		"chain forward {", "ct state established,related accept", "goto deny_disabled", "}", "}")
	fwd := s[strings.Index(s, "chain forward {"):]
	for _, bad := range []string{"dport 53 accept", "10.0.0.0/8", "\t\taccept\n"} {
		if strings.Contains(fwd, bad) {
			t.Fatalf("disabled policy's forward chain has %q:\n%s", bad, fwd)
		}
	}

	if _, err := Ruleset(Policy{Enabled: true, Allow: []Rule{{Cidr: "nope"}}}, a); err == nil {
		t.Fatal("Ruleset took an invalid policy")
	}
	if _, err := Ruleset(DefaultPolicy(), Addrs{}); err == nil {
		t.Fatal("Ruleset took no guest address")
	}
}

// TestRulesetNftCheck has nft parse every generated script in check mode
// (nothing is changed).
func TestRulesetNftCheck(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal("nft is not installed (scripts/install-deps.sh installs nftables)")
	}
	for name, p := range policies {
		t.Run(name, func(t *testing.T) {
			s, err := Ruleset(p, testAddrs())
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "rules.nft")
			if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(nft, "-c", "-f", f).CombinedOutput(); err != nil {
				t.Fatalf("nft -c: %v\n%s\n%s", err, out, s)
			}
		})
	}
}

// TestRulesetLoads loads a ruleset twice (a policy change) into a network
// namespace the test makes, and reads its counters back as the daemon
// will.
func TestRulesetLoads(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		t.Fatal("needs nft and root to make a network namespace: run the tests as root after scripts/install-deps.sh, as .ci/run does")
	}
	ns := fmt.Sprintf("hearth-nptest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, name := range []string{"lan", "disabled"} {
		s, err := Ruleset(policies[name], testAddrs())
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, nft, "-f", "-")
		cmd.Stdin = strings.NewReader(s)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f (%s): %v: %s", name, err, out)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, nft, "-j", "list", "counters").Output()
	if err != nil {
		t.Fatalf("nft list counters: %v", err)
	}
	got, err := ParseCounters(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(Reasons()) {
		t.Fatalf("counters %v, want one per reason %v", got, Reasons())
	}
	for _, r := range Reasons() {
		if n, ok := got["denied_"+r]; !ok || n != 0 {
			t.Fatalf("counter denied_%s = %d, %v; want 0", r, n, ok)
		}
	}
	rules, err := exec.Command("ip", "netns", "exec", ns, nft, "list", "chain", "inet", Table, "forward").Output()
	if err != nil || !strings.Contains(string(rules), "deny_disabled") {
		t.Fatalf("the second load did not replace the first: %v\n%s", err, rules)
	}
}

func TestParseCounters(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]uint64
		bad      bool
	}{
		{name: "nft 1.0.6", in: `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
			{"counter": {"family": "inet", "name": "denied_policy", "table": "hearth_egress", "handle": 9, "packets": 3, "bytes": 180}},
			{"counter": {"family": "inet", "name": "denied_host", "table": "hearth_egress", "handle": 11, "packets": 18446744073709551615, "bytes": 0}},
			{"counter": {"family": "ip", "name": "denied_host", "table": "hearth_egress", "handle": 2, "packets": 7, "bytes": 0}},
			{"counter": {"family": "inet", "name": "other", "table": "somebody_else", "handle": 3, "packets": 9, "bytes": 0}}]}`,
			want: map[string]uint64{"denied_policy": 3, "denied_host": 18446744073709551615}},
		{name: "none", in: `{"nftables": [{"metainfo": {"version": "1.0.6"}}]}`, want: map[string]uint64{}},
		{name: "not json", in: `table inet hearth_egress {`, bad: true},
		{name: "no array", in: `{}`, bad: true},
		{name: "negative", in: `{"nftables": [{"counter": {"family": "inet", "name": "x", "table": "hearth_egress", "packets": -1}}]}`, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCounters([]byte(tc.in))
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseCounters = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ParseCounters = %v, want %v", got, tc.want)
			}
		})
	}
}
