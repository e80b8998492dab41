package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
)

var (
	testHostRoot = network.TestHostRoot
	testHostAddr = network.TestHostAddr
	testHostLL   = network.TestHostLL
)

const testHostBody = network.TestHostBody

// testHost makes the test host (network.TestHost) and removes it at the
// end.
func testHost(t *testing.T) {
	t.Helper()
	h, err := network.NewTestHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
}

// deniedCount sums the denied counters of the namespaces in nss.
func deniedCount(t *testing.T, nss []string) int {
	t.Helper()
	total := 0
	for _, ns := range nss {
		counters, err := network.Counters(context.Background(), network.Lease{Netns: ns})
		if err != nil {
			continue // gone meanwhile
		}
		for name, n := range counters {
			if strings.HasPrefix(name, "denied_") {
				total += int(n)
			}
		}
	}
	return total
}

// A function reaches a test host (HTTP, DNS from --dns) after a cold
// boot, a resume and in a clone, with an identity of its own in each; the
// host itself, the daemon's port, a link-local address and another guest
// are refused at once.
func TestEgress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("networking needs root: run the tests as root, as .ci/run does")
	}
	before := network.Namespaces()
	t.Cleanup(func() {
		for _, ns := range network.Namespaces() {
			if !slices.Contains(before, ns) {
				_ = network.RemoveNetns(ns)
			}
		}
	})
	testHost(t)
	// A server on the host's own address: the guest must not reach it.
	hostLn, err := net.Listen("tcp", testHostRoot.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	hostSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "host") })}
	go func() { _ = hostSrv.Serve(hostLn) }()
	t.Cleanup(func() { _ = hostSrv.Close() })

	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: 2 * time.Second, SnapStart: true, DNS: []netip.Addr{testHostAddr.Addr()}})
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("net"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		Status   int
		Body     string
		Addrs    []string
		OK       bool
		Error    string
		Errno    string
		Hostname string
		Resolv   string
	}
	call := func(ev string) result {
		t.Helper()
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("net"), Payload: []byte(ev)})
		if err != nil {
			t.Fatal(err)
		}
		if out.FunctionError != nil {
			t.Fatalf("%s: %s", ev, out.Payload)
		}
		var r result
		if err := json.Unmarshal(out.Payload, &r); err != nil {
			t.Fatalf("%s: %v", out.Payload, err)
		}
		return r
	}
	reaches := func(when string) {
		t.Helper()
		if r := call(`{"action":"fetch","url":"http://svc.test/"}`); r.Status != 200 || r.Body != testHostBody {
			t.Errorf("%s: fetch from the test host by name: %+v", when, r)
		}
		if r := call(`{"action":"resolve","name":"svc.test"}`); !slices.Equal(r.Addrs, []string{testHostAddr.Addr().String()}) {
			t.Errorf("%s: resolve: %+v", when, r)
		}
	}
	refused := func(when, addr string) {
		t.Helper()
		r := call(fmt.Sprintf(`{"action":"dial","addr":%q}`, addr))
		if r.OK || (r.Errno != "ECONNREFUSED" && r.Errno != "EHOSTUNREACH") {
			t.Errorf("%s: dial %s: %+v, want refused at once", when, addr, r)
		}
	}

	reaches("cold")
	first := call(`{"action":"netinfo"}`)
	if !strings.Contains(first.Resolv, "nameserver "+testHostAddr.Addr().String()) {
		t.Errorf("resolv.conf %q", first.Resolv)
	}
	_, apiPort, _ := net.SplitHostPort(d.srv.Addr())
	refused("host address", hostLn.Addr().String())
	refused("daemon's port", net.JoinHostPort(testHostRoot.Addr().String(), apiPort))
	refused("link-local", net.JoinHostPort(testHostLL.Addr().String(), "80"))
	// The host's server answers the host, so the refusal above is the rule's.
	if resp, err := http.Get("http://" + hostLn.Addr().String()); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	// A connection open at the suspend is reset by the resume: the guest
	// sees an error at once, not a hang.
	if r := call(fmt.Sprintf(`{"action":"hold","addr":"%s:80"}`, testHostAddr.Addr())); !r.OK {
		t.Fatalf("hold a connection to the test host: %+v", r)
	}

	// Suspended when idle, then resumed: the network is there again.
	deadline := time.Now().Add(60 * time.Second)
	for d.srv.Scheduler().Stats().Suspended != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Suspended != 1 || st.Templates != 1 {
		t.Fatalf("stats %+v, want one suspended env and a template", st)
	}
	t0 := time.Now()
	if r := call(`{"action":"held"}`); r.OK || r.Error == "" || r.Errno == "TIMEOUT" || time.Since(t0) > 4*time.Second {
		t.Errorf("the connection open at the suspend, used after the resume: %+v after %s; want an error at once", r, time.Since(t0))
	}
	reaches("resumed")
	if r := call(`{"action":"netinfo"}`); r.Hostname != first.Hostname {
		t.Errorf("resumed hostname %q, was %q", r.Hostname, first.Hostname)
	}

	// A clone, while the first environment is busy: its own identity, the
	// test host reachable, the first guest not.
	var firstAddr string
	leases := network.Namespaces()
	for _, ns := range leases {
		if strings.HasSuffix(ns, first.Hostname) {
			out, err := exec.Command("ip", "-n", ns, "-j", "route", "show", "dev", "tap0").Output()
			if err != nil {
				t.Fatal(err)
			}
			var routes []struct{ Dst string }
			_ = json.Unmarshal(out, &routes)
			if len(routes) > 0 {
				p := netip.MustParsePrefix(routes[0].Dst)
				firstAddr = p.Addr().Next().Next().String() // the guest is .2 of its /30
			}
		}
	}
	if firstAddr == "" {
		t.Fatalf("no namespace of %s among %v", first.Hostname, leases)
	}
	busy := make(chan error, 1)
	go func() {
		_, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("net"), Payload: []byte(`{"action":"sleep","ms":3000}`)})
		busy <- err
	}()
	time.Sleep(500 * time.Millisecond)
	clone := call(`{"action":"netinfo"}`)
	if clone.Hostname == first.Hostname || clone.Hostname == "" {
		t.Errorf("clone hostname %q, first %q", clone.Hostname, first.Hostname)
	}
	reaches("clone")
	nss := network.Namespaces()
	n0 := deniedCount(t, nss)
	refused("another guest", net.JoinHostPort(firstAddr, "9001"))
	if n1 := deniedCount(t, nss); n1 <= n0 {
		t.Errorf("dialing another guest counted no denial (%d, then %d)", n0, n1)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	recs, err := d.srv.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	for _, r := range recs {
		starts[r.StartType]++
	}
	if starts["clone"] == 0 || starts["resume"] == 0 {
		t.Errorf("start types %v: want a resume and a clone", starts)
	}
	// The refusals reached /metrics, by reason.
	waitMetric(t, d, `hearth_egress_denied_total{function="net",reason="host"}`)
	waitMetric(t, d, `hearth_egress_denied_total{function="net",reason="link_local"}`)

	// A policy that denies the test host refuses it (the function's
	// environments are retired with the change; the next one has it).
	if code, b := d.signedPut(t, "/hearth/v1/functions/net/network-policy",
		fmt.Sprintf(`{"Enabled":true,"Deny":[{"Cidr":"%s/32"}]}`, testHostAddr.Addr())); code != http.StatusOK {
		t.Fatalf("put policy: %d %s", code, b)
	}
	refused("denied by policy", net.JoinHostPort(testHostAddr.Addr().String(), "80"))
	waitMetric(t, d, `hearth_egress_denied_total{function="net",reason="policy"}`)
}

// waitMetric waits for a series of /metrics to be there, with a positive
// value: the refusal counters are read every few seconds.
func waitMetric(t *testing.T, d *daemon, series string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(d.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok && v != "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %s", series)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
