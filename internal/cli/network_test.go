package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/testvm"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want network.Rule
		bad  bool
	}{
		{in: "10.0.0.0/8", want: network.Rule{Cidr: "10.0.0.0/8"}},
		{in: "192.168.1.20/32:5432", want: network.Rule{Cidr: "192.168.1.20/32", Ports: []string{"5432"}}},
		{in: "192.168.1.20:80,8000-8100", want: network.Rule{Cidr: "192.168.1.20", Ports: []string{"80", "8000-8100"}}},
		{in: "udp:10.0.0.0/8:53,5353", want: network.Rule{Cidr: "10.0.0.0/8", Ports: []string{"53", "5353"}, Protocol: "udp"}},
		{in: "tcp:1.1.1.1", want: network.Rule{Cidr: "1.1.1.1", Protocol: "tcp"}},
		{in: "fd00::/8", want: network.Rule{Cidr: "fd00::/8"}},
		{in: "fd00::/8:443", want: network.Rule{Cidr: "fd00::/8", Ports: []string{"443"}}},
		{in: "fd00::7", want: network.Rule{Cidr: "fd00::7"}},
		{in: "[fd00::7]:443", want: network.Rule{Cidr: "fd00::7", Ports: []string{"443"}}},
		{in: "[fd00::7]", want: network.Rule{Cidr: "fd00::7"}},
		{in: "[fd00::7]x", bad: true},
		{in: ":80", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseRule(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseRule(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestNetworkPolicyVerb changes a function's policy with the CLI against a
// daemon in-process; it boots no VM.
func TestNetworkPolicyVerb(t *testing.T) {
	d := startCLIDaemon(t)
	d.hearth(t, ExitOK, "fn", "create", "net", "--zip", testvm.FunctionZip(t, "./examples/hello"))
	if out, _ := d.hearth(t, ExitOK, "fn", "network-policy", "net"); !strings.Contains(out, "private ranges refused") {
		t.Fatalf("the default policy: %s", out)
	}
	out, _ := d.hearth(t, ExitOK, "fn", "network-policy", "net", "--allow", "192.168.1.20/32:5432", "--allow", "udp:10.0.0.0/8:53",
		"--deny", "0.0.0.0/0:25", "-o", "json")
	var p network.Policy
	want := network.Policy{Enabled: true, Allow: []network.Rule{{Cidr: "192.168.1.20/32", Ports: []string{"5432"}}, {Cidr: "10.0.0.0/8", Ports: []string{"53"}, Protocol: "udp"}},
		Deny: []network.Rule{{Cidr: "0.0.0.0/0", Ports: []string{"25"}}}}
	if err := json.Unmarshal([]byte(out), &p); err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("network-policy -o json: %s (%v)\nwant %+v", out, err, want)
	}
	// Only --allow-private changes: the lists stay.
	out, _ = d.hearth(t, ExitOK, "fn", "network-policy", "net", "--allow-private")
	if !strings.Contains(out, "private ranges allowed") || !strings.Contains(out, "allow 192.168.1.20/32 ports 5432") || !strings.Contains(out, "deny  0.0.0.0/0 ports 25") {
		t.Fatalf("after --allow-private: %s", out)
	}
	_, errOut := d.hearth(t, ExitBadInput, "fn", "network-policy", "net", "--allow", "10.1.2.3/8")
	if !strings.Contains(errOut, "InvalidParameterValueException") || !strings.Contains(errOut, "did you mean 10.0.0.0/8?") {
		t.Fatalf("a bad CIDR: %s", errOut)
	}
	if out, _ = d.hearth(t, ExitOK, "fn", "network-policy", "net", "--enabled=false", "--allow", ""); !strings.Contains(out, "no outbound connections") {
		t.Fatalf("--enabled=false: %s", out)
	}
	if out, _ = d.hearth(t, ExitOK, "fn", "network-policy", "net", "-o", "json"); !strings.Contains(out, `"Enabled": false`) || strings.Contains(out, "5432") {
		t.Fatalf("after --enabled=false --allow '': %s", out)
	}
}

// TestConfigFileNetworkPolicy: the config file's networkPolicy, in the
// API's shape, is what serve gives the daemon.
func TestConfigFileNetworkPolicy(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"networkPolicy": {"Enabled": true, "AllowPrivate": true, "Deny": [{"Cidr": "10.9.0.0/16"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &CLI{Getenv: func(k string) string { return map[string]string{"HEARTH_CONFIG": cfg}[k] }}
	fc, err := c.config()
	if err != nil {
		t.Fatal(err)
	}
	want := network.Policy{Enabled: true, AllowPrivate: true, Deny: []network.Rule{{Cidr: "10.9.0.0/16"}}}
	if fc.NetworkPolicy == nil || !reflect.DeepEqual(*fc.NetworkPolicy, want) {
		t.Fatalf("networkPolicy %+v, want %+v", fc.NetworkPolicy, want)
	}
}
