package vmproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
)

// A stream that keeps moving outlives the server's whole-request limits
// (the daemon's are 10 and 20 minutes; here 400 ms): the endpoint's
// streams last as long as their MicroVM.
func TestStreamOutlivesRequestLimits(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", 8080)
	e := startLimitedEndpoint(t, b, Config{StallTimeout: 5 * time.Second}, 400*time.Millisecond)
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	res, err := http.DefaultClient.Do(e.request(t, testContext(t), "GET", e.host("mvm-a"), "/slow", nil, map[string]string{"X-aws-proxy-auth": tok}))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var events []string
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	if err := sc.Err(); err != nil || len(events) != 6 || events[5] != "data: 5" {
		t.Fatalf("events %q, err %v: want 6 over 1.5 s", events, err)
	}
}

// A client that stops reading is dropped after the stall timeout, and
// the guest's connection with it.
func TestStalledClientDropped(t *testing.T) {
	b := newBackends(t)
	g := b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{StallTimeout: 300 * time.Millisecond})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Ask for the flood, then read nothing.
	if _, err := fmt.Fprintf(c, "GET /flood HTTP/1.1\r\nHost: %s\r\nX-aws-proxy-auth: %s\r\n\r\n", e.host("mvm-a"), tok); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.floodEnded:
	case <-time.After(20 * time.Second):
		t.Fatal("the guest still writes to a client that reads nothing")
	}
	b.waitClosed(t)
	// What the client had buffered ends early: the answer was cut.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("status line %q, %v", status, err)
	}
}

// A dial that does not end is cut by the dial timeout (504), and by the
// client going away.
func TestDialBounded(t *testing.T) {
	b := newBackends(t)
	b.setState("mvm-slow", errHang)
	e := startEndpoint(t, b, Config{DialTimeout: 300 * time.Millisecond})
	tok := mustMint(t, b.tokens, "mvm-slow", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	hdr := map[string]string{"X-aws-proxy-auth": tok}

	start := time.Now()
	res, err := http.DefaultClient.Do(e.request(t, testContext(t), "GET", e.host("mvm-slow"), "/", nil, hdr))
	if err != nil {
		t.Fatal(err)
	}
	msg := errorMessage(t, res)
	res.Body.Close()
	if res.StatusCode != http.StatusGatewayTimeout || !strings.Contains(msg, "could not be reached in time") {
		t.Fatalf("%d %q, want 504", res.StatusCode, msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %s", d)
	}

	// The client leaves during a long dial: the dial is cancelled, well
	// before its own timeout.
	e = startEndpoint(t, b, Config{DialTimeout: time.Hour})
	ended := b.dialsEnded.Load()
	ctx, cancel := contextWithCancel(t)
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := http.DefaultClient.Do(e.request(t, ctx, "GET", e.host("mvm-slow"), "/", nil, hdr)); err == nil {
		t.Fatal("request succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.dialsEnded.Load() == ended {
		if time.Now().After(deadline) {
			t.Fatal("the dial still runs after its client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
