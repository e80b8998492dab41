package network

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// testAddrs is a guest at 10.200.0.2 in a pool of 10.200.0.0/16, on a host
// whose LAN address is 192.168.1.5.
func testAddrs() Addrs {
	return Addrs{Guest: netip.MustParsePrefix("10.200.0.2/30"), Gateway: netip.MustParsePrefix("10.200.0.1/30"),
		Host:      []netip.Prefix{netip.MustParsePrefix("192.168.1.5/24"), netip.MustParsePrefix("2001:db8::5/64")},
		GuestPool: netip.MustParsePrefix("10.200.0.0/16"), DNS: []netip.Addr{netip.MustParseAddr("10.201.0.53")}}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string // "" for valid; else a part of the message
	}{
		{"default", DefaultPolicy(), ""},
		{"disabled with rules", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8"}}}, ""},
		{"cidr and ports", Policy{Enabled: true, Allow: []Rule{{Cidr: "10.201.0.0/24", Ports: []string{"80", "8000-8100"}}}}, ""},
		{"single address", Policy{Enabled: true, Deny: []Rule{{Cidr: "1.1.1.1", Protocol: "udp"}}}, ""},
		{"ipv6", Policy{Enabled: true, Allow: []Rule{{Cidr: "fd00::/8", Protocol: "tcp", Ports: []string{"5432"}}}}, ""},
		{"full range", Policy{Enabled: true, Allow: []Rule{{Cidr: "0.0.0.0/0", Ports: []string{"1-65535"}}}}, ""},
		{"bad cidr", Policy{Allow: []Rule{{Cidr: "10.0.0.0/33"}}}, `Allow[0]: Cidr "10.0.0.0/33" is not a CIDR`},
		{"not an address", Policy{Deny: []Rule{{Cidr: "example.com"}}}, `Deny[0]: Cidr "example.com" is not a CIDR`},
		{"empty cidr", Policy{Allow: []Rule{{}}}, "Cidr is empty"},
		{"host bits", Policy{Allow: []Rule{{Cidr: "10.1.2.3/8"}}}, "did you mean 10.0.0.0/8?"},
		{"mapped", Policy{Allow: []Rule{{Cidr: "::ffff:10.0.0.0/104"}}}, "IPv4-mapped"},
		{"zone", Policy{Allow: []Rule{{Cidr: "fe80::1%eth0"}}}, "is not a CIDR"},
		{"port zero", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"0"}}}}, `port "0" must be a port`},
		{"port too big", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"65536"}}}}, `port "65536"`},
		{"port word", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"http"}}}}, `port "http"`},
		{"reversed range", Policy{Deny: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"90-80"}}}}, "ends before it starts"},
		{"half range", Policy{Deny: []Rule{{Cidr: "10.0.0.0/8", Ports: []string{"80-"}}}}, `port "80-"`},
		{"protocol", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Protocol: "icmp"}}}, `Protocol "icmp" must be`},
		{"protocol case", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Protocol: "TCP"}}}, `Protocol "TCP"`},
		{"second rule", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8"}, {Cidr: "x"}}}, "Allow[1]"},
		{"too many rules", Policy{Deny: make([]Rule, maxRules+1)}, "at most 256"},
		{"too many ports", Policy{Allow: []Rule{{Cidr: "10.0.0.0/8", Ports: make([]string, maxPorts+1)}}}, "at most 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != "InvalidParameterValueException" || le.Status != 400 {
				t.Fatalf("Validate = %v, want an InvalidParameterValueException", err)
			}
			if !strings.Contains(le.Message, tc.want) {
				t.Fatalf("message %q does not say %q", le.Message, tc.want)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	a := testAddrs()
	lan := Policy{Enabled: true, Allow: []Rule{{Cidr: "10.201.0.0/24", Ports: []string{"80", "8000-8100"}}}}
	everything := Policy{Enabled: true, Allow: []Rule{{Cidr: "0.0.0.0/0"}, {Cidr: "::/0"}}, AllowPrivate: true}
	for _, tc := range []struct {
		name   string
		p      Policy
		dst    string
		proto  string
		want   bool
		reason string
	}{
		{"public", DefaultPolicy(), "93.184.216.34:443", "tcp", true, ""},
		{"public udp", DefaultPolicy(), "93.184.216.34:443", "udp", true, ""},
		{"public v6", DefaultPolicy(), "[2606:4700::1]:443", "tcp", true, ""},
		{"public icmp", DefaultPolicy(), "1.1.1.1:0", "icmp", true, ""},
		{"dns server", DefaultPolicy(), "10.201.0.53:53", "udp", true, ""},
		{"dns server other port", DefaultPolicy(), "10.201.0.53:80", "tcp", false, ReasonPrivate},
		{"host address", DefaultPolicy(), "192.168.1.5:9000", "tcp", false, ReasonHost},
		{"host v6", DefaultPolicy(), "[2001:db8::5]:22", "tcp", false, ReasonHost},
		{"host mapped", DefaultPolicy(), "[::ffff:192.168.1.5]:9000", "tcp", false, ReasonHost},
		{"loopback", DefaultPolicy(), "127.0.0.1:9000", "tcp", false, ReasonHost},
		{"gateway", DefaultPolicy(), "10.200.0.1:22", "tcp", false, ReasonHost},
		{"another guest", DefaultPolicy(), "10.200.3.6:8080", "tcp", false, ReasonGuest},
		{"link-local, where cloud metadata services live", DefaultPolicy(), "169.254.77.2:80", "tcp", false, ReasonLinkLocal},
		{"link-local v6", DefaultPolicy(), "[fe80::1]:80", "tcp", false, ReasonLinkLocal},
		{"lan", DefaultPolicy(), "192.168.1.7:5432", "tcp", false, ReasonPrivate},
		{"ten", DefaultPolicy(), "10.9.9.9:80", "tcp", false, ReasonPrivate},
		{"cgnat", DefaultPolicy(), "100.64.1.1:80", "tcp", false, ReasonPrivate},
		{"ula", DefaultPolicy(), "[fd12::1]:80", "tcp", false, ReasonPrivate},
		{"multicast", DefaultPolicy(), "224.0.0.251:5353", "udp", false, ReasonPrivate},
		{"broadcast", DefaultPolicy(), "255.255.255.255:67", "udp", false, ReasonPrivate},
		{"disabled public", Policy{}, "93.184.216.34:443", "tcp", false, ReasonDisabled},
		{"disabled dns", Policy{}, "10.201.0.53:53", "udp", false, ReasonDisabled},
		{"allow opens lan port", lan, "10.201.0.9:80", "tcp", true, ""},
		{"allow opens lan range", lan, "10.201.0.9:8050", "udp", true, ""},
		{"allow other port", lan, "10.201.0.9:81", "tcp", false, ReasonPrivate},
		{"allow ports not icmp", lan, "10.201.0.9:0", "icmp", false, ReasonPrivate},
		{"allow cannot open host", everything, "192.168.1.5:9000", "tcp", false, ReasonHost},
		{"allow cannot open guests", everything, "10.200.3.6:80", "tcp", false, ReasonGuest},
		{"allow cannot open link-local", everything, "169.254.77.2:80", "tcp", false, ReasonLinkLocal},
		{"allow private", Policy{Enabled: true, AllowPrivate: true}, "192.168.1.7:5432", "tcp", true, ""},
		{"allow private not multicast", Policy{Enabled: true, AllowPrivate: true}, "224.0.0.251:5353", "udp", false, ReasonPrivate},
		{"allow multicast", Policy{Enabled: true, Allow: []Rule{{Cidr: "224.0.0.0/4", Protocol: "udp"}}}, "224.0.0.251:5353", "udp", true, ""},
		{"deny public", Policy{Enabled: true, Deny: []Rule{{Cidr: "93.184.216.0/24"}}}, "93.184.216.34:443", "tcp", false, ReasonPolicy},
		{"deny one port", Policy{Enabled: true, Deny: []Rule{{Cidr: "0.0.0.0/0", Ports: []string{"25"}}}}, "93.184.216.34:25", "tcp", false, ReasonPolicy},
		{"deny one port other", Policy{Enabled: true, Deny: []Rule{{Cidr: "0.0.0.0/0", Ports: []string{"25"}}}}, "93.184.216.34:443", "tcp", true, ""},
		{"deny tcp only", Policy{Enabled: true, Deny: []Rule{{Cidr: "0.0.0.0/0", Protocol: "tcp"}}}, "93.184.216.34:443", "udp", true, ""},
		{"deny beats allow", Policy{Enabled: true, Allow: []Rule{{Cidr: "10.201.0.0/24"}}, Deny: []Rule{{Cidr: "10.201.0.9"}}}, "10.201.0.9:80", "tcp", false, ReasonPolicy},
		{"deny beats allow private", Policy{Enabled: true, AllowPrivate: true, Deny: []Rule{{Cidr: "192.168.0.0/16"}}}, "192.168.1.7:80", "tcp", false, ReasonPolicy},
		{"dns before deny", Policy{Enabled: true, Deny: []Rule{{Cidr: "0.0.0.0/0"}}}, "10.201.0.53:53", "tcp", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tc.dst)
			if got := tc.p.Allows(a, dst, tc.proto); got != tc.want {
				t.Fatalf("Allows(%s %s) = %v, want %v", tc.dst, tc.proto, got, tc.want)
			}
			if reason, _ := tc.p.decide(a, dst, tc.proto); reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
		})
	}
}
